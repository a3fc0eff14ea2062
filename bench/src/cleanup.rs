//! Deleting what the jobfleet half of the bench left on the shared services: the routes
//! of its namespace and every store key under it, through the backends' admin calls
//! ([`Broker::delete_routes`](jobfleet_common::Broker::delete_routes),
//! [`Store::purge`](jobfleet_common::Store::purge)), so the bench never re-types a
//! backend's naming.
//!
//! Best effort: a failure is reported on stderr and the bench carries on, since the
//! namespace is unique to the run and nothing else reads it. The baseline deletes its
//! own queue.

use jobfleet_common::Config;

use crate::fleet::QUEUE;

/// Deletes the run's routes and keys, reporting failures on stderr.
pub(crate) async fn fleet(config: &Config) {
    let backends = match jobfleet_connect::connect(config).await {
        Ok(backends) => backends,
        Err(e) => {
            eprintln!("bench: cleanup cannot connect: {e}");
            return;
        }
    };
    if let Err(e) = backends.broker.delete_routes(&[QUEUE.to_string()]).await {
        eprintln!("bench: cleanup of the routes: {e}");
    }
    match backends.store.purge().await {
        Ok(n) => eprintln!("bench: deleted {n} store keys under {}", config.namespace),
        Err(e) => eprintln!("bench: cleanup of the store keys: {e}"),
    }
    backends.broker.close().await;
}

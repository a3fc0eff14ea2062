//! The scheduler's watch on the store's integrity: every [`EVERY`] it asks the store
//! whether it still holds what it held (a Redis restarted without persistence or flushed
//! does not). The store itself logs, counts and records a loss (see
//! `jobfleet_common::store::Integrity`); `/readyz` and `jobfleet queues` show the record.

use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::store::IntegrityCheck;
use jobfleet_common::telemetry;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::context::Context;

/// How often the store is checked: one small read, so a loss is noticed within a second.
pub(crate) const EVERY: Duration = Duration::from_secs(1);

/// Checks until `shutdown`, or until the store says it has nothing to check.
pub(crate) async fn watch(ctx: Arc<Context>, shutdown: CancellationToken) {
    let me = format!("scheduler on {} (pid {})", host_name(), std::process::id());
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let checked = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            checked = ctx.backends.store.check_integrity(&me) => checked,
        };
        match checked {
            Ok(IntegrityCheck::NotApplicable) => return,
            Ok(IntegrityCheck::Intact | IntegrityCheck::DataLost(_)) => {}
            Err(e) => telemetry::backend_error("scheduler", "check_integrity", &e),
        }
    }
}

/// The host name from `HOSTNAME` (set by shells and container runtimes), else `localhost`.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

//! Live workers: a heartbeat lists a worker, in id order, until its time to live runs
//! out or it says it is gone.

use std::time::Duration;

use jobfleet_common::store::WorkerInfo;
use jobfleet_common::Store;

use super::fixtures::worker;
use super::Checked;

fn ids(workers: &[WorkerInfo]) -> Vec<&str> {
    workers.iter().map(|w| w.id.as_str()).collect()
}

/// Workers are listed by id while their heartbeat lives; one gone or expired vanishes; a
/// newer heartbeat replaces what a worker said before.
pub async fn heartbeats_expire_and_gone_workers_vanish(store: &dyn Store) -> Checked {
    store.heartbeat(&worker("b"), 100).await?;
    store.heartbeat(&worker("a"), 10_000).await?;
    store.heartbeat(&worker("c"), 10_000).await?;
    assert_eq!(ids(&store.workers().await?), ["a", "b", "c"]);
    store.worker_gone("c").await?;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(ids(&store.workers().await?), ["a"]);

    let busy = WorkerInfo {
        running: 3,
        ..worker("a")
    };
    store.heartbeat(&busy, 10_000).await?;
    assert_eq!(store.workers().await?, [busy]);
    Ok(())
}

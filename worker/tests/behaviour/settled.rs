//! The settled hook: called once per delivery the worker is done with, with the outcome,
//! and only once that outcome is recorded and the delivery acked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use jobfleet_common::broker::{Depth, Route};
use jobfleet_common::store::JobState;
use jobfleet_common::{Backends, JobId};
use tokio::sync::mpsc;

use super::Harness;
use jobfleet_worker::{JobError, Registry, Settlement};

/// What the hook saw, checked at the moment it was called.
#[derive(Debug, PartialEq)]
struct Seen {
    id: JobId,
    outcome: Settlement,
    /// The completion marker existed.
    marked: bool,
    /// The ready route's depth: nothing unacknowledged any more.
    depth: Depth,
}

/// A registry with `ok` and `bad` kinds whose hook checks the backends (the embedded
/// ones answer without waiting) and sends what it saw.
fn observed(
    backends: Arc<Mutex<Option<(Backends, String)>>>,
) -> (Registry, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut registry = Registry::new();
    registry
        .register_fn("ok", |_ctx| async { Ok(()) })
        .register_fn("bad", |_ctx| async { Err(JobError::retryable("nope")) })
        .on_settled(move |job, outcome| {
            let guard = backends.lock().expect("not poisoned");
            let (backends, queue) = guard.as_ref().expect("set before any job is published");
            let marked = backends
                .store
                .is_completed(job.id)
                .now_or_never()
                .expect("embedded answers at once")
                .expect("marker");
            let depth = backends
                .broker
                .depth(&Route::Ready(queue.clone()))
                .now_or_never()
                .expect("embedded answers at once")
                .expect("depth")
                .expect("embedded knows");
            let seen = Seen {
                id: job.id,
                outcome,
                marked,
                depth,
            };
            tx.send(seen).expect("the test listens");
        });
    (registry, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("the hook was called")
        .expect("open")
}

#[tokio::test(start_paused = true)]
async fn the_hook_sees_each_outcome_after_it_is_recorded_and_acked() {
    let slot = Arc::new(Mutex::new(None));
    let (registry, mut rx) = observed(slot.clone());
    let h = Harness::start(registry, |c| c.worker.concurrency = 1).await;
    *slot.lock().expect("not poisoned") = Some((h.backends.clone(), h.queue.clone()));
    let settled = Depth {
        ready: 0,
        unacked: Some(0),
    };

    let ok = h.job("ok", "");
    h.publish(&ok).await;
    let seen = next(&mut rx).await;
    let expected = |id, outcome, marked| Seen {
        id,
        outcome,
        marked,
        depth: settled,
    };
    assert_eq!(seen, expected(ok.id, Settlement::Completed, true));

    // The same job again is a duplicate; a failing job is settled once it is on `Failed`.
    h.publish(&ok).await;
    assert_eq!(
        next(&mut rx).await,
        expected(ok.id, Settlement::Duplicate, true)
    );
    let bad = h.job("bad", "");
    h.publish(&bad).await;
    assert_eq!(
        next(&mut rx).await,
        expected(bad.id, Settlement::Failed, false)
    );
    assert_eq!(h.depth(Route::Failed).await.ready, 1);

    let cancelled = h.job("ok", "");
    h.backends
        .store
        .request_cancel(cancelled.id)
        .await
        .expect("cancel");
    h.publish(&cancelled).await;
    assert_eq!(
        next(&mut rx).await,
        expected(cancelled.id, Settlement::Cancelled, false)
    );
    h.wait_for(cancelled.id, JobState::Cancelled).await;

    let (_, _, result) = h.stop().await;
    result.expect("clean stop");
    assert!(rx.try_recv().is_err(), "one call per delivery");
}

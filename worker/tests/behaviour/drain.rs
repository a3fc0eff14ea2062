//! Graceful shutdown: running jobs get the grace period, everything else goes back to
//! the broker without an attempt counted.

use std::time::Duration;

use jobfleet_common::broker::{Depth, Route};
use jobfleet_common::codec;
use jobfleet_common::job::ConflictPolicy;
use jobfleet_common::store::{JobState, LockRequest};
use jobfleet_common::{LockMode, LockSpec};

use super::Harness;
use jobfleet_worker::Registry;

#[tokio::test(start_paused = true)]
async fn drain_finishes_running_work_and_leaves_unstarted_work_queued() {
    let h = Harness::start(Registry::with_builtins(), |c| c.worker.concurrency = 1).await;
    let running = h.job("sleep", r#"{"ms": 500}"#);
    let waiting = [h.job("echo", ""), h.job("echo", "")];
    h.publish(&running).await;
    for job in &waiting {
        h.publish(job).await;
    }
    h.wait_for(running.id, JobState::Running).await;
    let (backends, queue, result) = h.stop().await;
    result.expect("clean stop");
    let record = backends
        .store
        .record(running.id)
        .await
        .expect("record")
        .expect("written");
    assert_eq!(
        record.state,
        JobState::Completed,
        "finished within the grace period"
    );
    for job in &waiting {
        assert_eq!(
            backends.store.record(job.id).await.expect("record"),
            None,
            "never started"
        );
    }
    let depth = backends
        .broker
        .depth(&Route::Ready(queue))
        .await
        .expect("depth");
    assert_eq!(
        depth,
        Some(Depth {
            ready: 2,
            unacked: Some(0)
        })
    );
}

#[tokio::test(start_paused = true)]
async fn after_the_grace_period_running_jobs_are_handed_back_uncounted() {
    let h = Harness::start(Registry::with_builtins(), |c| {
        c.worker.grace_period = Duration::from_secs(1);
    })
    .await;
    let lock = LockSpec {
        key: "slow".into(),
        mode: LockMode::Exclusive,
        on_conflict: ConflictPolicy::Requeue,
    };
    let job = h.job("sleep", r#"{"ms": 60000}"#).with_lock(lock);
    h.publish(&job).await;
    h.wait_for(job.id, JobState::Running).await;
    let stopping = tokio::time::Instant::now();
    let (backends, queue, result) = h.stop().await;
    result.expect("clean stop");
    let waited = stopping.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    let record = backends
        .store
        .record(job.id)
        .await
        .expect("record")
        .expect("written");
    assert_eq!(record.state, JobState::Pending);
    let failed = backends.broker.depth(&Route::Failed).await.expect("depth");
    assert_eq!(failed.map(|d| d.ready), Some(0), "no failed attempt");
    let other = LockRequest {
        key: "slow".into(),
        mode: LockMode::Exclusive,
        holder: "next".into(),
        ttl_ms: 1_000,
    };
    assert!(
        backends
            .store
            .lock_acquire(&other)
            .await
            .expect("acquire")
            .is_some(),
        "released"
    );

    let mut ready = backends
        .broker
        .consume(&Route::Ready(queue), 1)
        .await
        .expect("consume");
    let back = super::next(&mut ready).await.expect("handed back");
    let back = codec::decode(&back.body, back.content_type.as_deref()).expect("a job");
    assert_eq!((back.id, back.attempt, back.errors.len()), (job.id, 1, 0));
}

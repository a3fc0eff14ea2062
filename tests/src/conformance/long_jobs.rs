//! Long jobs: acknowledged early and held in the store (docs/architecture.md, "Long jobs
//! and RabbitMQ's `consumer_timeout`"), so the broker's delivery timeout cannot touch them.

use std::time::Duration;

use jobfleet_common::store::JobState;
use jobfleet_common::{Job, Route};
use jobfleet_worker::{JobContext, Registry};

use super::WITHIN;
use jobfleet_testkit::{wait_for, Ctx, Factory, Probe};

/// A long job's delivery is acked once it is held; the hold is removed when it completes;
/// a worker that gives up mid-run hands it back through the scheduler, attempt intact.
pub async fn long_job_is_held_and_handed_back(factory: &Factory) {
    let mut cx = Ctx::new(factory, |c| {
        c.worker.ack_early_after = Duration::from_millis(100);
        c.worker.hold_lease = Duration::from_millis(600);
        c.worker.grace_period = Duration::from_millis(200);
    })
    .await;
    let starts: Probe<u32> = Probe::default();
    let registry = |starts: &Probe<u32>| {
        let p = starts.clone();
        let mut r = Registry::new();
        r.register_fn("long", move |ctx: JobContext| {
            let p = p.clone();
            async move {
                p.push(ctx.attempt());
                // The first run outlives its worker's grace period; the second is quick.
                let ms = if p.len() == 1 { 30_000 } else { 50 };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(())
            }
        });
        r
    };
    cx.start_scheduler();
    let (token, handle) = cx.spawn_worker(registry(&starts));
    let job = Job::new(&cx.queue, "long", "{}").with_timeout_ms(60_000);
    let id = cx.producer.enqueue(job).await.expect("enqueued").id;
    assert!(
        wait_for(WITHIN, || async { starts.len() == 1 }).await,
        "it started"
    );

    let route = Route::Ready(cx.queue.clone());
    let acked = wait_for(WITHIN, || async {
        let depth = cx.backends.broker.depth(&route).await.expect("depth");
        depth.is_none_or(|d| d.ready == 0 && d.unacked.unwrap_or(0) == 0)
    });
    assert!(
        acked.await,
        "the delivery was acknowledged while the job runs"
    );
    let held = cx.backends.store.delayed_counts().await.expect("store");
    assert_eq!(
        held.get(&cx.queue),
        Some(&1),
        "the running job is held: {held:?}"
    );

    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("drained")
        .expect("worker ended cleanly");
    cx.start_worker(registry(&starts));
    let record = cx.wait_state(id, JobState::Completed, WITHIN).await;
    assert_eq!(record.attempt, 1, "handing a job back costs no attempt");
    assert_eq!(starts.items(), [1, 1], "ran twice, both as attempt 1");
    let counts = wait_for(WITHIN, || async {
        let c = cx.backends.store.delayed_counts().await.expect("store");
        c.get(&cx.queue).copied().unwrap_or(0) == 0
    });
    assert!(counts.await, "the hold is gone once the job completed");
    cx.stop().await;
}

//! A job's life around the happy path: redelivery of a finished job, cancel in each
//! state, uniqueness keys, and a worker draining on shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::broker::Message;
use jobfleet_common::codec::{self, Format};
use jobfleet_common::store::{JobRecord, JobState};
use jobfleet_common::{Job, JobId, Route};
use jobfleet_scheduler::ops::{self, CancelOutcome};
use jobfleet_worker::{JobContext, Registry};

use super::WITHIN;
use jobfleet_testkit::{wait_for, Ctx, Factory, Probe};

/// A registry with one `kind` that records the job ids it runs and sleeps `ms`
/// (cooperatively cancellable).
fn counting(kind: &str, probe: &Probe<JobId>, ms: u64) -> Registry {
    let mut registry = Registry::new();
    let p = probe.clone();
    registry.register_fn(kind.to_string(), move |ctx: JobContext| {
        let p = p.clone();
        async move {
            p.push(ctx.job().id);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(()),
                _ = ctx.cancelled().cancelled() => Err(jobfleet_worker::JobError::retryable("cancelled")),
            }
        }
    });
    registry
}

/// A completed job delivered again is acknowledged without running a second time.
pub async fn completion_marker_dedupes_redelivery(factory: &Factory) {
    let mut cx = Ctx::new(factory, |c| c.worker.concurrency = 1).await;
    let runs = Probe::default();
    cx.start_worker(counting("once", &runs, 0));
    let job = Job::new(&cx.queue, "once", "{}");
    let id = cx.producer.enqueue(job.clone()).await.expect("enqueued").id;
    cx.wait_state(id, JobState::Completed, WITHIN).await;

    let mut again = job;
    again.enqueued_at_ms = cx.now_ms();
    let body = codec::encode(&again, Format::Binary);
    let msg = Message::new(
        Route::Ready(cx.queue.clone()),
        again.priority,
        body,
        codec::POSTCARD_CONTENT_TYPE,
    );
    cx.backends
        .broker
        .publish(vec![msg])
        .await
        .expect("published");
    let sentinel = cx
        .producer
        .enqueue(Job::new(&cx.queue, "once", "{}"))
        .await
        .expect("enqueued")
        .id;
    cx.wait_state(sentinel, JobState::Completed, WITHIN).await;
    let runs = runs.items();
    assert_eq!(
        runs.iter().filter(|&&r| r == id).count(),
        1,
        "the duplicate did not run: {runs:?}"
    );
    let drained = wait_for(WITHIN, || async {
        let depth = cx
            .backends
            .broker
            .depth(&Route::Ready(cx.queue.clone()))
            .await
            .expect("depth");
        depth.is_none_or(|d| d.ready == 0 && d.unacked.unwrap_or(0) == 0)
    });
    assert!(drained.await, "the duplicate was acknowledged");
    // The store counted two jobs completed on the queue, the duplicate not among them.
    let counts = cx.backends.store.completed_counts().await.expect("counts");
    assert_eq!(counts.get(&cx.queue), Some(&2), "{counts:?}");
    cx.stop().await;
}

/// Cancel stops a job waiting in the delayed set, one waiting on its queue, and one
/// running.
pub async fn cancel_pending_delayed_and_running(factory: &Factory) {
    let mut cx = Ctx::new(factory, |_| {}).await;
    let runs = Probe::default();
    cx.start_scheduler();

    let delayed = Job::new(&cx.queue, "sleepy", "{}").with_run_at_ms(cx.now_ms() + 1_500);
    let delayed = cx.producer.enqueue(delayed).await.expect("enqueued").id;
    // The scheduler must have moved it into the delayed set before cancel can find it.
    let waiting = wait_for(WITHIN, || async {
        cx.record(delayed)
            .await
            .is_some_and(|r| r.state == JobState::Scheduled)
            && cx
                .backends
                .store
                .next_due_ms()
                .await
                .expect("store")
                .is_some()
    });
    assert!(waiting.await, "the delayed job reached the delayed set");
    let outcome = ops::cancel(&*cx.backends.store, &*cx.backends.clock, delayed)
        .await
        .expect("cancel");
    assert!(matches!(outcome, CancelOutcome::WasWaiting), "{outcome:?}");
    cx.wait_state(delayed, JobState::Cancelled, WITHIN).await;

    let pending = cx
        .producer
        .enqueue(Job::new(&cx.queue, "sleepy", "{}"))
        .await
        .expect("enqueued")
        .id;
    let outcome = ops::cancel(&*cx.backends.store, &*cx.backends.clock, pending)
        .await
        .expect("cancel");
    assert!(matches!(outcome, CancelOutcome::Requested), "{outcome:?}");
    cx.start_worker(counting("sleepy", &runs, 10_000));
    cx.wait_state(pending, JobState::Cancelled, WITHIN).await;

    let running = cx
        .producer
        .enqueue(Job::new(&cx.queue, "sleepy", "{}"))
        .await
        .expect("enqueued")
        .id;
    assert!(
        wait_for(WITHIN, || async { runs.items().contains(&running) }).await,
        "it started"
    );
    let outcome = ops::cancel(&*cx.backends.store, &*cx.backends.clock, running)
        .await
        .expect("cancel");
    assert!(matches!(outcome, CancelOutcome::Requested), "{outcome:?}");
    cx.wait_state(running, JobState::Cancelled, Duration::from_secs(3))
        .await;

    tokio::time::sleep(Duration::from_millis(1_800)).await;
    let ran = runs.items();
    assert!(
        !ran.contains(&delayed) && !ran.contains(&pending),
        "cancelled jobs never ran: {ran:?}"
    );
    cx.stop().await;
}

/// A second enqueue with a pending job's uniqueness key returns the first job's id; once
/// the first completes the key is free again.
pub async fn unique_key_returns_first_id(factory: &Factory) {
    let mut cx = Ctx::new(factory, |_| {}).await;
    let key = jobfleet_testkit::unique("u");
    let first = cx
        .producer
        .enqueue(Job::new(&cx.queue, "u", "{}").with_unique_key(&key))
        .await
        .expect("ok");
    let second = cx
        .producer
        .enqueue(Job::new(&cx.queue, "u", "{}").with_unique_key(&key))
        .await
        .expect("ok");
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(
        second.id, first.id,
        "the duplicate answers with the first id"
    );

    let runs = Probe::default();
    cx.start_worker(counting("u", &runs, 0));
    cx.wait_state(first.id, JobState::Completed, WITHIN).await;
    let third = cx
        .producer
        .enqueue(Job::new(&cx.queue, "u", "{}").with_unique_key(&key))
        .await
        .expect("ok");
    assert!(
        !third.duplicate,
        "the key is free once the first job completed"
    );
    cx.wait_state(third.id, JobState::Completed, WITHIN).await;
    assert_eq!(runs.len(), 2);
    cx.stop().await;
}

/// On shutdown a worker finishes what finishes within the grace period, hands back the
/// rest without counting an attempt, and another worker completes it.
pub async fn graceful_drain_finishes_running_and_returns_the_rest(factory: &Factory) {
    let mut cx = Ctx::new(factory, |c| {
        c.worker.concurrency = 2;
        c.worker.grace_period = Duration::from_millis(700);
    })
    .await;
    let started: Probe<String> = Probe::default();
    let finished: Probe<String> = Probe::default();
    let second_life = Arc::new(AtomicBool::new(false));
    let registry = |started: &Probe<String>, finished: &Probe<String>| {
        let (s, f, l) = (started.clone(), finished.clone(), second_life.clone());
        let mut r = Registry::new();
        r.register_fn("work", move |ctx: JobContext| {
            let (s, f, l) = (s.clone(), f.clone(), l.clone());
            async move {
                let name = String::from_utf8_lossy(&ctx.job().payload).to_string();
                s.push(name.clone());
                let ms = if name.contains("short") || l.load(Ordering::SeqCst) {
                    100
                } else {
                    20_000
                };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                f.push(name);
                Ok(())
            }
        });
        r
    };
    let (token, handle) = cx.spawn_worker(registry(&started, &finished));
    let short = cx
        .producer
        .enqueue(Job::new(&cx.queue, "work", "\"short\""))
        .await
        .expect("ok")
        .id;
    let long = cx
        .producer
        .enqueue(Job::new(&cx.queue, "work", "\"long\""))
        .await
        .expect("ok")
        .id;
    assert!(
        wait_for(WITHIN, || async { started.len() == 2 }).await,
        "both started"
    );

    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("drained within grace + margin")
        .expect("worker ended cleanly");
    cx.wait_state(short, JobState::Completed, WITHIN).await;
    assert_eq!(finished.items(), ["\"short\""]);

    second_life.store(true, Ordering::SeqCst);
    let (token, handle) = cx.spawn_worker(registry(&started, &finished));
    let record = cx.wait_state(long, JobState::Completed, WITHIN).await;
    assert_eq!(record.attempt, 1, "a drained job does not lose an attempt");
    assert!(
        record.last_error.is_none(),
        "a drained job records no error: {record:?}"
    );
    token.cancel();
    handle.await.expect("worker ended cleanly");
    cx.stop().await;
}

/// After a publish that failed, the producer removes the records that still say a job
/// waits (`pending`, `scheduled`); a record a role wrote since (`running`, a final state)
/// stays, and so does the record of a completed job.
pub async fn unpublished_records_are_forgotten_but_moved_ones_stay(factory: &Factory) {
    let mut cx = Ctx::new(factory, |_| {}).await;
    let now = cx.now_ms();
    let store = &cx.backends.store;
    let job = |state| JobRecord::of(&Job::new(&cx.queue, "k", "{}"), state, now);
    let pending = job(JobState::Pending);
    let scheduled = job(JobState::Scheduled);
    let running = job(JobState::Running);
    let completed = job(JobState::Completed);
    store
        .put_records(&[pending.clone(), scheduled.clone(), running.clone()])
        .await
        .expect("records");
    store.complete(&completed).await.expect("completed");
    let ids = [
        pending.id,
        scheduled.id,
        running.id,
        completed.id,
        JobId::new(),
    ];
    assert_eq!(store.forget_unpublished(&ids).await.expect("forget"), 2);
    assert!(cx.record(pending.id).await.is_none());
    assert!(cx.record(scheduled.id).await.is_none());
    assert_eq!(
        cx.record(running.id).await.map(|r| r.state),
        Some(JobState::Running)
    );
    assert_eq!(
        cx.record(completed.id).await.map(|r| r.state),
        Some(JobState::Completed)
    );
    cx.stop().await;
}

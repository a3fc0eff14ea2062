//! At most one running execution per job: a second delivery of a running job waits for
//! it, a worker that loses its execution lease stops the handler and hands the job back,
//! and a job whose executions keep killing their worker ends dead as `worker_crashed`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::broker::Message;
use jobfleet_common::codec::{self, Format};
use jobfleet_common::store::{Admission, JobState, LeaseRequest};
use jobfleet_common::{ErrorKind, Job, Route};
use jobfleet_worker::{JobContext, Registry, Settlement};

use super::WITHIN;
use crate::faults::FaultyStore;
use jobfleet_testkit::{wait_for, Ctx, Factory, Probe};

/// Counts executions of a job and the most that ran at once.
#[derive(Default)]
struct Overlap {
    running: AtomicU32,
    most: AtomicU32,
    runs: AtomicU32,
}

impl Overlap {
    fn enter(&self) {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The job as a ready-route message, as a broker would redeliver it.
fn ready_message(job: &Job) -> Message {
    let body = codec::encode(job, Format::Binary);
    Message::new(
        Route::Ready(job.queue.clone()),
        job.priority,
        body,
        codec::POSTCARD_CONTENT_TYPE,
    )
}

/// Two deliveries of one job to two workers at once (what a broker does after a lost
/// connection): the second waits for the first and, once it completed, is acked as a
/// duplicate. The job runs once, never beside itself.
pub async fn a_running_job_never_runs_twice_at_once(factory: &Factory) {
    let mut cx = Ctx::new(factory, |c| c.worker.concurrency = 2).await;
    let overlap = Arc::new(Overlap::default());
    let settled: Probe<Settlement> = Probe::default();
    for _ in 0..2 {
        let mut registry = Registry::new();
        let o = overlap.clone();
        registry.register_fn("slow", move |_ctx: JobContext| {
            let o = o.clone();
            async move {
                o.enter();
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                o.leave();
                Ok(())
            }
        });
        let s = settled.clone();
        registry.on_settled(move |_job, outcome| s.push(outcome));
        cx.start_worker(registry);
    }
    let mut job = Job::new(&cx.queue, "slow", "{}");
    job.enqueued_at_ms = cx.now_ms();
    cx.backends
        .broker
        .publish(vec![ready_message(&job), ready_message(&job)])
        .await
        .expect("published");
    cx.wait_state(job.id, JobState::Completed, WITHIN).await;
    assert!(
        wait_for(WITHIN, || async { settled.len() >= 2 }).await,
        "both deliveries settle: {:?}",
        settled.items()
    );
    let mut outcomes = settled.items();
    outcomes.sort_unstable_by_key(|s| s.as_str());
    assert_eq!(outcomes, [Settlement::Completed, Settlement::Duplicate]);
    assert_eq!(overlap.runs.load(Ordering::SeqCst), 1, "ran once");
    assert_eq!(
        overlap.most.load(Ordering::SeqCst),
        1,
        "never beside itself"
    );
    cx.stop().await;
}

/// A worker whose lease renewal is refused (another execution may take the job) stops
/// the handler at once; the attempt fails as `lock_lost` (counted, so a job that keeps
/// its worker from renewing runs out of attempts) and the retry runs under a lease with a
/// greater fencing token.
pub async fn a_lost_lease_stops_the_handler_and_the_job_runs_again(factory: &Factory) {
    let mut cx = Ctx::new(factory, |c| c.worker.lease_ttl = Duration::from_millis(600)).await;
    cx.start_scheduler();
    let faulty = FaultyStore::new(cx.backends.store.clone());
    faulty.lose_leases.store(true, Ordering::SeqCst);
    cx.backends.store = faulty.clone();
    let events: Probe<String> = Probe::default();
    let mut registry = Registry::new();
    let p = events.clone();
    registry.register_fn("long", move |ctx: JobContext| {
        let p = p.clone();
        async move {
            let token = ctx.lease_token();
            p.push(format!("started {token}"));
            if token == 1 {
                tokio::time::sleep(Duration::from_secs(8)).await;
            }
            p.push(format!("finished {token}"));
            Ok(())
        }
    });
    cx.start_worker(registry);
    let id = cx
        .producer
        .enqueue(Job::new(&cx.queue, "long", "{}"))
        .await
        .expect("enqueued")
        .id;
    assert!(wait_for(WITHIN, || async { !events.is_empty() }).await);
    // The first renewal (a third of the TTL in) is refused: the handler stops and the
    // attempt fails. From now on leases hold.
    tokio::time::sleep(Duration::from_millis(400)).await;
    faulty.lose_leases.store(false, Ordering::SeqCst);
    let record = cx.wait_state(id, JobState::Completed, WITHIN).await;
    let events = events.items();
    assert_eq!(events.first().map(String::as_str), Some("started 1"));
    assert!(!events.contains(&"finished 1".to_string()), "{events:?}");
    assert_eq!(
        events
            .last()
            .map(String::as_str)
            .map(|e| e.starts_with("finished")),
        Some(true)
    );
    assert_eq!(record.attempt, 2, "the lost lease failed attempt 1");
    let error = record.last_error.expect("attempt 1's error");
    assert_eq!(error.kind, ErrorKind::LockLost);
    assert!(error.message.contains("lease"), "{error:?}");
    cx.stop().await;
}

/// Executions whose worker died (the lease expired unreleased) count as crashes; once
/// they reach the job's max attempts the job goes dead as `worker_crashed` without
/// running again.
pub async fn crashed_executions_end_in_worker_crashed(factory: &Factory) {
    let mut cx = Ctx::new(factory, |_| {}).await;
    let ran: Probe<u64> = Probe::default();
    let mut registry = Registry::new();
    let p = ran.clone();
    registry.register_fn("crashy", move |ctx: JobContext| {
        let p = p.clone();
        async move {
            p.push(ctx.lease_token());
            Ok(())
        }
    });
    let job = Job::new(&cx.queue, "crashy", "{}").with_max_attempts(2);
    // Two executions that took the lease and died without releasing it.
    for ghost in ["ghost-1", "ghost-2"] {
        let lease = LeaseRequest {
            holder: ghost.into(),
            ttl_ms: 200,
            max_crashes: 2,
        };
        let admitted = cx.backends.store.admit(job.id, None, &lease).await;
        assert!(
            matches!(admitted, Ok(Admission::Clear { .. })),
            "{admitted:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    cx.start_scheduler();
    cx.start_worker(registry);
    let id = cx.producer.enqueue(job).await.expect("enqueued").id;
    let dead = cx.wait_state(id, JobState::Dead, WITHIN).await;
    let error = dead.last_error.expect("an error");
    assert_eq!(error.kind, ErrorKind::WorkerCrashed);
    assert!(error.message.contains("worker crashed"), "{error:?}");
    let letter = cx
        .backends
        .store
        .dead_get(id)
        .await
        .expect("dead_get")
        .expect("a dead letter");
    assert_eq!(letter.error_kind, ErrorKind::WorkerCrashed);
    assert!(ran.is_empty(), "a crash-looping job does not run again");
    cx.stop().await;
}

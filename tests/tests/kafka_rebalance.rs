//! Kafka only: rebalances mid-run lose nothing. Two workers share a queue's consumer
//! group, a third joins after a quarter of the jobs and one of the first two drains away
//! after half; every job still completes, and the group's lag ends at 0.
//!
//! Rebalances may run a job twice (a delivery still running on its old owner is fetched
//! again by the new one from the committed offset, see `docs/kafka.md`, "Rebalances"):
//! re-runs are reported, and allowed; a job that never ran is not.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jobfleet_common::broker::Route;
use jobfleet_common::store::JobState;
use jobfleet_common::{Job, JobId};
use jobfleet_testkit::KafkaRedis;
use jobfleet_testkit::{init_tracing, wait_for, Ctx, Factory};
use jobfleet_worker::{JobContext, Registry};
use rand::Rng;

/// Jobs in the run.
const JOBS: usize = 2000;
/// Worker indices: the two first members, and the one that joins later.
const WORKERS: usize = 3;
/// Longest the whole run may take.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// Longest one stage (join, leave, the rest) may take: a stall fails with what ran.
const STAGE_LIMIT: Duration = Duration::from_secs(20);

/// What the handlers saw, across every worker of the run.
#[derive(Default)]
struct Effects {
    /// Ids that ran at least once: the job's effect, recorded idempotently.
    done: Mutex<HashSet<JobId>>,
    /// Handler runs in all, re-runs included.
    executions: AtomicUsize,
    /// Handler runs per worker, by the index it was started with.
    per_worker: [AtomicUsize; WORKERS],
}

impl Effects {
    fn done(&self) -> usize {
        self.done.lock().expect("effects lock").len()
    }

    fn ran(&self, worker: usize) -> usize {
        self.per_worker[worker].load(Ordering::SeqCst)
    }
}

/// A registry whose `work` handler takes 10–25 ms and records its job on `effects`, as
/// worker `index`.
fn registry(effects: &Arc<Effects>, index: usize) -> Registry {
    let effects = effects.clone();
    let mut registry = Registry::new();
    registry.register_fn("work", move |ctx: JobContext| {
        let effects = effects.clone();
        async move {
            // Long enough that the run outlasts a rebalance (each member rejoins on its
            // next heartbeat): each membership change lands mid-run.
            let pause = rand::rng().random_range(10..=25);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            effects
                .done
                .lock()
                .expect("effects lock")
                .insert(ctx.job().id);
            effects.executions.fetch_add(1, Ordering::SeqCst);
            effects.per_worker[index].fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    registry
}

/// Waits until at least `count` distinct jobs ran and every worker in `busy` ran some:
/// each membership change happens mid-run, after the group settled from the last one.
async fn wait_done(effects: &Effects, count: usize, busy: &[usize], what: &str) {
    let reached = wait_for(STAGE_LIMIT, || async {
        effects.done() >= count && busy.iter().all(|&w| effects.ran(w) > 0)
    })
    .await;
    let per_worker: Vec<usize> = (0..WORKERS).map(|w| effects.ran(w)).collect();
    assert!(
        reached,
        "{what}: {} of {count} jobs ran, per worker {per_worker:?}; workers {busy:?} should all \
         have run some",
        effects.done()
    );
    assert!(
        effects.done() < JOBS || count == JOBS,
        "{what}: every job already ran, so the membership change would not happen mid-run \
         (per worker {per_worker:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_joining_and_leaving_lose_no_job() {
    init_tracing();
    tokio::time::timeout(RUN_LIMIT, run())
        .await
        .expect("the run ends within its time limit");
}

async fn run() {
    let factory: Factory = Arc::new(KafkaRedis);
    let mut cx = Ctx::new(&factory, |c| {
        c.kafka.partitions = 6;
        // Small buffers, so partitions fill and pause, and rebalances revoke paused ones
        // (librdkafka keeps a pause through a revocation: docs/kafka.md, "A worker killed
        // with kill -9").
        c.kafka.buffer_records = 64;
        c.worker.concurrency = 4;
        // The factory sets a 100 ms heartbeat, so members rejoin within a check.
    })
    .await;
    // A key per job spreads the jobs evenly over the partitions (keyless records stick
    // to one partition for a while), so every member's share has work in it.
    let jobs: Vec<Job> = (0..JOBS)
        .map(|i| {
            let mut job = Job::new(&cx.queue, "work", "{}");
            job.ordering_key = Some(format!("k{i}"));
            job
        })
        .collect();
    let mut ids = Vec::with_capacity(JOBS);
    for batch in jobs.chunks(500) {
        let enqueued = cx
            .producer
            .enqueue_many(batch.to_vec())
            .await
            .expect("enqueued");
        ids.extend(enqueued.into_iter().map(|e| e.id));
    }
    let all: HashSet<JobId> = ids.iter().copied().collect();
    assert_eq!(all.len(), JOBS, "every job has its own id");

    let effects = Arc::new(Effects::default());
    let first = cx.spawn_worker(registry(&effects, 0));
    let second = cx.spawn_worker(registry(&effects, 1));
    wait_done(&effects, JOBS / 4, &[0, 1], "before the third worker joins").await;
    let third = cx.spawn_worker(registry(&effects, 2));
    wait_done(&effects, JOBS / 2, &[2], "before the first worker leaves").await;
    let (token, handle) = first;
    token.cancel();
    handle
        .await
        .expect("the leaving worker drains without panic");
    wait_done(&effects, JOBS, &[], "after the first worker left").await;

    let done = effects.done.lock().expect("effects lock").clone();
    assert_eq!(done, all, "every job ran, and only the run's jobs");
    let unfinished = unfinished_records(&cx, &ids).await;
    assert!(
        unfinished.is_empty(),
        "{} jobs without a Completed record and completion marker: {:?}",
        unfinished.len(),
        &unfinished[..unfinished.len().min(10)]
    );
    let route = Route::Ready(cx.queue.clone());
    let broker = cx.backends.broker.clone();
    let drained = wait_for(Duration::from_secs(15), || async {
        let depth = broker.depth(&route).await.expect("depth");
        depth.is_some_and(|d| d.ready == 0)
    })
    .await;
    let depth = broker.depth(&route).await.expect("depth");
    assert!(drained, "the group's lag ends at 0: {depth:?}");

    let executions = effects.executions.load(Ordering::SeqCst);
    let per_worker: Vec<usize> = (0..WORKERS).map(|w| effects.ran(w)).collect();
    eprintln!(
        "kafka rebalance: {JOBS} jobs, {executions} executions ({} re-runs), per worker {per_worker:?}",
        executions - JOBS
    );

    for (token, handle) in [second, third] {
        token.cancel();
        tokio::time::timeout(Duration::from_secs(20), handle)
            .await
            .expect("worker stops within 20s")
            .expect("worker ends without panic");
    }
    cx.stop().await;
}

/// The ids among `ids` whose record is not Completed or whose completion marker is
/// missing, with what was found.
async fn unfinished_records(cx: &Ctx, ids: &[JobId]) -> Vec<(JobId, Option<JobState>, bool)> {
    let store = &cx.backends.store;
    futures::stream::iter(ids.iter().copied())
        .map(|id| async move {
            let record = store.record(id).await.expect("store answers");
            let marked = store.is_completed(id).await.expect("store answers");
            (id, record.map(|r| r.state), marked)
        })
        .buffer_unordered(32)
        .filter(|(_, state, marked)| {
            let ok = *state == Some(JobState::Completed) && *marked;
            async move { !ok }
        })
        .collect()
        .await
}

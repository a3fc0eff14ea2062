//! Kafka on three brokers ([`KafkaCluster`], started once for this binary): topics with
//! three replicas and `min.insync.replicas = 2`, workers on the shared Redis.
//!
//! 1. The leader of the busiest partition is `kill -9`ed while jobs are enqueued and run:
//!    every confirmed job completes, none runs twice at the same time (a detector in the
//!    handler), and the group commits offsets on that partition again, past what it held
//!    at the kill, within 30 s (the time is printed).
//! 2. With one broker down, a second worker joins the group and the first leaves: every
//!    job still completes, none twice at once.
//! 3. A process configured for one replica declaring those three-replica topics leaves
//!    them as they are and warns, naming a topic and both values.
//!
//! A job may run twice one after the other (a delivery redelivered after a failover or a
//! rebalance runs again unless its completion marker says it is done): re-runs are
//! counted and printed, not refused. `docs/high-availability.md`, "Kafka", quotes the
//! figures this prints.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jobfleet_common::store::JobState;
use jobfleet_common::{Job, JobId};
use jobfleet_producer::Producer;
use jobfleet_testkit::{wait_for, Ctx, Factory, KafkaCluster};
use jobfleet_worker::{JobContext, Registry};
use rand::Rng;
use tokio::task::block_in_place;

/// Jobs enqueued while the leader is killed.
const FAILOVER_JOBS: usize = 3000;
/// Jobs per `enqueue_many`.
const BATCH: usize = 50;
/// Pause between batches: about 500 jobs/s when no publish waits.
const PACE: Duration = Duration::from_millis(100);
/// Batches enqueued before the kill (the rest go during and after the failover).
const BATCHES_BEFORE_KILL: usize = 20;
/// How long consumption of the dead leader's partition may take to resume.
const RESUME_LIMIT: Duration = Duration::from_secs(30);
/// Jobs of the rebalance with a broker down.
const REBALANCE_JOBS: usize = 1000;
/// Longest any wait for jobs to finish may take.
const DONE_LIMIT: Duration = Duration::from_secs(60);

/// What the handlers saw, across every worker.
#[derive(Default)]
struct Effects {
    /// Jobs whose handler is running now.
    running: Mutex<HashSet<JobId>>,
    /// Jobs whose handler started while another run of the same job was running.
    overlaps: Mutex<Vec<JobId>>,
    /// Jobs that ran to the end at least once.
    done: Mutex<HashSet<JobId>>,
    /// Handler runs in all, re-runs included.
    executions: AtomicUsize,
    /// Handler runs per worker, by the index it was started with.
    per_worker: [AtomicUsize; 2],
}

impl Effects {
    fn done(&self) -> usize {
        self.done.lock().expect("effects lock").len()
    }

    fn done_all(&self, ids: &[JobId]) -> bool {
        let done = self.done.lock().expect("effects lock");
        ids.iter().all(|id| done.contains(id))
    }

    fn overlaps(&self) -> Vec<JobId> {
        self.overlaps.lock().expect("effects lock").clone()
    }

    fn ran(&self, worker: usize) -> usize {
        self.per_worker[worker].load(Ordering::SeqCst)
    }
}

/// A registry whose `work` handler takes 5–20 ms and reports a run that starts while the
/// same job runs elsewhere, as worker `index`.
fn registry(effects: &Arc<Effects>, index: usize) -> Registry {
    let effects = effects.clone();
    let mut registry = Registry::new();
    registry.register_fn("work", move |ctx: JobContext| {
        let effects = effects.clone();
        async move {
            let id = ctx.job().id;
            if !effects.running.lock().expect("effects lock").insert(id) {
                effects.overlaps.lock().expect("effects lock").push(id);
            }
            let pause = rand::rng().random_range(5..=20);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            effects.done.lock().expect("effects lock").insert(id);
            effects.executions.fetch_add(1, Ordering::SeqCst);
            effects.per_worker[index].fetch_add(1, Ordering::SeqCst);
            effects.running.lock().expect("effects lock").remove(&id);
            Ok(())
        }
    });
    registry
}

/// `count` jobs, each with a key of its own so they spread over the partitions.
fn jobs(queue: &str, from: usize, count: usize) -> Vec<Job> {
    (from..from + count)
        .map(|i| {
            let mut job = Job::new(queue, "work", "{}");
            job.ordering_key = Some(format!("k{i}"));
            job
        })
        .collect()
}

/// A world on the cluster: three replicas, two in sync, one band (one topic per queue).
async fn world(factory: &Factory) -> Ctx {
    Ctx::new(factory, |c| {
        c.kafka.replication_factor = 3;
        c.kafka.min_insync_replicas = 2;
        c.kafka.partitions = 6;
        c.kafka.bands = 1;
        c.kafka.buffer_records = 64;
        c.worker.concurrency = 16;
    })
    .await
}

/// The queue's one topic and its consumer group (docs/kafka.md's naming table).
fn topic_and_group(cx: &Ctx) -> (String, String) {
    let ns = &cx.config.namespace;
    (
        format!("{ns}.q.{}.b0", cx.queue),
        format!("{ns}.g.q.{}", cx.queue),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_lose_no_job_when_one_dies() {
    let log = capture_log();
    let mut cluster = block_in_place(KafkaCluster::start);
    eprintln!(
        "kafka cluster: 3 nodes started in {:.1}s",
        cluster.started_in.as_secs_f64()
    );
    let factory = cluster.factory();
    leader_killed_under_load(&mut cluster, &factory).await;
    rebalance_with_a_broker_down(&mut cluster, &factory, &log).await;
}

/// What this process logs (warnings and above), also written to stderr.
type Log = Arc<Mutex<Vec<u8>>>;

/// Installs a subscriber that keeps the log for checks to read.
fn capture_log() -> Log {
    let log = Log::default();
    let kept = log.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_ansi(false)
        .with_writer(move || Tee(kept.clone()))
        .init();
    log
}

/// A log line writer into the kept log and stderr.
struct Tee(Log);

impl std::io::Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        std::io::stderr().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

async fn leader_killed_under_load(cluster: &mut KafkaCluster, factory: &Factory) {
    let mut cx = world(factory).await;
    let (topic, group) = topic_and_group(&cx);
    let effects = Arc::new(Effects::default());
    cx.start_worker(registry(&effects, 0));
    let producer = Arc::new(Producer::new(&cx.backends, &cx.config));
    let (before_kill, mut kill_now) = tokio::sync::oneshot::channel();
    let queue = cx.queue.clone();
    let enqueue = tokio::spawn(async move {
        let mut confirmed = Vec::new();
        let (mut failed, mut slowest) = (0, Duration::ZERO);
        let mut before_kill = Some(before_kill);
        for b in 0..FAILOVER_JOBS / BATCH {
            if b == BATCHES_BEFORE_KILL {
                before_kill.take().map(|tx| tx.send(()));
            }
            let started = Instant::now();
            match producer.enqueue_many(jobs(&queue, b * BATCH, BATCH)).await {
                Ok(enqueued) => confirmed.extend(enqueued.into_iter().map(|e| e.id)),
                Err(e) => {
                    eprintln!("batch {b} not confirmed: {e}");
                    failed += BATCH;
                }
            }
            slowest = slowest.max(started.elapsed());
            tokio::time::sleep(PACE).await;
        }
        (confirmed, failed, slowest)
    });
    (&mut kill_now)
        .await
        .expect("the producer reaches the kill");
    let busiest = block_in_place(|| busiest_partition(cluster, &topic));
    let victim = cluster
        .leader(&topic, busiest)
        .expect("the busiest partition has a leader");
    // Records past this can only be written by the next leader: the few that may land
    // between this query and the kill are far fewer (~80 jobs/s per partition).
    let written = cluster
        .high_watermark(&topic, busiest)
        .expect("a watermark")
        + 10;
    let killed_at = Instant::now();
    block_in_place(|| cluster.kill(victim));
    eprintln!("killed broker {victim}, leader of partition {busiest} (~{written} records)");

    let resumed = wait_for(RESUME_LIMIT, || async {
        block_in_place(|| cluster.committed(&group, &topic, busiest)).is_some_and(|c| c > written)
    })
    .await;
    let resume = killed_at.elapsed();
    let new_leader = cluster.leader(&topic, busiest);
    assert!(
        resumed,
        "partition {busiest} of {topic}: no offset past {written} committed within \
         {RESUME_LIMIT:?} of killing its leader {victim} (leader now {new_leader:?})"
    );
    let (confirmed, failed, slowest) = enqueue.await.expect("the producer task ends");
    let all_done = wait_for(DONE_LIMIT, || async { effects.done_all(&confirmed) }).await;
    assert!(
        all_done,
        "{} of {} confirmed jobs ran",
        effects.done(),
        confirmed.len()
    );
    assert_eq!(failed, 0, "publishes failed while a broker was down");
    assert_finished(&cx, &confirmed).await;
    assert_eq!(effects.overlaps(), [], "jobs ran twice at the same time");
    assert_replicated(cluster, &topic).await;
    let executions = effects.executions.load(Ordering::SeqCst);
    eprintln!(
        "kafka leader killed: {} confirmed jobs, all completed, {} re-runs, 0 overlaps; \
         offsets committed again on partition {busiest} {:.1}s after the kill (new leader \
         {new_leader:?}); slowest enqueue of {BATCH} {:.1}s",
        confirmed.len(),
        executions - effects.done(),
        resume.as_secs_f64(),
        slowest.as_secs_f64()
    );
    let restarted = Instant::now();
    block_in_place(|| cluster.restart(victim));
    eprintln!(
        "broker {victim} restarted and registered in {:.1}s",
        restarted.elapsed().as_secs_f64()
    );
    cx.stop().await;
}

async fn rebalance_with_a_broker_down(cluster: &mut KafkaCluster, factory: &Factory, log: &Log) {
    let mut cx = world(factory).await;
    let (topic, _) = topic_and_group(&cx);
    let half = REBALANCE_JOBS / 2;
    // Topics are made while all three brokers are up: three replicas need three brokers.
    let mut ids = enqueue(&cx, 0, half).await;
    let down = cluster.leader(&topic, 0).expect("partition 0 has a leader");
    block_in_place(|| cluster.kill(down));
    ids.extend(enqueue(&cx, half, half).await);
    let effects = Arc::new(Effects::default());
    let (first, first_done) = cx.spawn_worker(registry(&effects, 0));
    wait_done(
        &effects,
        REBALANCE_JOBS / 4,
        "before the second worker joins",
    )
    .await;
    let second = cx.spawn_worker(registry(&effects, 1));
    let joined = wait_for(DONE_LIMIT, || async { effects.ran(1) > 0 }).await;
    assert!(
        joined,
        "the second worker got no partition with broker {down} down"
    );
    wait_done(
        &effects,
        REBALANCE_JOBS / 2,
        "before the first worker leaves",
    )
    .await;
    first.cancel();
    first_done
        .await
        .expect("the leaving worker drains without panic");
    let all_done = wait_for(DONE_LIMIT, || async { effects.done_all(&ids) }).await;
    assert!(
        all_done,
        "with broker {down} down, {} of {} jobs ran",
        effects.done(),
        ids.len()
    );
    assert_finished(&cx, &ids).await;
    assert_eq!(effects.overlaps(), [], "jobs ran twice at the same time");
    let executions = effects.executions.load(Ordering::SeqCst);
    eprintln!(
        "kafka rebalance with broker {down} down: {} jobs, all completed, {} re-runs, 0 \
         overlaps, runs per worker {:?}",
        ids.len(),
        executions - effects.done(),
        [effects.ran(0), effects.ran(1)]
    );
    let (token, handle) = second;
    token.cancel();
    handle.await.expect("the second worker ends without panic");
    block_in_place(|| cluster.restart(down));
    existing_topics_are_left_and_warned_about(&cx, &topic, log).await;
    cx.stop().await;
}

/// A broker configured for one replica declares `cx`'s queue, whose topics have three.
async fn existing_topics_are_left_and_warned_about(cx: &Ctx, topic: &str, log: &Log) {
    let mut config = (*cx.config).clone();
    config.kafka.replication_factor = 1;
    config.kafka.min_insync_replicas = 1;
    let broker = jobfleet_connect::connect_broker(&config)
        .await
        .expect("a second broker client on the cluster");
    broker
        .declare(std::slice::from_ref(&cx.queue))
        .await
        .expect("declaring existing topics succeeds");
    broker.close().await;
    let logged = String::from_utf8_lossy(&log.lock().expect("log lock")).into_owned();
    let expected = format!(
        "topic {topic} already exists with replication factor 3 and min.insync.replicas 2, \
         not the configured 1 and 1"
    );
    assert!(
        logged.contains(&expected),
        "no warning {expected:?} in the log"
    );
    assert_eq!(
        logged.matches(&expected).count(),
        1,
        "the warning is given once"
    );
}

/// Enqueues `count` jobs from number `from` and returns their ids.
async fn enqueue(cx: &Ctx, from: usize, count: usize) -> Vec<JobId> {
    let enqueued = cx
        .producer
        .enqueue_many(jobs(&cx.queue, from, count))
        .await
        .expect("enqueued with one broker of three down");
    enqueued.into_iter().map(|e| e.id).collect()
}

/// Waits until at least `count` distinct jobs ran.
/// Waits until at least `count` distinct jobs ran, and not all of them: the membership
/// change that follows happens mid-run.
async fn wait_done(effects: &Effects, count: usize, what: &str) {
    let reached = wait_for(DONE_LIMIT, || async { effects.done() >= count }).await;
    assert!(reached, "{what}: {} of {count} jobs ran", effects.done());
    assert!(
        effects.done() < REBALANCE_JOBS,
        "{what}: every job already ran, so the membership change would not happen mid-run"
    );
}

/// The partition of `topic` with the most records.
fn busiest_partition(cluster: &KafkaCluster, topic: &str) -> i32 {
    cluster
        .partitions(topic)
        .iter()
        .max_by_key(|p| cluster.high_watermark(topic, p.0).unwrap_or(0))
        .map(|p| p.0)
        .expect("the topic has partitions")
}

/// Every partition of `topic` and of the brokers' offsets topic has three replicas, and
/// `topic` requires two in sync.
async fn assert_replicated(cluster: &KafkaCluster, topic: &str) {
    for t in [topic, "__consumer_offsets"] {
        let partitions = block_in_place(|| cluster.partitions(t));
        assert!(!partitions.is_empty(), "{t} has partitions");
        for (id, _, replicas) in partitions {
            assert_eq!(
                replicas.len(),
                3,
                "{t} partition {id}: replicas {replicas:?}"
            );
        }
    }
    let min_insync = cluster.topic_config(topic, "min.insync.replicas").await;
    assert_eq!(
        min_insync.as_deref(),
        Some("2"),
        "{topic}: min.insync.replicas"
    );
}

/// Every job of `ids` has a Completed record and a completion marker.
async fn assert_finished(cx: &Ctx, ids: &[JobId]) {
    let store = &cx.backends.store;
    let unfinished: Vec<(JobId, Option<JobState>, bool)> =
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
            .await;
    assert!(
        unfinished.is_empty(),
        "{} jobs without a Completed record and completion marker: {:?}",
        unfinished.len(),
        &unfinished[..unfinished.len().min(10)]
    );
}

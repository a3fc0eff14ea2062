//! Crash safety of workers on Kafka, against real processes: worker processes sharing a
//! queue's consumer group are `kill -9`ed mid-run while they hold deliveries, and every
//! job still ends completed, its effect recorded once, and the group's lag ends at 0: no
//! offset was committed past a job that had not finished (a kill would otherwise lose it).
//!
//! A kill's partitions move only once the coordinator drops the dead member, after
//! `session.timeout.ms`; the test lowers it so the run stays well under a minute.
//!
//! Dynamic group members: waits in `tests/pending/` for a broker that rebalances when a
//! member's session expires (tansu 0.6.0 does not; see `tests/pending/README.md`).
//! `tests/tests/crash_kafka_workers.rs` is the same run with static members.

use std::time::{Duration, Instant};

use jobfleet_common::{Job, Route};
use jobfleet_tests::kafka::{kafka_url, HOW_TO_START, KAFKA_VAR};
use jobfleet_tests::processes::kinds::EffectPayload;
use jobfleet_tests::processes::world::World;
use jobfleet_tests::processes::Role;
use rand::Rng;

/// Jobs in the run, each with an ordering key of its own so they spread over partitions.
const JOBS: usize = 2000;
/// A job's timeout: not above `worker.ack_early_after` (1 s), so jobs keep their delivery
/// (and their offset) unfinished while they run, and a kill hands them back through the
/// broker. (With the default 5-minute timeout every job would be held in the store.)
const TIMEOUT_MS: u64 = 1_000;
/// Worker processes alive at any time.
const WORKERS: usize = 3;
/// Deliveries each worker runs at once.
const CONCURRENCY: usize = 4;
/// Worker processes killed, one at a time, each replaced at once.
const KILLS: usize = 4;
/// Partitions of each topic.
const PARTITIONS: i32 = 6;
/// How long the coordinator waits for a silent member: low, so a dead worker's partitions
/// move within seconds (librdkafka's default is 45 s).
const SESSION_TIMEOUT_MS: &str = "6000";
/// Longest the jobs may take to settle after the last kill.
const SETTLE_LIMIT: Duration = Duration::from_secs(40);
/// A worker's log line for a delivery acked unrun because the job was already completed.
const DUPLICATE: &str = r#""outcome":"duplicate""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_dynamic_kafka_members_lose_no_job_and_commit_no_unfinished_offset() {
    let began = Instant::now();
    let Some(broker) = kafka_url() else {
        panic!("{KAFKA_VAR} is not set: {HOW_TO_START}");
    };
    let mut world = World::new(env!("CARGO_BIN_EXE_testfleet"), |c| {
        c.broker = broker;
        c.kafka.partitions = PARTITIONS;
        let props = &mut c.kafka.properties;
        // tansu 0.6.0 mis-numbers multi-record batches (see `KafkaRedis::configure`).
        props.insert("batch.num.messages".into(), "1".into());
        props.insert("heartbeat.interval.ms".into(), "100".into());
        props.insert("session.timeout.ms".into(), SESSION_TIMEOUT_MS.into());
        c.worker.concurrency = CONCURRENCY;
        c.worker.ack_early_after = Duration::from_secs(1);
        c.worker.hold_lease = Duration::from_secs(1);
    })
    .await;
    world.procs.spawn(Role::Scheduler);
    for _ in 0..WORKERS {
        world.procs.spawn(Role::Worker);
    }
    let jobs: Vec<Job> = {
        let mut rng = rand::rng();
        (0..JOBS)
            .map(|i| {
                let payload = EffectPayload {
                    ms: rng.random_range(10..=30),
                    announce: false,
                };
                let mut job = payload.job(&world.queue).with_timeout_ms(TIMEOUT_MS);
                job.ordering_key = Some(format!("k{i}"));
                job
            })
            .collect()
    };
    let ids = world.enqueue_all(jobs).await;
    // Every worker's first assignment takes a rebalance or two: kill once work flows.
    world.wait_effects(50, Duration::from_secs(20)).await;

    let mut left_at_kills = Vec::new();
    for _ in 0..KILLS {
        let live = world.procs.live(Role::Worker);
        let victim = live[rand::rng().random_range(0..live.len())];
        left_at_kills.push((JOBS as u64).saturating_sub(world.effects().await));
        world.procs.kill(victim);
        world.procs.spawn(Role::Worker);
        let pause = rand::rng().random_range(300..700);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    let killed_at = began.elapsed();

    let audit = world.wait_settled(&ids, SETTLE_LIMIT).await;
    let lag = world
        .backends
        .broker
        .depth(&Route::Ready(world.queue.clone()))
        .await
        .expect("broker answers")
        .map_or(0, |d| d.ready);
    let duplicates = world.procs.count_in_logs(Role::Worker, DUPLICATE);
    println!(
        "crash_kafka_workers: {JOBS} jobs, {WORKERS} workers × {CONCURRENCY}, {PARTITIONS} \
         partitions; {KILLS} workers killed, jobs not yet done at each kill: {left_at_kills:?}"
    );
    println!(
        "crash_kafka_workers: effects {} for {} jobs; executions {} (executions − N = {}); \
         duplicate deliveries absorbed by completion markers: {duplicates}; ready lag {lag}",
        audit.effects,
        audit.jobs,
        audit.executions,
        audit.executions.saturating_sub(JOBS as u64),
    );
    println!(
        "crash_kafka_workers: kills done at {killed_at:?}, all settled at {:?}",
        began.elapsed()
    );
    assert!(
        left_at_kills.iter().all(|&left| left > 0),
        "every kill happened while jobs were still waiting: {left_at_kills:?}"
    );
    assert_eq!(audit.effects, JOBS as u64, "one effect per job");
    assert_eq!(audit.dead_letters, 0, "no dead letters");
    assert_eq!(
        lag, 0,
        "the queue's consumer group has committed everything"
    );
    audit.assert_records_completed();
}

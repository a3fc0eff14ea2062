//! Crash safety of workers on Kafka, against real processes: worker processes sharing a
//! queue's consumer group are `kill -9`ed mid-run while they hold deliveries, and every
//! job still ends completed, its effect recorded once, and the group's lag ends at 0: no
//! offset was committed past a job that had not finished (a kill would otherwise lose it).
//!
//! The run is made for both kinds of group member ([`Membership`]), and both run:
//! - static members (`kafka.instance_id`, Kafka's KIP-345), as StatefulSet pods are: each
//!   worker process has a slot name, and the replacement of a killed worker starts under
//!   the victim's name, takes over its partitions and fetches them from the committed
//!   offsets;
//! - dynamic members (no instance id, as a Deployment's pods are): a dead member's
//!   partitions move to the others once its session expires, and the replacement joins
//!   as a new member.
//!
//! The committed offsets decide everything this test checks: one committed past a job
//! the victim had not finished would lose that job.

use std::time::{Duration, Instant};

use jobfleet_common::{Job, Route};
use jobfleet_testkit::{kafka_url, HOW_TO_START_KAFKA, KAFKA_VAR};
use jobfleet_tests::processes::kinds::EffectPayload;
use jobfleet_tests::processes::world::World;
use jobfleet_tests::processes::{ProcId, Role};
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
/// How worker processes join the queue's consumer group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Membership {
    /// Each worker slot has a `kafka.instance_id`; a replacement starts under its victim's.
    Static,
    /// No instance ids: a dead worker's partitions move once its session expires.
    Dynamic,
}

impl Membership {
    /// How long the coordinator keeps a silent member. Static: longer than a replacement
    /// takes to start and rejoin under the victim's name, so the name and its partitions
    /// are still the victim's when it comes back. Dynamic: the broker's least
    /// (`group.min.session.timeout.ms`, 6 s), so a dead worker's partitions move within
    /// seconds (librdkafka's default is 45 s).
    fn session_timeout_ms(self) -> &'static str {
        match self {
            Self::Static => "15000",
            Self::Dynamic => "6000",
        }
    }
}
/// Longest the jobs may take to settle after the last kill.
const SETTLE_LIMIT: Duration = Duration::from_secs(40);
/// Sets a worker process's `kafka.instance_id`.
const INSTANCE_VAR: &str = "JOBFLEET_KAFKA__INSTANCE_ID";
/// A worker's log line for a delivery acked unrun because the job was already completed.
const DUPLICATE: &str = r#""outcome":"duplicate""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_static_members_lose_no_job_and_commit_no_unfinished_offset() {
    kill_workers_mid_run(Membership::Static).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_dynamic_members_lose_no_job_and_commit_no_unfinished_offset() {
    kill_workers_mid_run(Membership::Dynamic).await;
}

async fn kill_workers_mid_run(membership: Membership) {
    let began = Instant::now();
    let Some(broker) = kafka_url() else {
        panic!("{KAFKA_VAR} is not set: {HOW_TO_START_KAFKA}");
    };
    let mut world = World::new(env!("CARGO_BIN_EXE_testfleet"), |c| {
        c.broker = broker.parse().expect("a kafka:// URL");
        c.kafka.partitions = PARTITIONS;
        let props = &mut c.kafka.properties;
        props.insert("heartbeat.interval.ms".into(), "100".into());
        props.insert(
            "session.timeout.ms".into(),
            membership.session_timeout_ms().into(),
        );
        c.worker.concurrency = CONCURRENCY;
        c.worker.ack_early_after = Duration::from_secs(1);
        c.worker.hold_lease = Duration::from_secs(1);
    })
    .await;
    world.procs.spawn(Role::Scheduler);
    // Worker process → its slot's name.
    let mut slots = std::collections::HashMap::new();
    for slot in 0..WORKERS {
        let name = format!("worker-{slot}");
        slots.insert(spawn_worker(&mut world, membership, &name), name);
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
    world.wait_effects(50, Duration::from_secs(30)).await;

    let mut left_at_kills = Vec::new();
    for _ in 0..KILLS {
        let live = world.procs.live(Role::Worker);
        let victim = live[rand::rng().random_range(0..live.len())];
        left_at_kills.push((JOBS as u64).saturating_sub(world.effects().await));
        world.procs.kill(victim);
        let name = slots.remove(&victim).expect("every live worker has a slot");
        slots.insert(spawn_worker(&mut world, membership, &name), name);
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
        "crash_kafka_workers: {membership:?} members, {JOBS} jobs, {WORKERS} workers × \
         {CONCURRENCY}, {PARTITIONS} partitions; {KILLS} workers killed, jobs not yet done at each kill: {left_at_kills:?}"
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

/// Starts a worker process in slot `name`.
fn spawn_worker(world: &mut World, membership: Membership, name: &str) -> ProcId {
    match membership {
        Membership::Static => world
            .procs
            .spawn_with(Role::Worker, &[(INSTANCE_VAR, name)]),
        Membership::Dynamic => world.procs.spawn(Role::Worker),
    }
}

//! Crash safety of workers, against real processes: worker processes are `kill -9`ed
//! again and again while they hold jobs (short ones prefetched and running, long ones
//! held in the store and acknowledged early), and every job still ends completed once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jobfleet_common::{Job, JobId, Priority};
use jobfleet_tests::processes::kinds::EffectPayload;
use jobfleet_tests::processes::world::World;
use jobfleet_tests::processes::{ProcId, Role};
use rand::Rng;
use redis::AsyncCommands;

/// Short jobs in the run.
const SHORT_JOBS: usize = 3000;
/// A short job's timeout: not above `worker.ack_early_after` (1 s), so short jobs keep
/// their delivery unacknowledged while they run, and a kill hands them back through the
/// broker. (With the default 5-minute timeout every job would be held in the store.)
const SHORT_TIMEOUT_MS: u64 = 1_000;
/// Worker processes alive at any time.
const WORKERS: usize = 3;
/// Worker processes killed, one at a time, each replaced at once.
const KILLS: usize = 5;
/// Long jobs (held in the store) enqueued before each kill.
const LONG_PER_KILL: usize = 2;
/// How long a long job runs: above `worker.ack_early_after`, so it is held.
const LONG_MS: u64 = 1_500;
/// A worker's log line for a delivery acked unrun because the job was already completed.
const DUPLICATE: &str = r#""outcome":"duplicate""#;
/// A worker's log line for an attempt that completed its job.
const COMPLETED: &str = r#""outcome":"completed""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_lose_no_job_and_repeat_no_effect() {
    let began = Instant::now();
    let mut world = World::new(env!("CARGO_BIN_EXE_testfleet"), |c| {
        c.worker.concurrency = 6;
        c.worker.ack_early_after = Duration::from_secs(1);
        c.worker.hold_lease = Duration::from_secs(1);
    })
    .await;
    world.procs.spawn(Role::Scheduler);
    for _ in 0..WORKERS {
        world.procs.spawn(Role::Worker);
    }
    let short: Vec<Job> = {
        let mut rng = rand::rng();
        (0..SHORT_JOBS)
            .map(|_| {
                let ms = rng.random_range(10..=30);
                let payload = EffectPayload {
                    ms,
                    announce: false,
                };
                payload.job(&world.queue).with_timeout_ms(SHORT_TIMEOUT_MS)
            })
            .collect()
    };
    let mut ids = world.enqueue_all(short).await;
    world.wait_effects(1, Duration::from_secs(10)).await;

    let mut held_kills = Vec::new();
    let mut left_at_kills = Vec::new();
    for _ in 0..KILLS {
        // High priority: they jump the backlog and start within a few deliveries.
        let long: Vec<Job> = (0..LONG_PER_KILL)
            .map(|_| {
                let payload = EffectPayload {
                    ms: LONG_MS,
                    announce: true,
                };
                payload
                    .job(&world.queue)
                    .with_priority(Priority::HIGH)
                    .with_timeout_ms(30_000)
            })
            .collect();
        let long_ids = world.enqueue_all(long).await;
        ids.extend(&long_ids);
        let (victim, held) = pick_victim(&mut world, &long_ids).await;
        left_at_kills.push((ids.len() as u64).saturating_sub(world.effects().await));
        world.procs.kill(victim);
        held_kills.extend(held);
        world.procs.spawn(Role::Worker);
        let pause = rand::rng().random_range(300..700);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    let killed_at = began.elapsed();

    let audit = world.wait_settled(&ids, Duration::from_secs(25)).await;
    let rabbit = world.rabbit_messages().await;
    let starts: HashMap<String, u64> = world
        .redis()
        .hgetall(world.keys.starts())
        .await
        .expect("redis");
    let held_reruns = held_kills
        .iter()
        .filter(|id| starts.get(&id.to_string()).copied().unwrap_or(0) >= 2)
        .count();
    let duplicates = world.procs.count_in_logs(Role::Worker, DUPLICATE);
    let completions = world.procs.count_in_logs(Role::Worker, COMPLETED);
    println!(
        "crash_workers: {} jobs ({SHORT_JOBS} short, {} long); {KILLS} workers killed, \
         jobs not yet done at each kill: {left_at_kills:?}",
        ids.len(),
        KILLS * LONG_PER_KILL,
    );
    println!(
        "crash_workers: {} kills hit a worker running a held long job, {held_reruns} of those \
         jobs ran again elsewhere",
        held_kills.len()
    );
    println!(
        "crash_workers: effects {} for {} jobs; executions {} (re-runs absorbed by the \
         idempotent effect: {}); duplicate deliveries absorbed by completion markers: \
         {duplicates}; completed attempts logged: {completions}",
        audit.effects,
        audit.jobs,
        audit.executions,
        audit.reruns(),
    );
    println!(
        "crash_workers: kills done at {killed_at:?}, all settled at {:?}",
        began.elapsed()
    );
    assert!(
        rabbit.iter().all(|(_, n)| *n == 0),
        "RabbitMQ still holds messages (ready or unacknowledged): {rabbit:?}"
    );
    assert!(
        left_at_kills.iter().all(|&left| left > 0),
        "every kill happened while jobs were still waiting: {left_at_kills:?}"
    );
    assert!(
        !held_kills.is_empty(),
        "at least one kill hit a worker running a held long job"
    );
    audit.assert_records_completed();
    assert_eq!(
        held_reruns,
        held_kills.len(),
        "every held job whose worker died ran again"
    );
}

/// The worker to kill: one that is running one of `long_ids` (held in the store) if one
/// starts within 2 s, with that job's id; else the oldest live worker.
async fn pick_victim(world: &mut World, long_ids: &[JobId]) -> (ProcId, Option<JobId>) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        world.procs.assert_alive();
        let runners: HashMap<String, u32> = world
            .redis()
            .hgetall(world.keys.runner())
            .await
            .expect("redis");
        for id in long_ids {
            let Some(&pid) = runners.get(&id.to_string()) else {
                continue;
            };
            let done: bool = world
                .redis()
                .sismember(world.keys.effects(), id.to_string())
                .await
                .expect("redis");
            let live = world.procs.live(Role::Worker);
            if let Some(victim) = live.into_iter().find(|&p| world.procs.pid(p) == pid) {
                if !done {
                    return (victim, Some(*id));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (world.procs.live(Role::Worker)[0], None)
}

//! Issue 9, case 2: both schedulers are `kill -9`ed ~50 ms after a few hundred delayed
//! jobs (some of them long) come due, while they are releasing them; one is started
//! again. Jobs a dead scheduler had claimed wait for its release lease
//! (`scheduler.release_lease`, left at its default here) and are then released again:
//! those it had already published are delivered twice.
//!
//! Every job must complete, no job may run twice at the same time (a long job's second
//! delivery waits for the execution lease, then finds the job completed), and the
//! stranded jobs must be late by no more than the default release lease (5 s) plus a
//! margin. The measured lateness is printed.

use std::time::{Duration, Instant};

use jobfleet_common::{Config, JobId};
use jobfleet_tests::harness::wait_for;
use jobfleet_tests::processes::executions::{set_lease_ttl, TrackedPayload};
use jobfleet_tests::processes::steps::quiet_executions;
use jobfleet_tests::processes::world::World;
use jobfleet_tests::processes::Role;
use redis::AsyncCommands;

/// Short delayed jobs.
const SHORT: usize = 600;
/// Long delayed jobs among them, running longer than the release lease, so a second
/// delivery of one arrives while it runs.
const LONG: usize = 16;
/// How long a short and a long job run.
const SHORT_MS: u64 = 20;
const LONG_MS: u64 = 8_000;
/// Where the long jobs are not: they come first and last, so both schedulers' batches
/// are likely to hold some.
const SHORT_RANGE: std::ops::Range<usize> = LONG / 2..SHORT + LONG / 2;
/// When the schedulers die after the jobs come due.
const KILL_AFTER_DUE: Duration = Duration::from_millis(50);
/// The release lease the fix makes the default, and what a stranded job may wait on top.
const RELEASE_LEASE: Duration = Duration::from_secs(5);
const MARGIN: Duration = Duration::from_secs(3);
/// The execution lease's TTL.
const LEASE_TTL: Duration = Duration::from_secs(2);
/// A worker's log line for a delivery acked unrun because the job was already completed.
const DUPLICATE: &str = r#""outcome":"duplicate""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedulers_killed_mid_release_run_no_job_twice_at_once() {
    let began = Instant::now();
    let mut world = World::new(env!("CARGO_BIN_EXE_testfleet"), |c| {
        // The defaults decide how long a dead scheduler's claim strands its jobs.
        c.scheduler.release_batch = Config::default().scheduler.release_batch;
        c.scheduler.release_lease = Config::default().scheduler.release_lease;
        c.worker.concurrency = 2 * LONG;
        set_lease_ttl(c, LEASE_TTL);
    })
    .await;
    let first = world.procs.spawn(Role::Scheduler);
    let second = world.procs.spawn(Role::Scheduler);
    world.procs.spawn(Role::Worker);
    world.procs.spawn(Role::Worker);

    let due = world.producer.now_ms() + 3_000;
    let jobs = (0..SHORT + LONG).map(|i| {
        let ms = if SHORT_RANGE.contains(&i) {
            SHORT_MS
        } else {
            LONG_MS
        };
        TrackedPayload::job(&world.queue, ms).with_run_at_ms(due)
    });
    let ids = world.enqueue_all(jobs.collect()).await;
    let total = (SHORT + LONG) as u64;
    let filed = wait_for(Duration::from_millis(2_500), || async {
        let counts = world.backends.store.delayed_counts().await.expect("store");
        counts.get(&world.queue).copied() == Some(total)
    });
    assert!(
        filed.await,
        "the schedulers filed every job before the due time"
    );
    let until = u64::try_from(due - world.producer.now_ms()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(until) + KILL_AFTER_DUE).await;
    world.procs.kill(first);
    world.procs.kill(second);
    let killed_ms = world.producer.now_ms();
    let (stranded, waiting) = sets(&world).await;
    world.procs.spawn(Role::Scheduler);

    // Long enough for the old 30 s lease, so a late release is reported as such.
    let audit = world.wait_settled(&ids, Duration::from_secs(50)).await;
    let execs = quiet_executions(&mut world).await;
    let lateness = |id: &JobId| execs.first_start_ms(*id).map_or(i64::MAX, |s| s - due);
    let mut late: Vec<i64> = ids.iter().map(lateness).collect();
    late.sort_unstable();
    let worst = Duration::from_millis(u64::try_from(late[late.len() - 1]).unwrap_or(0));
    let over_2s = late.iter().filter(|&&ms| ms > 2_000).count();
    let long_ids: Vec<JobId> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| !SHORT_RANGE.contains(i))
        .map(|(_, id)| *id)
        .collect();
    println!(
        "fault_schedulers_killed: {total} jobs ({LONG} of {LONG_MS} ms) due at once; both \
         schedulers killed {} ms after the due time with {stranded} jobs claimed (stranded) \
         and {waiting} still waiting; release lease {:?}",
        killed_ms - due,
        world.config.scheduler.release_lease,
    );
    println!(
        "fault_schedulers_killed: release lateness (first start - due): median {} ms, \
         worst {worst:?}; {over_2s} jobs over 2 s late; all settled {:?} after the start",
        late[late.len() / 2],
        began.elapsed(),
    );
    println!(
        "fault_schedulers_killed: executions per job {:?} (long jobs {:?}), max simultaneous \
         per job {:?}; duplicate deliveries absorbed by completion markers: {}",
        execs.totals(&ids),
        execs.totals(&long_ids),
        execs.concurrency(&ids),
        world.procs.count_in_logs(Role::Worker, DUPLICATE),
    );
    assert!(
        stranded > 0,
        "the kill landed mid-release: some jobs were claimed by a scheduler that died"
    );
    execs.assert_never_concurrent(&ids);
    execs.assert_totals(&ids, 1);
    assert!(
        worst <= RELEASE_LEASE + MARGIN,
        "stranded jobs were released {worst:?} late, over the {RELEASE_LEASE:?} release lease \
         plus {MARGIN:?}"
    );
    audit.assert_records_completed();
}

/// Jobs in the releasing set (claimed under a lease) and in the waiting set. These are
/// the Redis store's own keys (`common/src/redis/delayed.rs`): no store call lists them.
async fn sets(world: &World) -> (u64, u64) {
    let ns = &world.config.namespace;
    let mut redis = world.redis();
    let releasing: u64 = redis
        .zcard(format!("{ns}:delayed:releasing"))
        .await
        .expect("redis");
    let waiting: u64 = redis
        .zcard(format!("{ns}:delayed:waiting"))
        .await
        .expect("redis");
    (releasing, waiting)
}

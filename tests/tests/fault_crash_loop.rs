//! Issue 9, case 5: a job that kills its worker process (`std::process::abort()`) must
//! not be redelivered forever. Its delivery goes back to RabbitMQ with each dead worker
//! and no attempt is counted for a crash; the execution lease it leaves behind, expired
//! and never released, is what tells the next admission that its holder crashed.
//!
//! With `max_attempts = 3` and the test restarting every dead worker, the job runs three
//! times, crashes three workers, and is then dead with error kind `worker_crashed`
//! instead of running a fourth time. A normal job enqueued beside it completes.

use std::time::{Duration, Instant};

use jobfleet_common::store::JobState;
use jobfleet_tests::processes::executions::{set_lease_ttl, TrackedPayload};
use jobfleet_tests::processes::steps::{executions, QUIET};
use jobfleet_tests::processes::world::World;
use jobfleet_tests::processes::Role;

/// Worker processes kept alive.
const WORKERS: usize = 2;
/// Attempts the crashing job is allowed.
const MAX_ATTEMPTS: u32 = 3;
/// How long the crashing job runs before it aborts its process.
const CRASH_AFTER_MS: u64 = 300;
/// The execution lease's TTL: how long a crashed holder blocks the next run.
const LEASE_TTL: Duration = Duration::from_secs(1);
/// How long the test waits for the job to be dead.
const WITHIN: Duration = Duration::from_secs(40);
/// Executions after which the job is taken to be crash-looping.
const LOOPING: usize = 2 * MAX_ATTEMPTS as usize;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_crashes_its_worker_dies_after_max_attempts() {
    let began = Instant::now();
    let mut world = World::new(env!("CARGO_BIN_EXE_testfleet"), |c| {
        c.worker.concurrency = 4;
        set_lease_ttl(c, LEASE_TTL);
    })
    .await;
    world.procs.spawn(Role::Scheduler);
    for _ in 0..WORKERS {
        world.procs.spawn(Role::Worker);
    }
    let crash = TrackedPayload::crash(&world.queue, CRASH_AFTER_MS).with_max_attempts(MAX_ATTEMPTS);
    let normal = TrackedPayload::job(&world.queue, 50);
    let ids = world.enqueue_all(vec![crash, normal]).await;
    let (crash, normal) = (ids[0], ids[1]);

    let deadline = Instant::now() + WITHIN;
    let mut restarts = 0;
    let dead = loop {
        for _ in world.procs.take_exited(Role::Worker) {
            world.procs.spawn(Role::Worker);
            restarts += 1;
        }
        world.procs.assert_alive();
        let record = world.backends.store.record(crash).await.expect("store");
        if record.is_some_and(|r| r.state == JobState::Dead) {
            break true;
        }
        if executions(&world).await.total(crash) > LOOPING || Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let dead_after = began.elapsed();
    let letter = world.backends.store.dead_get(crash).await.expect("store");
    let normal_done = world
        .backends
        .store
        .is_completed(normal)
        .await
        .expect("store");
    // A run after the job died would show here; a worker it crashed is not checked.
    tokio::time::sleep(QUIET).await;
    let execs = executions(&world).await;
    println!(
        "fault_crash_loop: crashing job (max_attempts {MAX_ATTEMPTS}) ran {} times, {restarts} \
         workers restarted; dead: {dead} after {dead_after:?}; dead letter: {:?}; the normal \
         job completed: {normal_done}, ran {} time(s)",
        execs.total(crash),
        letter
            .as_ref()
            .map(|l| (l.error_kind.as_str(), l.reason.as_str())),
        execs.total(normal),
    );
    println!("{}", execs.describe(crash));
    assert!(
        dead,
        "the crashing job is dead after {MAX_ATTEMPTS} crashes, not redelivered forever: it \
         ran {} times within {WITHIN:?}",
        execs.total(crash)
    );
    let letter = letter.expect("a dead letter for the crashing job");
    assert_eq!(letter.error_kind.as_str(), "worker_crashed", "{letter:?}");
    assert!(
        letter.reason.contains("worker crashed"),
        "the reason says so: {:?}",
        letter.reason
    );
    assert_eq!(
        execs.total(crash),
        MAX_ATTEMPTS as usize,
        "one execution per attempt"
    );
    execs.assert_never_concurrent(&ids);
    assert!(normal_done, "the normal job beside it completed");
    let record = world.backends.store.record(normal).await.expect("store");
    assert_eq!(record.map(|r| r.state), Some(JobState::Completed));
    assert_eq!(execs.total(normal), 1, "the normal job ran once");
}

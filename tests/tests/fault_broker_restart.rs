//! Issue 9, case 1, as the operator reported it: `rabbitmqctl stop_app; sleep 3;
//! rabbitmqctl start_app` while two worker processes run long jobs. Every connection
//! drops, the handlers keep running, and when the broker is back it redelivers every
//! unacknowledged job.
//!
//! Invariant 4a: no job runs twice at the same time. The redelivered copies must wait
//! for the execution lease, then find their job completed: every job runs exactly once
//! and completes.
//!
//! **This test stops the shared RabbitMQ**, which breaks every other test using it at
//! that moment. So it never runs beside them: `.config/nextest.toml`'s default filter
//! leaves it out of every plain `cargo nextest run`, and `scripts/test.sh` runs it
//! alone after the main suite:
//! `cargo nextest run -p jobfleet-tests --ignore-default-filter -E 'binary(fault_broker_restart)'`.
//! However it ends, the broker application is started again.

use std::time::{Duration, Instant};

use jobfleet_tests::processes::executions::{set_lease_ttl, TrackedPayload};
use jobfleet_tests::processes::rabbitmqctl;
use jobfleet_tests::processes::steps::{quiet_executions, wait_consumers, wait_running};
use jobfleet_tests::processes::world::World;
use jobfleet_tests::processes::Role;

/// Long jobs, spread over the two workers.
const JOBS: usize = 16;
/// How long each runs: longer than the outage plus the reconnection, so the redelivered
/// copies arrive while the first runs go on.
const JOB_MS: u64 = 15_000;
/// How long the broker application stays stopped.
const OUTAGE: Duration = Duration::from_secs(3);
/// The execution lease's TTL.
const LEASE_TTL: Duration = Duration::from_secs(2);

/// Starts the broker application again when dropped, unless it already was: a failing
/// test must not leave RabbitMQ stopped for everything after it.
struct Stopped {
    started: bool,
}

impl Stopped {
    fn stop() -> Self {
        rabbitmqctl::stop_app();
        Self { started: false }
    }

    fn start(&mut self) {
        self.started = true;
        rabbitmqctl::start_app();
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if !self.started {
            rabbitmqctl::start_app();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_runs_each_long_job_once() {
    let began = Instant::now();
    let mut world = World::new(env!("CARGO_BIN_EXE_testfleet"), |c| {
        // Room for every job and every redelivered copy on either worker.
        c.worker.concurrency = 2 * JOBS;
        set_lease_ttl(c, LEASE_TTL);
    })
    .await;
    world.procs.spawn(Role::Scheduler);
    world.procs.spawn(Role::Worker);
    world.procs.spawn(Role::Worker);
    wait_consumers(&mut world, 2, Duration::from_secs(15)).await;

    let jobs = (0..JOBS).map(|_| TrackedPayload::job(&world.queue, JOB_MS));
    let ids = world.enqueue_all(jobs.collect()).await;
    wait_running(&mut world, &ids, Duration::from_secs(10)).await;
    let stopped_at = Instant::now();
    let restart = tokio::task::spawn_blocking(|| {
        let mut stopped = Stopped::stop();
        std::thread::sleep(OUTAGE);
        stopped.start();
    });
    restart.await.expect("rabbitmqctl stop_app, start_app");
    let back_after = stopped_at.elapsed();

    let audit = world.wait_settled(&ids, Duration::from_secs(45)).await;
    let settled_after = stopped_at.elapsed();
    let execs = quiet_executions(&mut world).await;
    let rabbit = world.rabbit_messages().await;
    println!(
        "fault_broker_restart: {JOBS} jobs of {JOB_MS} ms on 2 workers; broker stopped for \
         {OUTAGE:?}, back {back_after:?} after the stop; settled {settled_after:?} after the \
         stop, {:?} in all",
        began.elapsed(),
    );
    println!(
        "fault_broker_restart: executions per job {:?}, max simultaneous per job {:?}",
        execs.totals(&ids),
        execs.concurrency(&ids),
    );
    execs.assert_never_concurrent(&ids);
    execs.assert_totals(&ids, 1);
    assert!(
        rabbit.iter().all(|(_, n)| *n == 0),
        "RabbitMQ still holds messages (ready or unacknowledged): {rabbit:?}"
    );
    audit.assert_records_completed();
}

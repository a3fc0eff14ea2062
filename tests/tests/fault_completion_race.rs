//! Issue 9, the end of an execution: a second delivery of a running job, waiting for its
//! execution lease, must find the job completed once the first execution ends, and not
//! run it again. Between the first execution giving up its lease and its completion
//! marker being written, the job must never look free.
//!
//! One worker process reaches RabbitMQ through one fault proxy and Redis through another
//! that adds latency, so every store call of that worker (the end of its executions
//! included) takes a few hundred milliseconds. It runs long jobs; its AMQP connection is
//! reset, so RabbitMQ hands their deliveries to a second worker, direct to both services,
//! whose copies wait for the lease, re-asking about every second. Every job must run
//! exactly once and never twice at once.

use std::time::{Duration, Instant};

use jobfleet_tests::processes::executions::{set_lease_ttl, TrackedPayload};
use jobfleet_tests::processes::steps::{quiet_executions, wait_consumers, wait_running};
use jobfleet_tests::processes::world::World;
use jobfleet_tests::processes::Role;
use jobfleet_tests::proxy::Proxy;

/// Long jobs on the slow worker.
const JOBS: usize = 8;
/// How long each runs.
const JOB_MS: u64 = 4_000;
/// Latency added each way between the slow worker and Redis.
const LATENCY: Duration = Duration::from_millis(200);
/// The execution lease's TTL: several round trips of the slow worker.
const LEASE_TTL: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_copy_never_runs_a_job_whose_execution_just_ended() {
    let began = Instant::now();
    let mut world = World::new(env!("CARGO_BIN_EXE_testfleet"), |c| {
        c.worker.concurrency = 2 * JOBS;
        set_lease_ttl(c, LEASE_TTL);
    })
    .await;
    let amqp = Proxy::for_url(world.config.broker.url())
        .await
        .expect("start the AMQP proxy");
    let redis = Proxy::for_url(world.config.store.url())
        .await
        .expect("start the Redis proxy");
    world.procs.spawn(Role::Scheduler);
    let slow = world.procs.spawn_tweaked(Role::Worker, |c| {
        c.broker = amqp.broker(&c.broker);
        c.store = redis.store(&c.store);
    });
    wait_consumers(&mut world, 1, Duration::from_secs(15)).await;
    redis.set_delay(LATENCY);

    let jobs = (0..JOBS).map(|_| TrackedPayload::job(&world.queue, JOB_MS));
    let ids = world.enqueue_all(jobs.collect()).await;
    wait_running(&mut world, &ids, Duration::from_secs(10)).await;
    world.procs.spawn(Role::Worker);
    wait_consumers(&mut world, 2, Duration::from_secs(15)).await;
    let reset = amqp.reset();

    let audit = world.wait_settled(&ids, Duration::from_secs(40)).await;
    let execs = quiet_executions(&mut world).await;
    let pid = world.procs.pid(slow);
    let elsewhere = ids
        .iter()
        .filter(|id| execs.of(**id).iter().any(|e| e.pid != pid))
        .count();
    println!(
        "fault_completion_race: {JOBS} jobs of {JOB_MS} ms on a worker whose Redis is \
         {LATENCY:?} away each way; {reset} AMQP connection(s) reset; {elsewhere} jobs ran \
         (also) on the other worker; {:?} in all",
        began.elapsed(),
    );
    println!(
        "fault_completion_race: executions per job {:?}, max simultaneous per job {:?}",
        execs.totals(&ids),
        execs.concurrency(&ids),
    );
    execs.assert_never_concurrent(&ids);
    execs.assert_totals(&ids, 1);
    audit.assert_records_completed();
}

//! Issue 9, case 1, as a network fault: one worker process reaches RabbitMQ through a
//! fault proxy that resets its AMQP connection (a TCP RST both ways) while it runs long
//! jobs; the other worker goes direct. RabbitMQ requeues the reset worker's unacked
//! deliveries at once, while that worker's handlers keep running.
//!
//! Invariant 4a: no job runs twice at the same time. The redelivered copy of a running
//! job must wait for the execution lease, then find the job completed, so every job runs
//! exactly once and completes.

use std::time::{Duration, Instant};

use jobfleet_tests::processes::executions::{set_lease_ttl, TrackedPayload};
use jobfleet_tests::processes::steps::{quiet_executions, wait_consumers, wait_running};
use jobfleet_tests::processes::world::World;
use jobfleet_tests::processes::Role;
use jobfleet_tests::proxy::Proxy;

/// Long jobs, spread over the two workers.
const JOBS: usize = 16;
/// How long each runs: long enough that the redelivered copies arrive while it runs.
const JOB_MS: u64 = 8_000;
/// The execution lease's TTL.
const LEASE_TTL: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amqp_reset_runs_no_job_twice_at_once() {
    let began = Instant::now();
    let mut world = World::new(env!("CARGO_BIN_EXE_testfleet"), |c| {
        // Room for every job and every redelivered copy on either worker.
        c.worker.concurrency = 2 * JOBS;
        set_lease_ttl(c, LEASE_TTL);
    })
    .await;
    let proxy = Proxy::for_url(world.config.broker.url())
        .await
        .expect("start the AMQP proxy");
    world.procs.spawn(Role::Scheduler);
    let proxied = world
        .procs
        .spawn_tweaked(Role::Worker, |c| c.broker = proxy.broker(&c.broker));
    world.procs.spawn(Role::Worker);
    wait_consumers(&mut world, 2, Duration::from_secs(15)).await;

    let jobs = (0..JOBS).map(|_| TrackedPayload::job(&world.queue, JOB_MS));
    let ids = world.enqueue_all(jobs.collect()).await;
    let running = wait_running(&mut world, &ids, Duration::from_secs(10)).await;
    let pid = world.procs.pid(proxied);
    let on_proxied = ids
        .iter()
        .filter(|id| running.of(**id).iter().any(|e| e.pid == pid))
        .count();
    assert!(
        on_proxied > 0,
        "the proxied worker runs some of the jobs before the reset"
    );
    let reset = proxy.reset();
    let reset_at = Instant::now();

    let audit = world.wait_settled(&ids, Duration::from_secs(40)).await;
    let settled_after = reset_at.elapsed();
    let execs = quiet_executions(&mut world).await;
    let rabbit = world.rabbit_messages().await;
    println!(
        "fault_amqp_reset: {JOBS} jobs of {JOB_MS} ms, {on_proxied} on the proxied worker; \
         {reset} proxied connection(s) reset, {} accepted since; settled {settled_after:?} \
         after the reset, {:?} in all",
        proxy.accepted(),
        began.elapsed(),
    );
    println!(
        "fault_amqp_reset: executions per job {:?}, max simultaneous per job {:?}",
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

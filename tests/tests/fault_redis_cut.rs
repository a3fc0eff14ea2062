//! Issue 9, case 3: a worker process that holds long jobs acknowledged early
//! (`worker.ack_early_after`; the jobs are held in the store's delayed set) is cut from
//! Redis (a fault proxy blocks its store connection: a partition, noticed only through
//! time-outs) for longer than `worker.hold_lease`. Its holds are not renewed, so the
//! scheduler releases the jobs again and a second worker, direct to Redis, receives them.
//!
//! Invariant 4a: no job runs twice at the same time. The cut worker cannot renew its
//! execution leases, so it must stop its handlers before they expire; the second worker
//! runs the released copies only after that. Every job completes, having run at most
//! twice (the cut attempt and the rerun).

use std::time::{Duration, Instant};

use jobfleet_testkit::wait_for;
use jobfleet_tests::processes::executions::{set_lease_ttl, TrackedPayload};
use jobfleet_tests::processes::steps::{quiet_executions, wait_consumers, wait_running};
use jobfleet_tests::processes::world::World;
use jobfleet_tests::processes::Role;
use jobfleet_tests::proxy::Proxy;

/// Long jobs the cut worker holds.
const JOBS: usize = 4;
/// How long each runs.
const JOB_MS: u64 = 8_000;
/// Their timeout: over `worker.ack_early_after`, so they are held and acked early.
const TIMEOUT_MS: u64 = 60_000;
const ACK_EARLY_AFTER: Duration = Duration::from_secs(1);
/// How long a held job survives its worker's silence.
const HOLD_LEASE: Duration = Duration::from_secs(2);
/// The execution lease's TTL.
const LEASE_TTL: Duration = Duration::from_millis(1_500);
/// How long the worker stays cut from Redis: well past the hold lease.
const CUT: Duration = Duration::from_secs(6);
/// A worker's log line for an admission that counted crashed executions.
const CRASHES_FOUND: &str = "died with their worker";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_from_redis_runs_no_held_job_twice_at_once() {
    let began = Instant::now();
    let mut world = World::new(env!("CARGO_BIN_EXE_testfleet"), |c| {
        c.worker.concurrency = 2 * JOBS;
        c.worker.ack_early_after = ACK_EARLY_AFTER;
        c.worker.hold_lease = HOLD_LEASE;
        set_lease_ttl(c, LEASE_TTL);
    })
    .await;
    let proxy = Proxy::for_url(world.config.store.url())
        .await
        .expect("start the Redis proxy");
    world.procs.spawn(Role::Scheduler);
    let cut = world
        .procs
        .spawn_tweaked(Role::Worker, |c| c.store = proxy.store(&c.store));
    wait_consumers(&mut world, 1, Duration::from_secs(15)).await;

    let jobs =
        (0..JOBS).map(|_| TrackedPayload::job(&world.queue, JOB_MS).with_timeout_ms(TIMEOUT_MS));
    let ids = world.enqueue_all(jobs.collect()).await;
    wait_running(&mut world, &ids, Duration::from_secs(10)).await;
    let held = wait_for(Duration::from_secs(5), || async {
        let counts = world.backends.store.delayed_counts().await.expect("store");
        counts.get(&world.queue).copied() == Some(JOBS as u64)
    });
    assert!(held.await, "the worker holds every job in the delayed set");
    world.procs.spawn(Role::Worker);
    wait_consumers(&mut world, 2, Duration::from_secs(15)).await;

    proxy.block();
    let blocked_at = Instant::now();
    tokio::time::sleep(CUT).await;
    proxy.unblock();

    let audit = world.wait_settled(&ids, Duration::from_secs(40)).await;
    let settled_after = blocked_at.elapsed();
    let execs = quiet_executions(&mut world).await;
    let pid = world.procs.pid(cut);
    let reruns = ids
        .iter()
        .filter(|id| execs.of(**id).iter().any(|e| e.pid != pid))
        .count();
    println!(
        "fault_redis_cut: {JOBS} held jobs of {JOB_MS} ms (hold lease {HOLD_LEASE:?}, lease \
         TTL {LEASE_TTL:?}); their worker cut from Redis for {CUT:?}; {reruns} ran again on \
         the other worker; settled {settled_after:?} after the cut, {:?} in all",
        began.elapsed(),
    );
    println!(
        "fault_redis_cut: executions per job {:?}, max simultaneous per job {:?}",
        execs.totals(&ids),
        execs.concurrency(&ids),
    );
    for id in &ids {
        println!("{}", execs.describe(*id));
    }
    let mut attempts = Vec::new();
    for id in &ids {
        let record = world.backends.store.record(*id).await.expect("store");
        attempts.push(record.map_or(0, |r| r.attempt));
    }
    println!(
        "fault_redis_cut: attempts at completion {attempts:?}; admissions that found an \
         expired, never-released lease (counted as crashes): {}",
        world.procs.count_in_logs(Role::Worker, CRASHES_FOUND),
    );
    execs.assert_never_concurrent(&ids);
    let too_many: Vec<_> = ids.iter().filter(|id| execs.total(**id) > 2).collect();
    assert!(
        too_many.is_empty(),
        "jobs that ran more than twice (the cut attempt and one rerun): {too_many:?}"
    );
    audit.assert_records_completed();
}

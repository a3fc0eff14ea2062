//! Issue 9, case 2: both schedulers are `kill -9`ed while they release a few hundred
//! delayed jobs (some of them long) that came due at once (as soon as a claim shows in the
//! store's releasing set); one is started again. Jobs a dead scheduler had claimed wait for its release lease
//! (`scheduler.release_lease`, left at its default here) and are then released again:
//! those it had already published are delivered twice.
//!
//! Every job must complete, no job may run twice at the same time (a long job's second
//! delivery waits for the execution lease, then finds the job completed), and the
//! stranded jobs must be late by no more than the default release lease (5 s) plus a
//! margin. The measured lateness is printed.
//!
//! Whether a kill mid-release finds a batch already published but not yet marked done (the second delivery of a long job while it runs) is a matter of timing.
//! The second test makes it certain: one scheduler reaches RabbitMQ through a fault proxy
//! whose replies are blocked from just before the jobs come due (after warm-up jobs have
//! opened its publishing channels), so the batch it publishes reaches the broker and runs
//! but is never confirmed, and never marked done; it is killed once long jobs among them
//! run, and those jobs are delivered again when the release lease (2 s there) runs out,
//! while they still run.

use jobfleet_connect::redis::keys;
use std::time::{Duration, Instant};

use jobfleet_common::store::JobState;
use jobfleet_common::{Config, Job, JobId};
use jobfleet_testkit::amqp_url;
use jobfleet_testkit::wait_for;
use jobfleet_tests::processes::executions::{set_lease_ttl, TrackedPayload};
use jobfleet_tests::processes::steps::{executions, quiet_executions};
use jobfleet_tests::processes::world::World;
use jobfleet_tests::processes::{ProcId, Role};
use jobfleet_tests::proxy::Proxy;
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
/// The release lease of the second test.
const SHORT_RELEASE_LEASE: Duration = Duration::from_secs(2);
/// Warm-up releases before the second test blocks replies: at least the RabbitMQ
/// broker's publishing channels per connection (`PUBLISH_CHANNELS`, 4).
const WARM_UPS: usize = 4;
/// Tries the second test makes at a kill that leaves a published batch leased.
const TRIES: usize = 4;
/// The execution lease's TTL.
const LEASE_TTL: Duration = Duration::from_secs(2);
/// A worker's log line for a delivery acked unrun because the job was already completed.
const DUPLICATE: &str = r#""outcome":"duplicate""#;

/// The jobs of one test, all due at `due` (Unix ms).
struct Wave {
    ids: Vec<JobId>,
    long: Vec<JobId>,
    due: i64,
}

/// A world with the default release batch, `release_lease`, two workers, and the
/// schedulers `spawn` starts.
async fn world(
    release_lease: Duration,
    spawn: impl FnOnce(&mut World) -> Vec<ProcId>,
) -> (World, Vec<ProcId>) {
    let mut world = World::new(env!("CARGO_BIN_EXE_testfleet"), |c| {
        c.scheduler.release_batch = Config::default().scheduler.release_batch;
        c.scheduler.release_lease = release_lease;
        c.worker.concurrency = 2 * LONG;
        set_lease_ttl(c, LEASE_TTL);
    })
    .await;
    let schedulers = spawn(&mut world);
    world.procs.spawn(Role::Worker);
    world.procs.spawn(Role::Worker);
    (world, schedulers)
}

/// Enqueues the jobs due 3 s from now, waits until they are filed, blocks the replies of
/// `block` (if any), then waits until [`KILL_AFTER_DUE`] past their due time; without
/// `block`, until a scheduler has claimed some of them (at most 2 s past due).
async fn due_wave(world: &World, block: Option<&Proxy>) -> Wave {
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
    if let Some(proxy) = block {
        proxy.block_replies();
    }
    let until = u64::try_from(due - world.producer.now_ms()).unwrap_or(0);
    if block.is_some() {
        tokio::time::sleep(Duration::from_millis(until) + KILL_AFTER_DUE).await;
    } else {
        // Releasing a few hundred jobs takes tens of milliseconds: a fixed delay can land
        // after the last batch (it did once releases got faster). Return as soon as a
        // scheduler holds a claim, so the kill lands mid-release.
        tokio::time::sleep(Duration::from_millis(until)).await;
        let deadline = Instant::now() + Duration::from_secs(2);
        while sets(world).await.0 == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let long = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| !SHORT_RANGE.contains(i))
        .map(|(_, id)| *id)
        .collect();
    Wave { ids, long, due }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedulers_killed_mid_release_run_no_job_twice_at_once() {
    let began = Instant::now();
    // The default decides how long a dead scheduler's claim strands its jobs.
    let lease = Config::default().scheduler.release_lease;
    let (mut world, schedulers) = world(lease, |w| {
        vec![
            w.procs.spawn(Role::Scheduler),
            w.procs.spawn(Role::Scheduler),
        ]
    })
    .await;
    let wave = due_wave(&world, None).await;
    for id in schedulers {
        world.procs.kill(id);
    }
    let killed_ms = world.producer.now_ms();
    let (stranded, waiting) = sets(&world).await;
    world.procs.spawn(Role::Scheduler);
    println!(
        "fault_schedulers_killed: {} jobs ({LONG} of {LONG_MS} ms) due at once; both \
         schedulers killed {} ms after the due time with {stranded} jobs claimed (stranded) \
         and {waiting} still waiting; release lease {:?}",
        wave.ids.len(),
        killed_ms - wave.due,
        world.config.scheduler.release_lease,
    );
    let worst = settle_and_check(&mut world, &wave, began).await;
    assert!(
        stranded > 0,
        "the kill landed mid-release: some jobs were claimed by a scheduler that died"
    );
    assert!(
        worst <= RELEASE_LEASE + MARGIN,
        "stranded jobs were released {worst:?} late, over the {RELEASE_LEASE:?} release lease \
         plus {MARGIN:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedulers_killed_before_marking_a_release_done_run_no_long_job_twice_at_once() {
    let began = Instant::now();
    for _ in 0..TRIES {
        let Some(mut cut) = cut_before_done().await else {
            continue;
        };
        println!(
            "fault_schedulers_killed (release not marked done): {} jobs ({LONG} of {LONG_MS} \
             ms) due at once; the scheduler's AMQP replies blocked from before the due time, \
             killed {} ms after it with {} jobs claimed; {} long jobs claimed were already \
             running; {:?} since the start of the first try",
            cut.wave.ids.len(),
            cut.killed_ms - cut.wave.due,
            cut.stranded,
            cut.running,
            began.elapsed(),
        );
        settle_and_check(&mut cut.world, &cut.wave, began).await;
        return;
    }
    panic!(
        "in {TRIES} tries, the scheduler never left a published batch with a long job \
         leased (see the tries' output)"
    );
}

/// A run whose schedulers died with a published batch leased.
struct Cut {
    world: World,
    wave: Wave,
    /// Jobs left claimed, and long ones among them that were already running.
    stranded: u64,
    running: usize,
    killed_ms: i64,
    /// Holds the dead schedulers' replies until the end.
    _proxy: Proxy,
}

/// Tries to kill a scheduler while a batch it published, with long jobs, is still
/// leased: `None` if no long job was both running and leased at the kill. The scheduler
/// reaches RabbitMQ through a proxy. Warm-up jobs released through it first leave its
/// publishing channels open (in confirm mode) and its queue declared; the proxy then holds
/// every reply from the broker, from just before the wave comes due. The scheduler's
/// publish frames still reach RabbitMQ, so the batch is delivered and runs, but its
/// confirmations never come back and it is never marked done (the proxy is never
/// unblocked). Without the warm-up a publish that needs an answer first (opening the
/// channel, `confirm.select`) would stall behind the block and publish nothing.
async fn cut_before_done() -> Option<Cut> {
    let proxy = Proxy::for_url(&amqp_url())
        .await
        .expect("start the AMQP proxy");
    // Shorter than the long jobs whatever the default, so their second deliveries come
    // while they run.
    let (mut world, schedulers) = world(SHORT_RELEASE_LEASE, |w| {
        let url = proxy.broker(&w.config.broker);
        vec![w
            .procs
            .spawn_tweaked(Role::Scheduler, |c| c.broker.clone_from(&url))]
    })
    .await;
    // One release round per publishing channel of the connection (the RabbitMQ broker
    // keeps 4 and takes them round robin, one per publish), each due on its own.
    let now = world.producer.now_ms();
    // Built-in `echo` jobs: they record no effect, so the audit counts the wave alone.
    let warm_ups = (0..WARM_UPS)
        .map(|i| Job::new(&world.queue, "echo", "{}").with_run_at_ms(now + 200 + 300 * i as i64));
    let warm_ups = world.enqueue_all(warm_ups.collect()).await;
    let warmed = wait_for(Duration::from_secs(15), || async {
        for id in &warm_ups {
            let record = world.backends.store.record(*id).await.expect("store");
            if !record.is_some_and(|r| r.state == JobState::Completed) {
                return false;
            }
        }
        true
    });
    assert!(warmed.await, "the warm-up jobs were released and completed");
    let wave = due_wave(&world, Some(&proxy)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let running = loop {
        let execs = executions(&world).await;
        let leased = world
            .delayed_set(&keys::delayed_releasing(&world.config.namespace))
            .await;
        let running = wave
            .long
            .iter()
            .filter(|id| leased.contains(id) && execs.total(**id) > 0)
            .count();
        if running > 0 || Instant::now() >= deadline {
            break running;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Let the rest of the published batch start too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in schedulers {
        world.procs.kill(id);
    }
    let killed_ms = world.producer.now_ms();
    let (stranded, _) = sets(&world).await;
    if running == 0 {
        println!(
            "fault_schedulers_killed: try discarded: {stranded} jobs leased at the kill, no \
             long job among them running"
        );
        return None;
    }
    world.procs.spawn(Role::Scheduler);
    Some(Cut {
        world,
        wave,
        stranded,
        running,
        killed_ms,
        _proxy: proxy,
    })
}

/// Waits until every job settled, checks that each ran once and never twice at once,
/// prints what happened, and returns the worst release lateness.
async fn settle_and_check(world: &mut World, wave: &Wave, began: Instant) -> Duration {
    // Long enough for the old 30 s lease, so a late release is reported as such.
    let audit = world.wait_settled(&wave.ids, Duration::from_secs(50)).await;
    let execs = quiet_executions(world).await;
    let lateness = |id: &JobId| execs.first_start_ms(*id).map_or(i64::MAX, |s| s - wave.due);
    let mut late: Vec<i64> = wave.ids.iter().map(lateness).collect();
    late.sort_unstable();
    let worst = Duration::from_millis(u64::try_from(late[late.len() - 1]).unwrap_or(0));
    let over_2s = late.iter().filter(|&&ms| ms > 2_000).count();
    println!(
        "fault_schedulers_killed: release lateness (first start - due): median {} ms, \
         worst {worst:?}; {over_2s} jobs over 2 s late; all settled {:?} after the start",
        late[late.len() / 2],
        began.elapsed(),
    );
    println!(
        "fault_schedulers_killed: executions per job {:?} (long jobs {:?}), max simultaneous \
         per job {:?}; duplicate deliveries absorbed by completion markers: {}",
        execs.totals(&wave.ids),
        execs.totals(&wave.long),
        execs.concurrency(&wave.ids),
        world.procs.count_in_logs(Role::Worker, DUPLICATE),
    );
    execs.assert_never_concurrent(&wave.ids);
    execs.assert_totals(&wave.ids, 1);
    audit.assert_records_completed();
    worst
}

/// Jobs in the releasing set (claimed under a lease) and in the waiting set. These are
/// the Redis store's own keys (`backends/redis/src/delayed.rs`): no store call lists them.
async fn sets(world: &World) -> (u64, u64) {
    let ns = &world.config.namespace;
    let mut redis = world.redis();
    let releasing: u64 = redis
        .zcard(keys::delayed_releasing(ns))
        .await
        .expect("redis");
    let waiting: u64 = redis.zcard(keys::delayed_waiting(ns)).await.expect("redis");
    (releasing, waiting)
}

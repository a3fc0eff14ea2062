//! Crash safety of the scheduler, against real processes: the scheduler process is
//! `kill -9`ed in the middle of releasing a burst of delayed jobs, while it holds a
//! release lease; a new scheduler releases the rest, and the leased jobs once their lease
//! runs out. Every delayed job runs and completes, once in effects.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jobfleet_common::store::JobState;
use jobfleet_common::JobId;
use jobfleet_tests::processes::kinds::EffectPayload;
use jobfleet_tests::processes::world::World;
use jobfleet_tests::processes::{ProcId, Role};
use redis::AsyncCommands;

/// Delayed jobs, all due at the same instant.
const JOBS: usize = 400;
/// Jobs per release round: small, so the release of the burst takes many rounds.
const RELEASE_BATCH: usize = 2;
/// How long a dead scheduler's claim blocks its jobs.
const RELEASE_LEASE: Duration = Duration::from_secs(2);
/// A worker's log line for a delivery acked unrun because the job was already completed.
const DUPLICATE: &str = r#""outcome":"duplicate""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_killed_mid_release_loses_no_delayed_job() {
    let mut world = World::new(env!("CARGO_BIN_EXE_testfleet"), |c| {
        c.scheduler.release_batch = RELEASE_BATCH;
        c.scheduler.release_lease = RELEASE_LEASE;
        c.worker.concurrency = 8;
    })
    .await;
    let first = world.procs.spawn(Role::Scheduler);
    world.procs.spawn(Role::Worker);
    world.procs.spawn(Role::Worker);

    let due = world.producer.now_ms() + 3_000;
    let jobs = (0..JOBS).map(|_| {
        let payload = EffectPayload {
            ms: 2,
            announce: false,
        };
        payload.job(&world.queue).with_run_at_ms(due)
    });
    let ids = world.enqueue_all(jobs.collect()).await;
    let filed = jobfleet_testkit::wait_for(Duration::from_millis(2_500), || async {
        let counts = world.backends.store.delayed_counts().await.expect("store");
        counts.get(&world.queue).copied() == Some(JOBS as u64)
    });
    assert!(
        filed.await,
        "the scheduler filed every job in the delayed set"
    );
    assert!(
        world.producer.now_ms() < due,
        "filed before the jobs were due"
    );
    let until_due = u64::try_from(due - world.producer.now_ms()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(until_due)).await;
    let due_at = Instant::now();

    let frozen = freeze_holding_a_lease(&mut world, first).await;
    let (leased, waiting) = (&frozen.leased, frozen.waiting);
    world.procs.kill(first);
    let killed_at = Instant::now();
    let leased_states = states(&world, leased).await;
    world.procs.spawn(Role::Scheduler);

    let audit = world.wait_settled(&ids, Duration::from_secs(20)).await;
    let settled_after = killed_at.elapsed();
    let duplicates = world.procs.count_in_logs(Role::Worker, DUPLICATE);
    println!(
        "crash_scheduler: {JOBS} delayed jobs due at once, release batch {RELEASE_BATCH}; \
         scheduler killed {:?} after the due time holding a lease on {} jobs (published \
         before the kill: {}, found in {} freezes; their states at the kill: \
         {leased_states:?}), {waiting} still waiting, {} released before",
        killed_at.duration_since(due_at),
        leased.len(),
        frozen.published,
        frozen.tries,
        JOBS as u64 - waiting - leased.len() as u64,
    );
    println!(
        "crash_scheduler: effects {} for {} jobs; executions {} (re-runs absorbed by the \
         idempotent effect: {}); duplicate deliveries absorbed by completion markers: \
         {duplicates}; all settled {settled_after:?} after the kill (lease {RELEASE_LEASE:?})",
        audit.effects,
        audit.jobs,
        audit.executions,
        audit.reruns(),
    );
    assert!(
        waiting > 0,
        "killed mid-release: jobs were still waiting in the delayed set"
    );
    assert!(
        settled_after >= RELEASE_LEASE / 2,
        "the leased jobs waited for the lease to expire: settled after {settled_after:?}"
    );
    audit.assert_records_completed();
}

/// Where the scheduler was frozen before its kill.
struct Frozen {
    /// The jobs it held a release lease on.
    leased: Vec<JobId>,
    /// Whether it had already published them (a worker ran them while it was frozen).
    published: bool,
    /// Jobs still waiting in the delayed set.
    waiting: u64,
    /// Freezes it took to find that moment.
    tries: u32,
}

/// Freezes the scheduler (SIGSTOP) while it holds a release lease, mid-release, so the
/// kill that follows lands there for certain. It looks for the worst moment, after the
/// leased jobs were published and before the lease was given up (a worker runs them
/// while the scheduler is frozen), trying again for up to `SEARCH`; failing that, it
/// settles for any moment holding a lease.
///
/// The releasing set is the Redis store's own key (`{ns}:delayed:releasing`, see
/// `backends/redis/src/delayed.rs`): no store call lists leased jobs, and only this test
/// needs to.
async fn freeze_holding_a_lease(world: &mut World, scheduler: ProcId) -> Frozen {
    const SEARCH: Duration = Duration::from_millis(1_500);
    const LOOK: Duration = Duration::from_millis(150);
    let releasing = jobfleet_connect::redis::keys::delayed_releasing(&world.config.namespace);
    let waiting = jobfleet_connect::redis::keys::delayed_waiting(&world.config.namespace);
    let mut redis = world.redis();
    let started = Instant::now();
    let mut tries = 0;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the scheduler never held a release lease mid-release"
        );
        let left: u64 = redis.zcard(&waiting).await.expect("redis");
        let leased: u64 = redis.zcard(&releasing).await.expect("redis");
        // Mid-release: some jobs out, some still waiting.
        if leased == 0 || left + leased >= JOBS as u64 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        world.procs.pause(scheduler);
        let leased: Vec<JobId> = world.delayed_set(&releasing).await;
        let left: u64 = redis.zcard(&waiting).await.expect("redis");
        if leased.is_empty() || left == 0 {
            world.procs.resume(scheduler);
            continue;
        }
        tries += 1;
        tokio::time::sleep(LOOK).await;
        // A release_done sent just before the stop may land after the look above: the
        // lease must still be there now that the scheduler has certainly stopped.
        let still = world.delayed_set(&releasing).await;
        if still != leased {
            world.procs.resume(scheduler);
            continue;
        }
        let ran: Vec<bool> = redis::cmd("SMISMEMBER")
            .arg(world.keys.effects())
            .arg(leased.iter().map(JobId::to_string).collect::<Vec<_>>())
            .query_async(&mut redis)
            .await
            .expect("redis");
        let published = ran.iter().any(|&r| r);
        if published || started.elapsed() >= SEARCH {
            return Frozen {
                leased,
                published,
                waiting: left,
                tries,
            };
        }
        world.procs.resume(scheduler);
    }
}

/// How many of `ids` are in each state now.
async fn states(world: &World, ids: &[JobId]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for id in ids {
        let record = world.backends.store.record(*id).await.expect("store");
        let state = record.map_or("none", |r| JobState::as_str(r.state));
        *counts.entry(state.to_string()).or_default() += 1;
    }
    counts
}

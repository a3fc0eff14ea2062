//! Issue 12: cron schedules fired by several real `jobfleet scheduler` processes (the
//! `testfleet scheduler` binary runs the same function) on RabbitMQ and Redis.
//!
//! A schedule's instant fires exactly once when its job id (computed from the schedule's
//! name and the instant) has a state record: the fire writes it in the same atomic step
//! that moves the schedule's watermark. "None twice" is checked twice over: the store's
//! fire counter equals the number of instants, and no instant appears in two `schedule
//! fired` log lines across every scheduler process, killed ones included.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jobfleet_common::clock::{self, Clock};
use jobfleet_common::cron::{fired_for, instant_job_id, MissedPolicy, ScheduleSpec};
use jobfleet_common::store::{JobRecord, JobState, StoredSchedule};
use jobfleet_common::{Config, Job, Route};
use jobfleet_connect::redis::keys;
use jobfleet_testkit::recv_job;
use jobfleet_testkit::wait_for;
use jobfleet_tests::processes::world::World;
use jobfleet_tests::processes::{ProcId, Role};
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_testfleet");
/// The leader's lease: a standby leads within about 4/3 of it after the leader dies.
const LEADER_LEASE: Duration = Duration::from_secs(2);
/// The log line of every fire.
const FIRED: &str = "schedule fired";

/// An every-second schedule on the test's queue, running `echo`.
fn every_second(config: &Config, missed: MissedPolicy) -> ScheduleSpec {
    let mut spec = ScheduleSpec::new("* * * * * *", &config.worker.queues[0], "echo");
    spec.missed = missed;
    spec
}

async fn world(schedules: impl FnOnce(&Config) -> Vec<(&'static str, ScheduleSpec)>) -> World {
    World::new(BIN, |c| {
        c.scheduler.leader_lease = LEADER_LEASE;
        for (name, spec) in schedules(c) {
            c.schedules.insert(name.into(), spec);
        }
    })
    .await
}

/// The scheduler process that leads now, from the leader lock's holder id
/// (`{host}-{pid}-{random}`).
async fn leader(world: &World) -> Option<ProcId> {
    let holder: Option<String> = world
        .redis()
        .get(keys::leader_lock(&world.config.namespace))
        .await
        .expect("redis");
    let pid: u32 = holder?.rsplit('-').nth(1)?.parse().ok()?;
    world
        .procs
        .live(Role::Scheduler)
        .into_iter()
        .find(|&id| world.procs.pid(id) == pid)
}

async fn schedule(world: &World, name: &str) -> StoredSchedule {
    world
        .backends
        .store
        .schedule_get(name)
        .await
        .expect("store")
        .unwrap_or_else(|| panic!("schedule {name} exists"))
}

async fn now_ms(world: &World) -> i64 {
    world.backends.store.store_time_ms().await.expect("store")
}

/// Every instant of an every-second schedule from its creation to its last fire, with
/// the record of its job if it fired.
async fn instants(world: &World, s: &StoredSchedule) -> BTreeMap<i64, Option<JobRecord>> {
    let first = (s.state.created_at_ms / 1000 + 1) * 1000;
    let last = s.state.last_instant_ms.expect("fired at least once");
    let mut out = BTreeMap::new();
    for instant in (first..=last).step_by(1000) {
        let id = instant_job_id(&s.name, instant);
        let record = world.backends.store.record(id).await.expect("store");
        out.insert(instant, record);
    }
    out
}

/// `schedule fired` log lines of processes `ids` (all when `None`): (schedule, instant)
/// → how many.
fn logged_fires(world: &World, ids: Option<&[ProcId]>) -> BTreeMap<(String, i64), usize> {
    let all: Vec<ProcId> = (0..world.procs.started()).collect();
    let mut counts = BTreeMap::new();
    for &id in ids.unwrap_or(&all) {
        for line in world.procs.lines_in_log(id, FIRED) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let fields = v.get("fields").unwrap_or(&v);
            let schedule = fields["schedule"].as_str().unwrap_or_default().to_string();
            if let Some(instant) = fields["instant_ms"].as_i64() {
                *counts.entry((schedule, instant)).or_insert(0) += 1;
            }
        }
    }
    counts
}

fn assert_none_twice(world: &World) {
    let twice: Vec<_> = logged_fires(world, None)
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(twice.is_empty(), "instants fired more than once: {twice:?}");
}

/// Lateness of each fire: its job's enqueue time (the store's clock at the fire) after
/// its instant.
fn lateness(fired: &BTreeMap<i64, Option<JobRecord>>) -> BTreeMap<i64, i64> {
    fired
        .iter()
        .filter_map(|(i, r)| Some((*i, r.as_ref()?.enqueued_at_ms - i)))
        .collect()
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).copied().unwrap_or(0)
}

/// Kill intervals for the leader, 3–10 s, fixed so a failure can be re-run alike.
const KILL_AFTER_S: [u64; 8] = [3, 7, 4, 10, 5, 8, 3, 6];
/// How long the kills go on.
const KILLING: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_with_the_leader_killed_in_turn_fire_every_instant_once() {
    const NAME: &str = "every-second";
    let mut world = world(|c| vec![(NAME, every_second(c, MissedPolicy::All))]).await;
    for _ in 0..3 {
        world.procs.spawn(Role::Scheduler);
    }
    world.procs.spawn(Role::Worker);
    let led = wait_for(Duration::from_secs(15), || async {
        leader(&world).await.is_some()
    });
    assert!(led.await, "a scheduler leads");

    let started = Instant::now();
    let mut kills = 0;
    for wait in KILL_AFTER_S.iter().cycle() {
        if started.elapsed() >= KILLING {
            break;
        }
        tokio::time::sleep(Duration::from_secs(*wait)).await;
        world.procs.assert_alive();
        let Some(current) = leader(&world).await else {
            continue; // between leaders: try again at the next turn
        };
        world.procs.kill(current);
        kills += 1;
        world.procs.spawn(Role::Scheduler);
    }
    // Let a survivor take over and fire past the last kill.
    tokio::time::sleep(LEADER_LEASE * 2).await;
    world.procs.assert_alive();

    let s = schedule(&world, NAME).await;
    let fired = instants(&world, &s).await;
    let missing: Vec<i64> = fired
        .iter()
        .filter(|(_, r)| r.is_none())
        .map(|(i, _)| *i)
        .collect();
    assert!(missing.is_empty(), "instants never fired: {missing:?}");
    assert_eq!(
        s.state.fires,
        fired.len() as u64,
        "the store counted one fire per instant"
    );
    assert_none_twice(&world);
    assert!(kills >= 6, "the leader was killed {kills} times");

    let late = lateness(&fired);
    let mut sorted: Vec<i64> = late.values().copied().collect();
    sorted.sort_unstable();
    let fire_times: Vec<i64> = late.iter().map(|(i, l)| i + l).collect();
    let longest_gap = fire_times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(0);
    println!(
        "cron kill test: {} instants over {:?}, leader killed {kills} times (leader lease \
         {LEADER_LEASE:?}); each fired once; fire lateness p50 {} ms, p99 {} ms, max {} ms; \
         longest gap between fires {longest_gap} ms",
        fired.len(),
        started.elapsed(),
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.99),
        sorted.last().copied().unwrap_or(0),
    );
    assert!(
        sorted.last().copied().unwrap_or(0) < (LEADER_LEASE * 3).as_millis() as i64,
        "a failover costs at most about a lease and a third: {sorted:?}"
    );

    // The fired jobs ran, each to completion.
    let ids: Vec<_> = fired.values().flatten().map(|r| r.id).collect();
    let done = wait_for(Duration::from_secs(30), || async {
        let mut all = true;
        for id in &ids {
            let r = world.backends.store.record(*id).await.expect("store");
            all &= r.is_some_and(|r| r.state == JobState::Completed);
        }
        all
    });
    assert!(done.await, "every fired job completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_past_its_lease_fires_nothing_when_resumed() {
    const NAME: &str = "every-second";
    let mut world = world(|c| vec![(NAME, every_second(c, MissedPolicy::All))]).await;
    world.procs.spawn(Role::Scheduler);
    world.procs.spawn(Role::Scheduler);
    let led = wait_for(Duration::from_secs(15), || async {
        leader(&world).await.is_some()
    });
    assert!(led.await, "a scheduler leads");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopped = leader(&world).await.expect("a leader");
    world.procs.pause(stopped);
    let stopped_at = now_ms(&world).await;
    let stopped_for = Instant::now();
    let taken = wait_for(LEADER_LEASE * 3, || async {
        leader(&world).await.is_some_and(|l| l != stopped)
    });
    assert!(taken.await, "the standby took over from the stopped leader");
    // Stopped well past its lease, as in a long GC pause or a VM migration.
    tokio::time::sleep(LEADER_LEASE).await;
    world.procs.resume(stopped);
    let stopped_for = stopped_for.elapsed();
    tokio::time::sleep(Duration::from_secs(4)).await;
    world.procs.assert_alive();

    let s = schedule(&world, NAME).await;
    let fired = instants(&world, &s).await;
    assert!(
        fired.values().all(Option::is_some),
        "every instant fired: {fired:?}"
    );
    assert_eq!(s.state.fires, fired.len() as u64);
    assert_none_twice(&world);
    let after_stop: Vec<_> = logged_fires(&world, Some(&[stopped]))
        .into_keys()
        .filter(|(_, instant)| *instant > stopped_at)
        .collect();
    assert!(
        after_stop.is_empty(),
        "the resumed leader fired after it was deposed: {after_stop:?}"
    );
    let stepped_down = world.procs.lines_in_log(stopped, "no longer leading");
    assert!(
        !stepped_down.is_empty(),
        "the resumed leader noticed it no longer leads"
    );
    println!(
        "cron stop test: leader stopped for {stopped_for:?} (lease {LEADER_LEASE:?}), {} \
         instants each fired once, the resumed one fired nothing after its stop and \
         stepped down",
        fired.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_instants_follow_each_policy_after_every_scheduler_was_down() {
    const DOWN: Duration = Duration::from_secs(12);
    const GRACE: Duration = Duration::from_secs(5);
    const CATCH_UP: u32 = 3;
    let mut world = world(|c| {
        [
            ("skip", MissedPolicy::Skip),
            ("latest", MissedPolicy::Latest),
            ("all", MissedPolicy::All),
        ]
        .into_iter()
        .map(|(name, missed)| {
            let mut spec = every_second(c, missed);
            spec.grace = GRACE;
            spec.max_catch_up = CATCH_UP;
            (name, spec)
        })
        .collect()
    })
    .await;
    let first = world.procs.spawn(Role::Scheduler);
    let fired_twice = wait_for(Duration::from_secs(15), || async {
        let mut all = true;
        for name in ["skip", "latest", "all"] {
            let s = world
                .backends
                .store
                .schedule_get(name)
                .await
                .expect("store");
            all &= s.is_some_and(|s| s.state.fires >= 2);
        }
        all
    });
    assert!(fired_twice.await, "each schedule fired before the outage");
    world.procs.kill(first);
    // Only what follows the kill is judged: before it, every round was on time or not
    // as the machine's load allowed.
    let mut killed_at = BTreeMap::new();
    for name in ["skip", "latest", "all"] {
        killed_at.insert(name, schedule(&world, name).await.state.watermark_ms);
    }
    tokio::time::sleep(DOWN).await;
    world.procs.spawn(Role::Scheduler);
    tokio::time::sleep(Duration::from_secs(4)).await;
    world.procs.assert_alive();
    assert_none_twice(&world);

    let grace_ms = GRACE.as_millis() as i64;
    let mut report = Vec::new();
    for (name, caught_up) in [("skip", 0), ("latest", 1), ("all", CATCH_UP as usize)] {
        let s = schedule(&world, name).await;
        let mut fired = instants(&world, &s).await;
        assert_eq!(
            s.state.fires,
            fired.values().flatten().count() as u64,
            "{name}"
        );
        fired.retain(|instant, _| *instant > killed_at[name]);
        let late = lateness(&fired);
        let gap: Vec<i64> = fired
            .iter()
            .filter(|(_, r)| r.is_none())
            .map(|(i, _)| *i)
            .collect();
        let catch_ups: Vec<i64> = late
            .iter()
            .filter(|(_, l)| **l > grace_ms)
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(
            catch_ups.len(),
            caught_up,
            "{name}: missed instants fired {catch_ups:?} (lateness {late:?})"
        );
        // The ones fired are the most recent missed: every unfired instant is older.
        if let (Some(oldest), Some(newest_gap)) = (catch_ups.first(), gap.last()) {
            assert!(
                newest_gap < oldest,
                "{name}: gap {gap:?}, fired {catch_ups:?}"
            );
            assert!(
                catch_ups.windows(2).all(|w| w[1] - w[0] == 1000),
                "{name}: consecutive {catch_ups:?}"
            );
        }
        // Instants more than the grace late when the new scheduler first looked.
        let missed = (DOWN - GRACE).as_secs() as usize;
        assert!(
            gap.len() + caught_up >= missed - 2,
            "{name}: the outage left {} instants unfired, {caught_up} caught up",
            gap.len()
        );
        report.push(format!(
            "{name}: {} unfired, {} fired late",
            gap.len(),
            catch_ups.len()
        ));
    }
    println!(
        "cron outage of {DOWN:?}, grace {GRACE:?}: {}",
        report.join("; ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_release_each_delayed_job_once() {
    const JOBS: usize = 600;
    let mut world = World::new(BIN, |c| {
        // Small rounds, so the three schedulers' claims interleave.
        c.scheduler.release_batch = 20;
    })
    .await;
    for _ in 0..3 {
        world.procs.spawn(Role::Scheduler);
    }
    let due = world.producer.now_ms() + 2_000;
    let jobs: Vec<Job> = (0..JOBS)
        .map(|_| Job::new(&world.queue, "echo", "").with_run_at_ms(due))
        .collect();
    world.enqueue_all(jobs).await;
    let released = wait_for(Duration::from_secs(20), || async {
        let counts = world.backends.store.delayed_counts().await.expect("store");
        let waiting = counts.values().sum::<u64>();
        let ready: u64 = world.rabbit_messages().await.iter().map(|(_, n)| n).sum();
        waiting == 0 && ready >= JOBS as u64
    });
    assert!(released.await, "every delayed job was released");
    // Anything published twice would show up beside the first copies.
    tokio::time::sleep(Duration::from_secs(1)).await;
    world.procs.assert_alive();
    let messages = world.rabbit_messages().await;
    let total: u64 = messages.iter().map(|(_, n)| n).sum();
    assert_eq!(
        total, JOBS as u64,
        "each job published once by three schedulers: {messages:?}"
    );
    println!("cron release test: {JOBS} delayed jobs released once each by 3 schedulers");
}

/// A clock this many ms off the system's.
#[derive(Debug)]
struct Skewed(i64);

impl Clock for Skewed {
    fn now_ms(&self) -> i64 {
        clock::system_now_ms() + self.0
    }
}

/// Two schedulers in this process whose clocks are 4 s ahead and 4 s behind: cron fires
/// each instant once and not before it, and delayed jobs are released at their due time,
/// because both judge "due" by the store's clock. (With their own clocks, the one ahead
/// would release the delayed jobs 4 s early.) The one ahead leads first and is stopped
/// halfway, so the one behind fires the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedulers_with_skewed_clocks_fire_and_release_by_the_stores_clock() {
    const NAME: &str = "every-second";
    const SKEW_MS: i64 = 4_000;
    const JOBS: usize = 50;
    /// Receive-time slack for millisecond rounding.
    const SLACK_MS: i64 = 5;
    let world = world(|c| vec![(NAME, every_second(c, MissedPolicy::All))]).await;
    let config = Arc::new(world.config.clone());
    let mut consumer = world
        .backends
        .broker
        .consume(&Route::Ready(world.queue.clone()), 200)
        .await
        .expect("consume the ready route");
    let start = |skew: i64| {
        let config = config.clone();
        async move {
            let mut backends = jobfleet_connect::connect(&config).await.expect("connect");
            backends.clock = Arc::new(Skewed(skew));
            let token = CancellationToken::new();
            let task = tokio::spawn(jobfleet_scheduler::run(config, backends, token.clone()));
            (token, task)
        }
    };
    let (ahead, ahead_task) = start(SKEW_MS).await;
    let lock = keys::leader_lock(&world.config.namespace);
    let led = wait_for(Duration::from_secs(10), || async {
        let holder: Option<String> = world.redis().get(&lock).await.expect("redis");
        holder.is_some()
    });
    assert!(led.await, "the first scheduler leads");
    let (behind, behind_task) = start(-SKEW_MS).await;
    let due = clock::system_now_ms() + 3_000;
    let jobs: Vec<Job> = (0..JOBS)
        .map(|_| Job::new(&world.queue, "echo", "").with_run_at_ms(due))
        .collect();
    world.enqueue_all(jobs).await;

    let started = Instant::now();
    let mut ahead = Some((ahead, ahead_task));
    let mut received = Vec::new();
    while started.elapsed() < Duration::from_secs(9) {
        if started.elapsed() >= Duration::from_secs(4) {
            if let Some((token, task)) = ahead.take() {
                token.cancel();
                task.await.expect("no panic").expect("stopped cleanly");
            }
        }
        if let Some(job) = recv_job(&mut consumer, Duration::from_millis(100)).await {
            received.push((job, clock::system_now_ms()));
        }
    }
    behind.cancel();
    behind_task
        .await
        .expect("no panic")
        .expect("stopped cleanly");

    let delayed: Vec<i64> = received
        .iter()
        .filter(|(job, _)| fired_for(job).is_none())
        .map(|(_, at)| *at - due)
        .collect();
    assert_eq!(delayed.len(), JOBS, "each delayed job released once");
    let earliest = delayed.iter().min().copied().unwrap_or(0);
    assert!(
        earliest >= -SLACK_MS,
        "a delayed job arrived {} ms before its due time",
        -earliest
    );
    let mut by_instant: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (job, at) in &received {
        if let Some(fired) = fired_for(job) {
            by_instant
                .entry(fired.instant_ms)
                .or_default()
                .push(at - fired.instant_ms);
        }
    }
    let twice: Vec<_> = by_instant.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(twice.is_empty(), "instants delivered twice: {twice:?}");
    let early: Vec<_> = by_instant
        .iter()
        .filter(|(_, v)| v[0] < -SLACK_MS)
        .collect();
    assert!(early.is_empty(), "instants fired early: {early:?}");
    let instants: Vec<i64> = by_instant.keys().copied().collect();
    assert!(
        instants.windows(2).all(|w| w[1] - w[0] == 1000),
        "no instant missing: {instants:?}"
    );
    assert!(
        instants.len() >= 8,
        "fired through the handover: {instants:?}"
    );
    println!(
        "cron skew test: clocks {SKEW_MS} ms ahead and behind; {} instants each once, \
         none early; {JOBS} delayed jobs released {earliest}..{} ms after their due time",
        instants.len(),
        delayed.iter().max().copied().unwrap_or(0)
    );
}

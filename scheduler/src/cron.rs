//! Cron: one scheduler leads and fires the schedules; the others stand by.
//!
//! Leadership is the store lock [`LEADER_LOCK`] held under a lease of
//! `scheduler.leader_lease`, renewed every third of it; a standby tries to take it as
//! often, so it leads within a lease and a third of the leader dying. The token the
//! lock's acquire returned goes with every fire, and the store applies a fire only if
//! that holder and token still own the lock ([`Schedules::cron_step`]): a leader that
//! was paused or cut off past its lease cannot fire, even before it notices.
//!
//! Time is the store's ([`StoreTime`](jobfleet_common::store::StoreTime)): what is due
//! is judged on one clock, whatever the schedulers' own clocks say. Each round the
//! leader reads every schedule and, for each, the instants after its watermark up to
//! now; it fires them (or skips, coalesces, catches up or owes them, as the schedule's
//! policies say) one atomic step each, then sleeps until the next instant of any
//! schedule, a third of the lease at most. A fired job goes into the delayed set due at
//! once, and the release loop publishes it like any delayed job.

use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::codec::{self, Format};
use jobfleet_common::cron::{rfc3339, MissedPolicy, OverlapPolicy};
use jobfleet_common::store::{
    CronAction, CronFire, CronOutcome, CronStep, JobRecord, JobState, Leadership, LockRequest,
    ScheduledJob, StoreError, LEADER_LOCK,
};
use jobfleet_common::telemetry::{self, Leadership as Change};
use jobfleet_common::{JobId, LockMode};
use jobfleet_cron::Schedule;
use tokio_util::sync::CancellationToken;

use crate::context::Context;

/// Leads and fires until `shutdown`; a leader lets go of the lock as it stops, so a
/// standby takes over at its next try (within a third of the lease).
pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let lease = ctx.config.scheduler.leader_lease;
    let period = lease / 3;
    let request = LockRequest {
        key: LEADER_LOCK.into(),
        mode: LockMode::Exclusive,
        holder: ctx.id.clone(),
        ttl_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
    };
    let mut leader: Option<Leadership> = None;
    let mut renewed = tokio::time::Instant::now();
    // After a failed renewal, try again soon but not in a loop.
    let retry = (period / 4).min(Duration::from_millis(100));
    while !shutdown.is_cancelled() {
        let mut floor = Duration::ZERO;
        let wait = match &leader {
            None => {
                match ctx.store.lock_acquire(&request).await {
                    Ok(Some(token)) => {
                        renewed = tokio::time::Instant::now();
                        leader = Some(Leadership {
                            holder: ctx.id.clone(),
                            token,
                        });
                        telemetry::leadership(&ctx.id, Change::Acquired, token);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => telemetry::backend_error("scheduler", "leader_acquire", &e),
                }
                period
            }
            Some(current) => {
                if renewed.elapsed() >= period {
                    match ctx.store.lock_renew(&request).await {
                        Ok(true) => renewed = tokio::time::Instant::now(),
                        Ok(false) => {
                            telemetry::leadership(&ctx.id, Change::Lost, current.token);
                            leader = None;
                            continue;
                        }
                        Err(e) => {
                            telemetry::backend_error("scheduler", "leader_renew", &e);
                            floor = retry;
                        }
                    }
                }
                if renewed.elapsed() >= lease {
                    // Renewals failed for a whole lease: another may lead by now.
                    telemetry::leadership(&ctx.id, Change::Lost, current.token);
                    leader = None;
                    continue;
                }
                let until_renewal = period.saturating_sub(renewed.elapsed());
                match round(&ctx, current).await {
                    Ok(next) => next.min(until_renewal).max(floor),
                    Err(Stop::Deposed) => {
                        telemetry::leadership(&ctx.id, Change::Lost, current.token);
                        leader = None;
                        continue;
                    }
                    Err(Stop::Store(e)) => {
                        telemetry::backend_error("scheduler", "cron", &e);
                        until_renewal.max(retry)
                    }
                }
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(wait.max(Duration::from_millis(1))) => {}
        }
    }
    if let Some(current) = leader {
        if let Err(e) = ctx.store.lock_release(&request).await {
            telemetry::backend_error("scheduler", "leader_release", &e);
        }
        telemetry::leadership(&ctx.id, Change::Released, current.token);
    }
}

/// Why a round stopped early.
enum Stop {
    /// The store says this scheduler no longer leads.
    Deposed,
    /// A store call failed; the next round tries again.
    Store(StoreError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// One look at every schedule; returns how long until the next instant of any. A store
/// error on one schedule is logged and the others go on; only a deposition ends the
/// round early.
async fn round(ctx: &Context, leader: &Leadership) -> Result<Duration, Stop> {
    let store = &ctx.store;
    let began = tokio::time::Instant::now();
    let now = store.store_time_ms().await?;
    let mut next: Option<i64> = None;
    let mut owing = false;
    for stored in store.schedule_list().await? {
        if stored.state.paused || !stored.spec.enabled {
            continue;
        }
        let schedule = match Schedule::new(&stored.name, stored.spec.clone()) {
            Ok(schedule) => schedule,
            Err(e) => {
                // Only a hand edit of the store could get here: every way in checks.
                tracing::warn!(schedule = %stored.name, error = %e, "schedule is invalid; not fired");
                continue;
            }
        };
        let mut firing = Firing {
            ctx,
            leader,
            schedule: &schedule,
            now,
            watermark: stored.state.watermark_ms,
            last_job: stored.state.last_job,
            owed: stored.state.owed_ms,
            more: false,
        };
        match firing.run().await {
            Ok(()) => {}
            Err(Stop::Deposed) => return Err(Stop::Deposed),
            Err(Stop::Store(e)) => {
                tracing::warn!(schedule = %stored.name, error = %e, "schedule step failed; trying again next round");
                telemetry::backend_error("scheduler", "cron_step", &e);
                firing.more = true;
            }
        }
        owing |= firing.owed.is_some() && stored.spec.overlap == OverlapPolicy::Queue;
        // A long outage is worked through a search at a time, one per round.
        let at = if firing.more {
            Some(now)
        } else {
            schedule.next_after(now.max(firing.watermark))
        };
        if let Some(at) = at {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    // Measured from the round's start: a slow round must not make the next fire late.
    let until_next = next.map_or(Duration::MAX, |at| {
        Duration::from_millis(u64::try_from(at - now).unwrap_or(0))
    });
    let until_next = until_next.saturating_sub(began.elapsed());
    // An owed fire waits for a run to finish: look again each tick.
    Ok(if owing {
        until_next.min(ctx.config.scheduler.tick)
    } else {
        until_next
    })
}

/// One schedule's turn in a round.
struct Firing<'a> {
    ctx: &'a Context,
    leader: &'a Leadership,
    schedule: &'a Schedule,
    /// The store's now for this round.
    now: i64,
    /// The schedule's watermark as the store holds it after our last step.
    watermark: i64,
    /// The job of the schedule's last fire.
    last_job: Option<JobId>,
    /// The instant owed a fire (overlap `queue`).
    owed: Option<i64>,
    /// The search for due instants stopped at its limit: more are due.
    more: bool,
}

/// What a step's outcome means for the rest of the schedule's turn.
enum Next {
    Continue,
    /// Someone else moved it, or it was paused or removed: leave it for the next round.
    Leave,
}

impl Firing<'_> {
    fn name(&self) -> &str {
        self.schedule.name()
    }

    async fn run(&mut self) -> Result<(), Stop> {
        let spec = self.schedule.spec();
        if let Some(owed) = self.owed {
            if spec.overlap == OverlapPolicy::Queue && !self.previous_running().await? {
                if let Next::Leave = self.fire(owed, self.watermark).await? {
                    return Ok(());
                }
            }
        }
        let keep = usize::try_from(spec.max_catch_up)
            .unwrap_or(usize::MAX)
            .max(ON_TIME_KEEP)
            .saturating_add(1);
        let due = self.schedule.due(self.watermark, self.now, keep);
        self.more = due.truncated;
        let Some(&last) = due.latest.last() else {
            return Ok(());
        };
        let plan = plan(spec.missed, spec.max_catch_up, spec.grace, self.now, &due);
        for (outcome, count) in plan.missed {
            if count > 0 {
                telemetry::cron_missed(self.name(), outcome, count, spec.missed.as_str());
            }
        }
        for instant in plan.fire {
            let next = match spec.overlap {
                OverlapPolicy::Allow => self.fire(instant, instant).await?,
                _ if !self.previous_running().await? => self.fire(instant, instant).await?,
                OverlapPolicy::Skip => {
                    telemetry::cron_missed(self.name(), "overlap_skipped", 1, "overlap");
                    Next::Continue
                }
                OverlapPolicy::Queue => {
                    if self.owed.is_some() {
                        telemetry::cron_missed(self.name(), "coalesced", 1, "overlap");
                    }
                    match self.step(instant, CronAction::Owe(instant)).await? {
                        Stepped::Applied => {
                            self.owed = Some(instant);
                            Next::Continue
                        }
                        Stepped::Taken(_) | Stepped::Leave => Next::Leave,
                    }
                }
            };
            if let Next::Leave = next {
                return Ok(());
            }
        }
        if self.watermark < last {
            self.step(last, CronAction::Advance).await?;
        }
        Ok(())
    }

    /// Whether the job of the last fire has yet to finish.
    async fn previous_running(&self) -> Result<bool, Stop> {
        let Some(id) = self.last_job else {
            return Ok(false);
        };
        let record = self.ctx.store.record(id).await?;
        Ok(record.is_some_and(|r| !r.state.is_terminal()))
    }

    /// Fires for `instant`, moving the watermark to `watermark`.
    async fn fire(&mut self, instant: i64, watermark: i64) -> Result<Next, Stop> {
        let job = self.schedule.job(instant, self.now);
        let id = job.id;
        let fire = CronFire {
            instant_ms: instant,
            // Its note names the schedule and instant (`JobRecord::of`).
            record: JobRecord::of(&job, JobState::Scheduled, self.now),
            unique_key: job.unique_key.clone().unwrap_or_default(),
            unique_ttl_ms: self.ctx.config.limits.unique_key_ttl_ms(),
            job: ScheduledJob {
                id,
                queue: job.queue.clone(),
                due_ms: self.now,
                body: codec::encode(&job, Format::Binary),
            },
        };
        let next = match self
            .step(watermark, CronAction::Fire(Box::new(fire)))
            .await?
        {
            Stepped::Applied => {
                self.last_job = Some(id);
                telemetry::cron_fired(self.name(), instant, self.now, &id);
                self.ctx.wake.notify_one();
                Next::Continue
            }
            Stepped::Taken(holder) => {
                // The instant's key is held: it was fired already, so the watermark was
                // lost (a store restored from a backup). Step past it without firing.
                tracing::warn!(schedule = %self.name(), %holder, instant = %rfc3339(instant), "instant already fired; not fired again");
                match self.step(watermark, CronAction::Settle(instant)).await? {
                    Stepped::Applied => Next::Continue,
                    Stepped::Taken(_) | Stepped::Leave => Next::Leave,
                }
            }
            Stepped::Leave => return Ok(Next::Leave),
        };
        if self.owed.is_some_and(|owed| owed <= instant) {
            self.owed = None;
        }
        Ok(next)
    }

    /// Takes one step; `Err(Deposed)` if this scheduler no longer leads.
    async fn step(&mut self, watermark: i64, action: CronAction) -> Result<Stepped, Stop> {
        let watermark = watermark.max(self.watermark);
        let step = CronStep {
            name: self.name().to_string(),
            leader: self.leader.clone(),
            expected_watermark_ms: self.watermark,
            watermark_ms: watermark,
            action,
        };
        match self.ctx.store.cron_step(&step).await? {
            CronOutcome::Applied => {
                self.watermark = watermark;
                Ok(Stepped::Applied)
            }
            CronOutcome::NotLeader => Err(Stop::Deposed),
            CronOutcome::Moved | CronOutcome::Paused | CronOutcome::Gone => Ok(Stepped::Leave),
            CronOutcome::Taken(holder) => Ok(Stepped::Taken(holder)),
        }
    }
}

/// What one step did.
enum Stepped {
    Applied,
    /// The fire's uniqueness key is held (by this instant's own job, or another).
    Taken(JobId),
    /// Someone else moved the schedule, or it was paused or removed.
    Leave,
}

/// How many of the most recent due instants a round looks at, at least: more than any
/// failover leaves on time (an every-second schedule whose `grace` is under 2.7 hours);
/// older ones count as missed.
const ON_TIME_KEEP: usize = 10_000;

/// What a round does with one schedule's due instants.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// Instants to fire, oldest first.
    fire: Vec<i64>,
    /// Missed instants not fired as on time, by outcome: `skipped`, `coalesced`,
    /// `caught_up` (fired late), `dropped` (beyond `max_catch_up`).
    missed: Vec<(&'static str, u64)>,
}

/// Applies the missed-run policy to the instants due at `now`: those at most `grace`
/// late fire; the older ones follow `policy`.
fn plan(
    policy: MissedPolicy,
    max_catch_up: u32,
    grace: Duration,
    now: i64,
    due: &jobfleet_cron::Due,
) -> Plan {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let on_time: Vec<i64> = due
        .latest
        .iter()
        .copied()
        .filter(|i| !due.truncated && now - i <= grace_ms)
        .collect();
    let missed = due.count - on_time.len() as u64;
    let missed_tail: Vec<i64> = due.latest[..due.latest.len() - on_time.len()].to_vec();
    let mut plan = Plan::default();
    if missed == 0 {
        plan.fire = on_time;
        return plan;
    }
    match policy {
        MissedPolicy::Skip => plan.missed.push(("skipped", missed)),
        // A search cut short fires nothing: later instants follow in the next round.
        MissedPolicy::Latest if due.truncated => plan.missed.push(("coalesced", missed)),
        // Every instant looked at is on time: the missed ones are older than the window.
        MissedPolicy::Latest if missed_tail.is_empty() => plan.missed.push(("coalesced", missed)),
        MissedPolicy::Latest => {
            plan.missed.push(("coalesced", missed - 1));
            plan.missed.push(("caught_up", 1));
            plan.fire.extend(missed_tail.last());
        }
        MissedPolicy::All if due.truncated => plan.missed.push(("dropped", missed)),
        MissedPolicy::All => {
            let take = missed.min(u64::from(max_catch_up)) as usize;
            let take = take.min(missed_tail.len());
            plan.missed.push(("dropped", missed - take as u64));
            plan.missed.push(("caught_up", take as u64));
            plan.fire.extend(&missed_tail[missed_tail.len() - take..]);
        }
    }
    plan.fire.extend(on_time);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobfleet_cron::Due;

    const S: i64 = 1_000;

    fn due(instants: &[i64], count: u64) -> Due {
        Due {
            count,
            latest: instants.to_vec(),
            truncated: false,
        }
    }

    #[test]
    fn on_time_instants_fire_whatever_the_policy() {
        let now = 100 * S;
        let d = due(&[98 * S, 99 * S, 100 * S], 3);
        for policy in [MissedPolicy::Skip, MissedPolicy::Latest, MissedPolicy::All] {
            let p = plan(policy, 10, Duration::from_secs(5), now, &d);
            assert_eq!(p.fire, vec![98 * S, 99 * S, 100 * S], "{policy:?}");
            assert!(p.missed.is_empty());
        }
    }

    #[test]
    fn missed_instants_follow_the_policy() {
        let now = 100 * S;
        // Due every second from 81 to 100; a grace of 2 s leaves 98–100 on time.
        let d = due(&(81..=100).map(|s| s * S).collect::<Vec<_>>(), 20);
        let grace = Duration::from_secs(2);
        let skip = plan(MissedPolicy::Skip, 10, grace, now, &d);
        assert_eq!(skip.fire, vec![98 * S, 99 * S, 100 * S]);
        assert_eq!(skip.missed, vec![("skipped", 17)]);
        let latest = plan(MissedPolicy::Latest, 10, grace, now, &d);
        assert_eq!(latest.fire, vec![97 * S, 98 * S, 99 * S, 100 * S]);
        assert_eq!(latest.missed, vec![("coalesced", 16), ("caught_up", 1)]);
        let all = plan(MissedPolicy::All, 5, grace, now, &d);
        assert_eq!(
            all.fire,
            vec![
                93 * S,
                94 * S,
                95 * S,
                96 * S,
                97 * S,
                98 * S,
                99 * S,
                100 * S
            ]
        );
        assert_eq!(all.missed, vec![("dropped", 12), ("caught_up", 5)]);
    }

    #[test]
    fn latest_fires_the_most_recent_missed_when_none_is_on_time() {
        // Daily instants, down for three days: all late.
        let day = 86_400 * S;
        let now = 10 * day + 3_600 * S;
        let d = due(&[8 * day, 9 * day, 10 * day], 3);
        let latest = plan(MissedPolicy::Latest, 10, Duration::from_secs(60), now, &d);
        assert_eq!(latest.fire, vec![10 * day]);
        assert_eq!(latest.missed, vec![("coalesced", 2), ("caught_up", 1)]);
        let skip = plan(MissedPolicy::Skip, 10, Duration::from_secs(60), now, &d);
        assert!(skip.fire.is_empty());
        let all = plan(MissedPolicy::All, 10, Duration::from_secs(60), now, &d);
        assert_eq!(all.fire, vec![8 * day, 9 * day, 10 * day]);
        assert_eq!(all.missed, vec![("dropped", 0), ("caught_up", 3)]);
    }

    #[test]
    fn a_cut_short_search_fires_nothing() {
        let now = 200_000 * S;
        let d = Due {
            count: 100_000,
            latest: vec![100_000 * S],
            truncated: true,
        };
        for policy in [MissedPolicy::Skip, MissedPolicy::Latest, MissedPolicy::All] {
            let p = plan(policy, 10, Duration::from_secs(1_000_000), now, &d);
            assert!(p.fire.is_empty(), "{policy:?}");
            assert_eq!(p.missed.iter().map(|(_, n)| n).sum::<u64>(), 100_000);
        }
    }
}

//! Schedules in the store: their declarations, their state, and the one atomic step
//! that fires them.
//!
//! Every scheduler reads the same schedules from the store. Only the leader fires, and
//! it fires through [`Schedules::cron_step`], which the store applies atomically and only
//! if the caller still holds the leader lock with the token it names and the schedule's
//! watermark is still what the caller read. So a deposed leader (paused past its lease,
//! cut off) cannot fire, and even two schedulers that both believed they led could not
//! fire one instant twice: the second finds the watermark moved.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{JobRecord, ScheduledJob, StoreResult};
use crate::cron::ScheduleSpec;
use crate::job::JobId;

/// The lock key schedulers elect their leader with (through [`super::Locks`]).
pub const LEADER_LOCK: &str = "scheduler:leader";

/// Where a schedule's declaration came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleSource {
    /// A `[schedules.<name>]` table of a scheduler's config file: written again at each
    /// scheduler's start-up, over any runtime edit.
    Config,
    /// `jobfleet schedule add` (or the API).
    Runtime,
}

impl ScheduleSource {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Runtime => "runtime",
        }
    }
}

/// What the store keeps about a schedule besides its declaration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// Paused by an operator: fires nothing until resumed.
    pub paused: bool,
    /// Every instant at or before this (Unix ms, the store's clock) has been dealt with:
    /// fired, skipped or owed. Starts at the schedule's creation; a resume moves it to
    /// the resume's time.
    pub watermark_ms: i64,
    /// The instant of the last fire.
    pub last_instant_ms: Option<i64>,
    /// When the last fire happened (the store's clock).
    pub last_fired_at_ms: Option<i64>,
    /// The job of the last fire.
    pub last_job: Option<JobId>,
    /// With overlap `queue`: the instant waiting for the previous run to finish.
    pub owed_ms: Option<i64>,
    /// Fires so far.
    pub fires: u64,
    /// When the schedule was first created (the store's clock).
    pub created_at_ms: i64,
}

/// A schedule as the store holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredSchedule {
    /// Its name.
    pub name: String,
    /// Its declaration.
    pub spec: ScheduleSpec,
    /// Where the declaration came from.
    pub source: ScheduleSource,
    /// When the declaration was last written (the store's clock).
    pub updated_at_ms: i64,
    /// What has happened to it.
    pub state: ScheduleState,
}

/// The leader a step is taken for: the holder of [`LEADER_LOCK`] and its fencing token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    /// The scheduler's holder id.
    pub holder: String,
    /// The token its acquire returned.
    pub token: u64,
}

/// One fire: the instant, and the job it puts in the delayed set.
#[derive(Clone, Debug, PartialEq)]
pub struct CronFire {
    /// The instant fired for, Unix ms.
    pub instant_ms: i64,
    /// The job, encoded, due at once.
    pub job: ScheduledJob,
    /// Its first state record (`scheduled`).
    pub record: JobRecord,
    /// Its uniqueness key, claimed for the job in the same step.
    pub unique_key: String,
    /// How long the key is held at most.
    pub unique_ttl_ms: u64,
}

/// What a step does besides moving the watermark.
#[derive(Clone, Debug, PartialEq)]
pub enum CronAction {
    /// Nothing: the instants up to the new watermark were skipped.
    Advance,
    /// Owes a fire for this instant until the previous run finishes (overlap `queue`).
    Owe(i64),
    /// This instant turned out fired already (its uniqueness key is held): forget it as
    /// owed, fire nothing.
    Settle(i64),
    /// Fires.
    Fire(Box<CronFire>),
}

/// One atomic step of a schedule, from [`Schedules::cron_step`].
#[derive(Clone, Debug, PartialEq)]
pub struct CronStep {
    /// The schedule.
    pub name: String,
    /// The leader taking it.
    pub leader: Leadership,
    /// The watermark the leader read: the step applies only if it is still the same.
    pub expected_watermark_ms: i64,
    /// The watermark after the step (not below the expected one).
    pub watermark_ms: i64,
    /// What else it does.
    pub action: CronAction,
}

/// Why a step did or did not apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CronOutcome {
    /// Applied.
    Applied,
    /// The caller does not hold the leader lock with that token (any more).
    NotLeader,
    /// The watermark moved since the caller read it: someone else stepped.
    Moved,
    /// The schedule is paused.
    Paused,
    /// The schedule no longer exists.
    Gone,
    /// The fire's uniqueness key is held (by an earlier fire of the same instant, or
    /// another job): nothing was fired or moved.
    Taken(JobId),
}

/// Schedules, their state, and firing them.
#[async_trait]
pub trait Schedules: Send + Sync {
    /// Creates or replaces a schedule's declaration; its state is kept (a new one
    /// starts with its watermark at the store's now, so it fires no instant from before
    /// it existed; one re-enabled moves its watermark to now, as a resume does). True if
    /// it was created.
    async fn schedule_put(
        &self,
        name: &str,
        spec: &ScheduleSpec,
        source: ScheduleSource,
    ) -> StoreResult<bool>;
    /// Every schedule, by name.
    async fn schedule_list(&self) -> StoreResult<Vec<StoredSchedule>>;
    /// One schedule.
    async fn schedule_get(&self, name: &str) -> StoreResult<Option<StoredSchedule>>;
    /// Removes a schedule and its state; true if it existed.
    async fn schedule_remove(&self, name: &str) -> StoreResult<bool>;
    /// Pauses or resumes a schedule; true if it exists. A resume moves the watermark to
    /// the store's now: instants that passed while paused are not fired.
    async fn schedule_pause(&self, name: &str, paused: bool) -> StoreResult<bool>;
    /// Takes one step of a schedule atomically (see the module docs). Its times are the
    /// store's clock ([`super::StoreTime`]).
    async fn cron_step(&self, step: &CronStep) -> StoreResult<CronOutcome>;
}

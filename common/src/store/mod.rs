//! The `Store` traits: the state the roles share beside the broker.
//!
//! A store is several small capabilities, each a trait: the [`DelayedSet`] the scheduler
//! times jobs in, [`Locks`] with fencing tokens, [`JobStates`] (state records, completion
//! markers, cancel requests, uniqueness keys), [`Executions`] (the lease that keeps a job
//! from running twice at once), [`DeadLetters`], [`Heartbeats`], [`Schedules`] (cron
//! schedules and the fenced step that fires them), [`Pipelines`], [`Integrity`] (a store
//! that lost its data) and [`StoreTime`] (the store's clock, which every role keeps time
//! by).
//!
//! A backend implements each capability once. Each role holds only the ones it uses,
//! through its bundle in `roles`: [`WorkerStore`], [`SchedulerStore`], [`OperatorStore`]
//! (the producer holds [`JobStates`] alone). [`Store`] is every capability together plus
//! the admin calls (`name`, `purge`): what a backend is connected as, and what narrows
//! to a role's bundle at that role's entry point. docs/architecture.md has the map of
//! capabilities, methods and roles.
//!
//! # Layout
//!
//! - this file: [`StoreError`], the small capabilities ([`DelayedSet`], [`Locks`],
//!   [`JobStates`], [`DeadLetters`], [`Heartbeats`], [`StoreTime`]) and [`Store`].
//! - `executions`: [`Executions`], the execution lease taken with a job's admission.
//! - `schedules`: [`Schedules`], cron schedules and the fenced step that fires them.
//! - `pipelines`: [`Pipelines`], pipelines and their steps' results.
//! - `integrity`: [`Integrity`], detecting and recording a store that lost its data.
//! - `records`: what the capabilities store and return (records, dead letters, …).
//! - `roles`: the role bundles [`WorkerStore`], [`SchedulerStore`], [`OperatorStore`].
//!
//! The behaviour every store must show is checked by the store conformance suite in
//! `jobfleet-testkit` (`store_conformance`), on the embedded store and on Redis.

mod executions;
mod integrity;
mod pipelines;
mod records;
mod roles;
mod schedules;

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;

use crate::job::{JobId, LockMode};
pub use executions::{Admission, Executions, LeaseRequest};
pub use integrity::{announce_durability, DataLossIncident, Durability, Integrity, IntegrityCheck};
pub use pipelines::{enqueue_step, Pipelines, StoredPipeline};
pub use records::{
    DeadFilter, DeadLetter, DeadSummary, JobRecord, JobState, QueueTally, ScheduledJob, WorkerInfo,
    MAX_RESULT_BYTES,
};
pub use roles::{OperatorStore, SchedulerStore, WorkerStore};
pub use schedules::{
    CronAction, CronFire, CronOutcome, CronStep, Leadership, ScheduleSource, ScheduleState,
    Schedules, StoredSchedule, LEADER_LOCK,
};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The connection is down or timed out; retrying after a reconnect can help.
    #[error("store connection: {0}")]
    Connection(String),
    /// Stored data could not be read back; retrying will not help.
    #[error("corrupt store data: {0}")]
    Corrupt(String),
    /// The request is wrong; retrying will not help.
    #[error("store rejected the request: {0}")]
    Invalid(String),
}

impl StoreError {
    /// Whether retrying the same call later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Connection(_))
    }
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// Jobs waiting for their time, ordered by due time.
///
/// Release never loses a job: [`DelayedSet::claim_due`] moves due jobs atomically into a
/// releasing set under a lease; the caller publishes them and then calls
/// [`DelayedSet::release_done`]. A lease that expires (its scheduler died mid-release)
/// puts the jobs back, so they are claimed again. Concurrent claimers never get the same
/// job while its lease holds.
#[async_trait]
pub trait DelayedSet: Send + Sync {
    /// Adds jobs, or moves them to a new due time if their id is already there.
    async fn schedule(&self, jobs: Vec<ScheduledJob>) -> StoreResult<()>;
    /// Claims up to `limit` jobs due at `now_ms` under a lease of `lease_ms`, returning
    /// expired leases to the set first.
    async fn claim_due(
        &self,
        now_ms: i64,
        limit: usize,
        lease_ms: u64,
    ) -> StoreResult<Vec<ScheduledJob>>;
    /// Forgets claimed jobs once they are published.
    async fn release_done(&self, ids: &[JobId]) -> StoreResult<()>;
    /// Removes a job from the set (cancel, or a held job whose attempt ended); returns its
    /// encoded body if it was waiting (not claimed by a release under way), so a cancel
    /// can free what the job held (its uniqueness key).
    async fn unschedule(&self, id: JobId) -> StoreResult<Option<Bytes>>;
    /// The earliest due time waiting, if any (lets the scheduler sleep until then).
    async fn next_due_ms(&self) -> StoreResult<Option<i64>>;
    /// Waiting jobs per queue (claimed ones included until released).
    async fn delayed_counts(&self) -> StoreResult<BTreeMap<String, u64>>;
}

/// What a lock call names: which lock, how, by whom, for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockRequest {
    /// The lock key.
    pub key: String,
    /// Exclusive or shared.
    pub mode: LockMode,
    /// The holder's unique id (a worker id plus the job id).
    pub holder: String,
    /// How long the lock lives without renewal.
    pub ttl_ms: u64,
}

/// Locks with fencing tokens.
///
/// Every successful acquire returns a token that is strictly greater than every token
/// issued before for the same key, in either mode. A resource guarded by the lock checks
/// tokens with [`Locks::fenced_write`], so a holder that lost its lock (paused past its
/// TTL) cannot write after a newer holder has.
#[async_trait]
pub trait Locks: Send + Sync {
    /// Takes the lock; `Some(fencing token)` if granted, `None` if held incompatibly.
    async fn lock_acquire(&self, req: &LockRequest) -> StoreResult<Option<u64>>;
    /// Extends the TTL; false if `req.holder` no longer holds the lock.
    async fn lock_renew(&self, req: &LockRequest) -> StoreResult<bool>;
    /// Releases the lock if `req.holder` holds it; releasing a lost lock is not an error.
    async fn lock_release(&self, req: &LockRequest) -> StoreResult<()>;
    /// Writes `value` to `resource` unless a write with a greater token already happened;
    /// true if written.
    async fn fenced_write(&self, resource: &str, token: u64, value: Bytes) -> StoreResult<bool>;
    /// The last accepted write to `resource` and its token.
    async fn fenced_read(&self, resource: &str) -> StoreResult<Option<(u64, Bytes)>>;
}

/// Job state records, completion markers, cancel requests and uniqueness keys.
#[async_trait]
pub trait JobStates: Send + Sync {
    /// Writes (replaces) state records, except the record of a job whose completion
    /// marker exists: its final record stays (a re-release or a retried enqueue writes
    /// `pending` just before publishing a job that may have completed meanwhile).
    async fn put_records(&self, records: &[JobRecord]) -> StoreResult<()>;
    /// Reads one state record.
    async fn record(&self, id: JobId) -> StoreResult<Option<JobRecord>>;
    /// Writes the final record of a completed job and its completion marker, atomically,
    /// and counts the completion on its queue (once per job: a second completion of a
    /// job whose marker exists is not counted again).
    async fn complete(&self, record: &JobRecord) -> StoreResult<()>;
    /// Jobs completed per queue, counted by [`JobStates::complete`] for as long as the
    /// store keeps its data: what `jobfleet queues` and the dashboard report, whatever
    /// workers came and went.
    async fn completed_counts(&self) -> StoreResult<BTreeMap<String, u64>>;
    /// Whether a completion marker exists for the job.
    async fn is_completed(&self, id: JobId) -> StoreResult<bool>;
    /// Asks that the job not run (or stop running).
    async fn request_cancel(&self, id: JobId) -> StoreResult<()>;
    /// For each id, whether cancellation was requested.
    async fn cancel_requested(&self, ids: &[JobId]) -> StoreResult<Vec<bool>>;
    /// Claims a uniqueness key for `id` for at most `ttl_ms`: `None` if claimed, or the id
    /// of the job that holds it.
    async fn unique_claim(&self, key: &str, id: JobId, ttl_ms: u64) -> StoreResult<Option<JobId>>;
    /// Frees a uniqueness key if `id` holds it.
    async fn unique_release(&self, key: &str, id: JobId) -> StoreResult<()>;
    /// Removes the records of these jobs that still say `pending` or `scheduled`, after a
    /// publish that may not have sent them: such a record would say forever that a job
    /// waits when nothing may move it. A record any role wrote since (`running`, a final
    /// state) stays. Returns how many were removed.
    async fn forget_unpublished(&self, ids: &[JobId]) -> StoreResult<u64>;
    /// Records that `queues` exist: producers call it the first time they publish to a
    /// queue, workers when they start consuming. Operators' views (`jobfleet queues`, the
    /// dashboard, `/metrics`) list these, so a queue that holds jobs but has no worker
    /// still shows.
    async fn queues_add(&self, queues: &[String]) -> StoreResult<()>;
    /// Every queue [`JobStates::queues_add`] recorded, sorted.
    async fn queues_known(&self) -> StoreResult<Vec<String>>;
    /// For each of `queues` with a job waiting to start (its record says `pending`):
    /// when the oldest of them became ready (Unix ms). What autoscalers should scale on:
    /// the queue's age, which grows while work waits, however few jobs there are.
    async fn oldest_pending(&self, queues: &[String]) -> StoreResult<BTreeMap<String, i64>>;
}

/// The dead-letter store: jobs (or undecodable messages) that will not run again.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// Files a dead letter (replacing one with the same id).
    async fn dead_put(&self, letter: DeadLetter) -> StoreResult<()>;
    /// Dead letters matching `filter`, newest first, at most `limit`, without their
    /// bodies: a listing reads no body, however large the letters.
    async fn dead_list(&self, filter: &DeadFilter, limit: usize) -> StoreResult<Vec<DeadSummary>>;
    /// One dead letter, with its body.
    async fn dead_get(&self, id: JobId) -> StoreResult<Option<DeadLetter>>;
    /// Removes dead letters; returns how many existed.
    async fn dead_remove(&self, ids: &[JobId]) -> StoreResult<u64>;
    /// Dead letters per queue (`?` for messages whose queue is unknown).
    async fn dead_counts(&self) -> StoreResult<BTreeMap<String, u64>>;
}

/// Live workers, from heartbeats that expire.
#[async_trait]
pub trait Heartbeats: Send + Sync {
    /// Records that a worker is alive for the next `ttl_ms`.
    async fn heartbeat(&self, info: &WorkerInfo, ttl_ms: u64) -> StoreResult<()>;
    /// Removes a worker that stopped cleanly.
    async fn worker_gone(&self, worker_id: &str) -> StoreResult<()>;
    /// Workers whose heartbeat has not expired.
    async fn workers(&self) -> StoreResult<Vec<WorkerInfo>>;
}

/// The store's own clock.
#[async_trait]
pub trait StoreTime: Send + Sync {
    /// The store's clock, Unix ms: the clock schedules are fired by and due times are
    /// judged by, so roles on machines whose clocks disagree agree on what is due.
    async fn store_time_ms(&self) -> StoreResult<i64>;
}

/// Every store capability together, and the admin calls: what a backend is connected as
/// (`Backends::store`).
///
/// The roles do not hold it: each narrows it at its entry point to its bundle
/// (`Arc<dyn Store>` upcasts to `Arc<dyn WorkerStore>`, [`SchedulerStore`],
/// [`OperatorStore`], or to any one capability, as the producer's `Arc<dyn JobStates>`).
/// Listing the bundles here is what makes those upcasts possible; the blanket
/// implementations in `roles` mean a backend implements only the capabilities and this.
#[async_trait]
pub trait Store:
    DelayedSet
    + Locks
    + JobStates
    + Executions
    + DeadLetters
    + Heartbeats
    + Schedules
    + Pipelines
    + Integrity
    + StoreTime
    + WorkerStore
    + SchedulerStore
    + OperatorStore
    + 'static
{
    /// The backend's name (`embedded`, `redis`).
    fn name(&self) -> &'static str;

    /// Admin: deletes everything this store keeps for its namespace (delayed jobs, locks,
    /// records, leases, dead letters, heartbeats) and returns how many it removed as the
    /// backend counts them (keys on Redis, tables on the embedded store); for a benchmark
    /// or a test that made a namespace of its own, never called by the roles. No role's
    /// bundle has it. Every backend implements it; the default (for test doubles)
    /// refuses.
    async fn purge(&self) -> StoreResult<u64> {
        Err(StoreError::Invalid(format!(
            "the {} store cannot purge",
            self.name()
        )))
    }
}

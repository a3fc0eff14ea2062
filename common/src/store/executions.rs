//! Execution leases: at most one running execution per job, whatever the broker does.
//!
//! A broker redelivers a message whenever it stops trusting the consumer that had it (a
//! lost connection, a revoked partition, a scheduler that released a job twice), and the
//! consumer that had it may still be running the job. So a worker admits a job only by
//! taking its **execution lease** in the store: one holder per job, with a TTL the holder
//! renews while the handler runs and a fencing token that strictly increases per job.
//! A second delivery of a job whose lease is live is not run ([`Admission::Busy`]); a
//! holder that cannot renew stops its handler before its lease can expire.
//!
//! A lease that expires without being released means its holder died mid-run (or lost
//! the store for longer than the TTL). The next admission counts that as a crash, and a
//! job whose executions crashed `max_crashes` times is refused ([`Admission::Crashed`]),
//! so a job that kills its worker cannot loop forever.

use async_trait::async_trait;

use super::{JobRecord, StoreResult};
use crate::job::JobId;

/// Who asks to run a job, and for how long the lease lives without renewal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRequest {
    /// Unique per execution (worker id, job id and a per-execution number), so a worker
    /// that receives a second delivery of a job it is running is refused like any other.
    pub holder: String,
    /// How long the lease lives without renewal.
    pub ttl_ms: u64,
    /// How many crashed executions refuse the job ([`Admission::Crashed`]).
    pub max_crashes: u32,
}

/// What [`Executions::admit`] found for a job about to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// The completion marker exists: the job already ran. Nothing was written.
    Completed,
    /// Cancellation was requested. Nothing was written.
    CancelRequested,
    /// Another execution holds the job's lease for `remaining_ms` more (unless renewed).
    /// Nothing was written.
    Busy {
        /// Time left on the other holder's lease.
        remaining_ms: u64,
    },
    /// Executions of this job ended with their worker dying `crashes` times, at least
    /// the request's `max_crashes`: it must not run again. Nothing was written.
    Crashed {
        /// Crashed executions so far.
        crashes: u32,
    },
    /// The job may run: the lease is the caller's, and the `running` record (if one was
    /// given) is written.
    Clear {
        /// The lease's fencing token, greater than any earlier execution's of this job.
        token: u64,
        /// Crashed executions before this one.
        crashes: u32,
    },
}

/// Execution leases, taken together with the checks before a job runs.
#[async_trait]
pub trait Executions: Send + Sync {
    /// The checks before a job runs, atomically and in one round trip: its completion
    /// marker, its cancel flag, its execution lease (live elsewhere: busy; expired
    /// unreleased: one more crash; too many crashes: refused); then takes the lease and
    /// writes `running`, if given.
    async fn admit(
        &self,
        id: JobId,
        running: Option<&JobRecord>,
        lease: &LeaseRequest,
    ) -> StoreResult<Admission>;

    /// Extends the lease by `ttl_ms`; false if `holder` no longer holds it.
    async fn lease_renew(&self, id: JobId, holder: &str, ttl_ms: u64) -> StoreResult<bool>;

    /// Ends the execution: frees the lease if `holder` holds it (a lost lease is not an
    /// error). Called once the attempt's outcome is recorded, so a release that never
    /// happens is what marks a crash.
    async fn lease_release(&self, id: JobId, holder: &str) -> StoreResult<()>;
}

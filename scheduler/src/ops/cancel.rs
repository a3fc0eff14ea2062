//! Cancelling a job: set the flag every role checks, and take the job out of the delayed
//! set if it waits there.
//!
//! The flag is set first and unconditionally, so a job in transit (on the delayed route,
//! claimed for release, or on its ready route) is dropped by whichever role sees it next,
//! and a running job's handler is cancelled by its worker.

use jobfleet_common::clock::Clock;
use jobfleet_common::store::{JobState, OperatorStore};
use jobfleet_common::{codec, JobId};

use crate::error::OpsError;

/// What a cancel did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was waiting in the delayed set: removed, and recorded `cancelled`.
    WasWaiting,
    /// The flag is set; the worker that receives or runs the job will stop it.
    Requested,
    /// The job had already finished in this state; nothing changes.
    AlreadyFinished(JobState),
    /// No record of the job; the flag is set anyway in case it is still on its way.
    Unknown,
}

/// Cancels job `id`; `clock` stamps the record of a job cancelled while waiting.
pub async fn cancel(
    store: &dyn OperatorStore,
    clock: &dyn Clock,
    id: JobId,
) -> Result<CancelOutcome, OpsError> {
    store.request_cancel(id).await?;
    let record = store.record(id).await?;
    // A running long job is held in the delayed set (docs/architecture.md, "Long jobs"):
    // its worker stops it on the flag, so it is not a waiting job to cancel here.
    let running = record
        .as_ref()
        .is_some_and(|r| r.state == JobState::Running);
    let waiting = if running {
        None
    } else {
        store.unschedule(id).await?
    };
    if let Some(body) = waiting {
        // A cancelled job never runs: the uniqueness key it holds is free again.
        if let Ok(job) = codec::decode(&body, None) {
            if let Some(key) = &job.unique_key {
                store.unique_release(key, id).await?;
            }
        }
        if let Some(mut record) = record {
            let now = clock.now_ms();
            record.state = JobState::Cancelled;
            record.updated_at_ms = now;
            record.finished_at_ms = Some(now);
            record.run_at_ms = None;
            record.note = Some("cancelled while waiting".into());
            store.put_records(&[record]).await?;
        }
        return Ok(CancelOutcome::WasWaiting);
    }
    Ok(match record {
        None => CancelOutcome::Unknown,
        Some(r) if r.state.is_terminal() => CancelOutcome::AlreadyFinished(r.state),
        Some(_) => CancelOutcome::Requested,
    })
}

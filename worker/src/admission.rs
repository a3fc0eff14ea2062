//! Step 3–4 of a delivery and the execution lease: whether this delivery may run its job
//! now, must wait for another execution of it, or is settled without running (already
//! completed, cancelled, or crashed its workers too often).

use std::time::Duration;

use jobfleet_common::broker::Delivery;
use jobfleet_common::store::{Admission, JobRecord, JobState, LeaseRequest};
use jobfleet_common::{ErrorKind, Job};
use tokio::time::Instant;

use crate::lease::Execution;
use crate::ms::ms_u64;
use crate::settle;
use crate::settlement::Settlement;
use crate::state::WorkerState;

/// How often a delivery whose job runs elsewhere asks again, at most.
const BUSY_RECHECK: Duration = Duration::from_secs(1);

/// Steps 3–4 and the execution lease
/// ([`Executions::admit`](jobfleet_common::store::Executions::admit)): the completion
/// marker, the cancel flag, the lease, and the `running` record if `write_running`.
/// Returns the delivery, the lease and the record written if the job should run, having
/// settled the delivery otherwise.
///
/// A job running elsewhere (its lease is live) is not run: this delivery waits, holding
/// its slot, re-asking as the other lease runs out, about every second, so it runs as
/// soon as that execution ends — or is a no-op if it completed. After waiting two lease
/// TTLs (the other execution is long and alive) it is handed back to the broker.
pub(crate) async fn preflight(
    worker: &WorkerState,
    job: &Job,
    delivery: Delivery,
    write_running: bool,
) -> Option<(Delivery, Execution, Option<JobRecord>)> {
    let store = &worker.store;
    let ttl = worker.config.worker.lease_ttl;
    let lease = LeaseRequest {
        holder: worker.execution_holder(job),
        ttl_ms: ms_u64(ttl),
        max_crashes: job.max_attempts,
    };
    let waiting_since = Instant::now();
    loop {
        // Made anew on each try: its start time is when the job may actually start.
        let running = write_running.then(|| worker.running_record(job));
        let sent = Instant::now();
        let admission = match store.admit(job.id, running.as_ref(), &lease).await {
            Ok(admission) => admission,
            Err(e) => {
                settle::give_back(worker, delivery, "admit", &e).await;
                return None;
            }
        };
        let remaining_ms = match admission {
            Admission::Clear { token, crashes } => {
                if crashes > 0 {
                    tracing::warn!(
                        job_id = %job.id,
                        crashes,
                        "earlier executions of this job died with their worker"
                    );
                }
                let execution =
                    Execution::new(store.clone(), job.id, lease.holder, ttl, sent, token);
                return Some((delivery, execution, running));
            }
            Admission::Busy { remaining_ms } => remaining_ms,
            Admission::Completed => {
                settle::ack(delivery).await;
                worker.finished(job, Settlement::Duplicate);
                return None;
            }
            Admission::CancelRequested => {
                let now = worker.clock.now_ms();
                let record = JobRecord::of(job, JobState::Cancelled, now);
                let note = "cancel requested before it started".to_string();
                let key = job.unique_key.as_deref();
                if settle::cancelled(worker, delivery, record, key, note).await {
                    worker.finished(job, Settlement::Cancelled);
                }
                return None;
            }
            Admission::Crashed { crashes } => {
                let text = format!(
                    "worker crashed: {crashes} executions of this job ended with their worker \
                     process dying (abort, out of memory, kill); max_attempts is {}",
                    job.max_attempts
                );
                let mut job = job.clone();
                if settle::dead(worker, delivery, &mut job, ErrorKind::WorkerCrashed, text).await {
                    worker.finished(&job, Settlement::WorkerCrashed);
                }
                return None;
            }
        };
        if waiting_since.elapsed() >= ttl * 2 {
            tracing::info!(job_id = %job.id, "job still running elsewhere; delivery handed back");
            settle::requeue(delivery).await;
            worker.finished(job, Settlement::Busy);
            return None;
        }
        let pause =
            Duration::from_millis(remaining_ms).min(BUSY_RECHECK) + Duration::from_millis(5);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = worker.shutdown.cancelled() => {
                settle::requeue(delivery).await;
                return None;
            }
        }
    }
}

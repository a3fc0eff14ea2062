//! [`Settlement`]: how the worker ended one delivery of a job, the one value its log line
//! (`outcome`), the attempts metric's `outcome` label, the heartbeat's tallies and the
//! [`Registry::on_settled`](crate::Registry::on_settled) hook all take.
//!
//! It sits below every module that settles a delivery (`admission`, `delivery`, `settle`)
//! and those that report one (`events`, `state`, `handler`), so none of them passes the
//! label as a string and a new way to end a delivery is one variant the compiler then
//! asks every `match` about.

use std::fmt;

use jobfleet_common::ErrorKind;

/// How the worker ended one delivery of a job, once the outcome was recorded and the
/// delivery acked (or, for [`Requeued`](Self::Requeued) and [`Busy`](Self::Busy), handed
/// back).
///
/// [`as_str`](Self::as_str) (and `Display`) give the `outcome` label of the
/// `jobfleet_attempts_total` metric and the `outcome` field of the "job attempt finished"
/// log line. Deliberately not `#[non_exhaustive]`: code that counts outcomes should match
/// every variant, so that a new one is a compile error there rather than a silent miss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Settlement {
    /// The handler returned Ok: the completion marker is written.
    Completed,
    /// The handler returned a retryable error: the job went to the failed route.
    Failed,
    /// The handler ran past the job's timeout: the job went to the failed route.
    Timeout,
    /// The handler panicked: the job went to the failed route.
    Panic,
    /// The job's lock or execution lease was lost mid-run: the job went to the failed route.
    LockLost,
    /// The handler returned a permanent error: the job went to the dead route.
    Permanent,
    /// Earlier executions of the job died with their worker as many times as it has
    /// attempts: the job went to the dead route without running.
    WorkerCrashed,
    /// A cancel request stopped the job, before it started or while it ran.
    Cancelled,
    /// Its lock was held and its conflict policy is `skip`: recorded `cancelled`.
    Skipped,
    /// The job had already completed (a redelivery): acked without running.
    Duplicate,
    /// Handed back without counting an attempt: a shutdown interrupted it, it arrived
    /// before its run time, or its lock was held under the `requeue` policy.
    Requeued,
    /// Another execution of the job kept running for two lease TTLs while this delivery
    /// waited: the delivery was handed back to the broker.
    Busy,
}

impl Settlement {
    /// The label in metrics and logs: `completed`, `failed`, `timeout`, `panic`,
    /// `lock_lost`, `permanent`, `worker_crashed`, `cancelled`, `skipped`, `duplicate`,
    /// `requeued` or `busy`. Failures share their name with their [`ErrorKind`].
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => ErrorKind::Failed.as_str(),
            Self::Timeout => ErrorKind::Timeout.as_str(),
            Self::Panic => ErrorKind::Panic.as_str(),
            Self::LockLost => ErrorKind::LockLost.as_str(),
            Self::Permanent => ErrorKind::Permanent.as_str(),
            Self::WorkerCrashed => ErrorKind::WorkerCrashed.as_str(),
            Self::Cancelled => "cancelled",
            Self::Skipped => "skipped",
            Self::Duplicate => "duplicate",
            Self::Requeued => "requeued",
            Self::Busy => "busy",
        }
    }
}

impl fmt::Display for Settlement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant with the label metrics, logs and the settled hook used when the
    /// outcome travelled as a string; the `match` fails to compile when a variant is added
    /// without a line here.
    fn label_before(s: Settlement) -> &'static str {
        match s {
            Settlement::Completed => "completed",
            Settlement::Failed => "failed",
            Settlement::Timeout => "timeout",
            Settlement::Panic => "panic",
            Settlement::LockLost => "lock_lost",
            Settlement::Permanent => "permanent",
            Settlement::WorkerCrashed => "worker_crashed",
            Settlement::Cancelled => "cancelled",
            Settlement::Skipped => "skipped",
            Settlement::Duplicate => "duplicate",
            Settlement::Requeued => "requeued",
            Settlement::Busy => "busy",
        }
    }

    #[test]
    fn labels_are_the_strings_metrics_and_logs_used_before() {
        use Settlement::*;
        let all = [
            Completed,
            Failed,
            Timeout,
            Panic,
            LockLost,
            Permanent,
            WorkerCrashed,
            Cancelled,
            Skipped,
            Duplicate,
            Requeued,
            Busy,
        ];
        for s in all {
            assert_eq!(s.as_str(), label_before(s), "{s:?}");
            assert_eq!(s.to_string(), label_before(s), "{s:?}");
        }
        let mut labels: Vec<_> = all.iter().map(|s| s.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), all.len(), "one label per variant");
    }
}

//! The worker's telemetry events: each writes its log line and its metric together, under
//! the names in `jobfleet_common::telemetry`, so the two never drift apart.

use std::time::Duration;

use jobfleet_common::telemetry::{ATTEMPTS, RUNNING, RUN_SECONDS, WAIT_SECONDS};
use jobfleet_common::Job;

use crate::settlement::Settlement;

/// An attempt (or a delivery that never became one) ended with `outcome`: the log field
/// and the metric label are both [`Settlement::as_str`].
pub(crate) fn finished(job: &Job, outcome: Settlement) {
    let outcome = outcome.as_str();
    tracing::info!(outcome, "job attempt finished");
    metrics::counter!(
        ATTEMPTS,
        "queue" => job.queue.clone(),
        "kind" => job.kind.clone(),
        "outcome" => outcome,
    )
    .increment(1);
}

/// A handler starts, `wait` after the job was due.
pub(crate) fn started(job: &Job, wait: Duration) {
    tracing::debug!(wait_ms = wait.as_millis() as u64, "handler starting");
    metrics::histogram!(WAIT_SECONDS, "queue" => job.queue.clone()).record(wait.as_secs_f64());
    metrics::gauge!(RUNNING).increment(1.0);
}

/// A handler stopped after running for `ran`.
pub(crate) fn stopped(job: &Job, ran: Duration) {
    metrics::histogram!(RUN_SECONDS, "queue" => job.queue.clone(), "kind" => job.kind.clone())
        .record(ran.as_secs_f64());
    metrics::gauge!(RUNNING).decrement(1.0);
}

/// How long `job` waited: from when it was due (enqueued, or its run time) to `now_ms`.
pub(crate) fn wait_of(job: &Job, now_ms: i64) -> Duration {
    let due = job
        .run_at_ms
        .map_or(job.enqueued_at_ms, |r| r.max(job.enqueued_at_ms));
    Duration::from_millis(now_ms.saturating_sub(due).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_counts_from_the_later_of_enqueue_and_run_time() {
        let mut job = Job::new("q", "k", "");
        job.enqueued_at_ms = 1_000;
        assert_eq!(wait_of(&job, 1_500), Duration::from_millis(500));
        job.run_at_ms = Some(1_200);
        assert_eq!(wait_of(&job, 1_500), Duration::from_millis(300));
        assert_eq!(wait_of(&job, 0), Duration::ZERO);
    }
}

//! The failed route's consumer: a failed attempt is either retried later or dead.
//!
//! A job arrives here with the error of the attempt that just failed as the last entry of
//! its history. If that was its last attempt, or the error says another attempt cannot
//! help, the job becomes a dead letter with its whole history; otherwise its next attempt
//! waits in the delayed set for a jittered, exponentially growing delay.

use std::time::Duration;

use async_trait::async_trait;
use jobfleet_common::codec::{self, Format};
use jobfleet_common::retry::{self, RetryPolicy};
use jobfleet_common::store::{DeadLetter, JobRecord, JobState, ScheduledJob};
use jobfleet_common::{telemetry, ErrorKind, Job};

use crate::consumer::{Incoming, RouteHandler};
use crate::context::Context;
use crate::error::SchedulerError;
use crate::intake;

/// Times retries and files jobs that ran out of attempts.
#[derive(Debug)]
pub(crate) struct FailedIntake;

/// What becomes of one failed job.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Try again: the job with its next attempt number and due time.
    Retry(Job),
    /// No more attempts: the job and the reason in words.
    Dead(Job, String),
}

/// Decides a failed job's fate at `now_ms`; `delay` turns a policy and the failed
/// attempt's number into the wait (jittered in production, pinned in tests).
pub(crate) fn verdict(
    mut job: Job,
    policy: RetryPolicy,
    now_ms: i64,
    delay: impl FnOnce(RetryPolicy, u32) -> Duration,
) -> Verdict {
    let (kind, message) = match job.last_error() {
        Some(e) => (e.kind, e.message.clone()),
        None => (ErrorKind::Failed, "no error recorded".to_string()),
    };
    if !kind.is_retryable() {
        return Verdict::Dead(job, format!("{kind} error, not retried: {message}"));
    }
    if job.attempt >= job.max_attempts {
        return Verdict::Dead(job, format!("attempts exhausted: {message}"));
    }
    let wait = delay(policy, job.attempt);
    job.attempt += 1;
    job.run_at_ms = Some(now_ms.saturating_add(wait.as_millis() as i64));
    Verdict::Retry(job)
}

#[async_trait]
impl RouteHandler for FailedIntake {
    fn op(&self) -> &'static str {
        "failed_intake"
    }

    async fn handle(&self, ctx: &Context, batch: &[Incoming]) -> Result<(), SchedulerError> {
        let now = ctx.now_ms();
        let store = &ctx.store;
        let mut scheduled = Vec::new();
        let mut records = Vec::new();
        let mut rejected = Vec::new();
        let mut died = Vec::new();
        for delivery in batch {
            let job = match intake::job(delivery, &ctx.config.limits, now) {
                Ok(job) => job,
                Err(r) => {
                    rejected.push(*r);
                    continue;
                }
            };
            let policy = job
                .backoff
                .map_or_else(|| ctx.config.retry_policy(&job.queue), Into::into);
            match verdict(job, policy, now, retry::jittered_delay) {
                Verdict::Retry(job) => {
                    let due_ms = job.run_at_ms.unwrap_or(now);
                    records.push(JobRecord::of(&job, JobState::Retrying, now));
                    scheduled.push(ScheduledJob {
                        id: job.id,
                        queue: job.queue.clone(),
                        due_ms,
                        body: codec::encode(&job, Format::Binary),
                    });
                }
                Verdict::Dead(job, reason) => {
                    let mut record = JobRecord::of(&job, JobState::Dead, now);
                    record.note = Some(reason.clone());
                    records.push(record);
                    died.push((letter(job.clone(), reason, delivery, now), job));
                }
            }
        }
        let retries: Vec<String> = scheduled.iter().map(|s| s.queue.clone()).collect();
        // A `dead` record promises its dead letter and a free uniqueness key: file and free
        // them before the record says so.
        for (letter, job) in &died {
            store.dead_put(letter.clone()).await?;
            if let Some(key) = &job.unique_key {
                store.unique_release(key, job.id).await?;
            }
        }
        // Records before scheduling: once scheduled, a retry may be released and run at
        // once, and a `retrying` written after that would hide it.
        if !records.is_empty() {
            store.put_records(&records).await?;
        }
        if !scheduled.is_empty() {
            store.schedule(scheduled).await?;
            ctx.wake.notify_one();
        }
        if !rejected.is_empty() {
            let messages = rejected.iter().map(|r| r.message.clone()).collect();
            ctx.broker.publish(messages).await?;
            rejected.iter().for_each(|r| r.published());
        }
        for queue in retries {
            metrics::counter!(telemetry::RETRIES, "queue" => queue).increment(1);
        }
        for (letter, job) in &died {
            telemetry::dead_lettered(&job.queue, letter.error_kind.as_str(), &letter.reason);
        }
        Ok(())
    }
}

/// The dead letter of a job out of attempts: its last error's kind, its whole history,
/// and the body as received so a replay starts from what the worker sent.
fn letter(job: Job, reason: String, delivery: &Incoming, now_ms: i64) -> DeadLetter {
    DeadLetter {
        id: job.id,
        queue: Some(job.queue),
        kind: Some(job.kind),
        reason,
        error_kind: job.errors.last().map_or(ErrorKind::Failed, |e| e.kind),
        errors: job.errors,
        died_at_ms: now_ms,
        body: delivery.body.clone(),
        content_type: delivery.content_type.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobfleet_common::ErrorRecord;

    const POLICY: RetryPolicy = RetryPolicy {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(10),
    };

    fn failed(attempt: u32, max: u32, kind: ErrorKind) -> Job {
        let mut job = Job::new("q", "k", "{}").with_max_attempts(max);
        job.attempt = attempt;
        for n in 1..=attempt {
            job.errors.push(ErrorRecord {
                attempt: n,
                at_ms: 0,
                kind,
                message: format!("e{n}"),
            });
        }
        job
    }

    #[test]
    fn a_failed_attempt_with_attempts_left_is_retried_later() {
        let Verdict::Retry(job) = verdict(
            failed(3, 5, ErrorKind::Timeout),
            POLICY,
            1_000,
            retry::ceiling,
        ) else {
            panic!("expected a retry");
        };
        assert_eq!(job.attempt, 4);
        // The third attempt failed: ceiling 100ms * 2^2.
        assert_eq!(job.run_at_ms, Some(1_400));
        assert_eq!(job.errors.len(), 3);
    }

    #[test]
    fn the_last_attempt_is_dead_with_its_message() {
        let verdict = verdict(failed(3, 3, ErrorKind::Failed), POLICY, 0, retry::ceiling);
        let Verdict::Dead(job, reason) = verdict else {
            panic!("expected dead")
        };
        assert_eq!(reason, "attempts exhausted: e3");
        assert_eq!(job.attempt, 3);
    }

    #[test]
    fn a_permanent_error_is_dead_at_once() {
        let verdict = verdict(
            failed(1, 5, ErrorKind::Permanent),
            POLICY,
            0,
            retry::ceiling,
        );
        assert!(matches!(verdict, Verdict::Dead(_, reason) if reason.contains("not retried: e1")));
    }

    #[test]
    fn a_job_without_history_counts_as_a_plain_failure() {
        let job = Job::new("q", "k", "{}");
        assert!(
            matches!(verdict(job, POLICY, 0, retry::ceiling), Verdict::Retry(j) if j.attempt == 2)
        );
    }
}

//! The delayed route's consumer: jobs due later go into the store's delayed set.
//!
//! Producers send jobs with a future `run_at_ms` here, and workers send lock-conflict
//! requeues. Each job is re-encoded in the binary form so the delayed set holds one
//! form only, filed under its id (a redelivery replaces rather than doubles it) and
//! recorded `scheduled`, or `retrying` when it already failed before. A job whose cancel
//! was requested meanwhile is not scheduled at all. What is not a valid job (undecodable,
//! or breaking a limit: see `intake`) goes to the dead route.

use async_trait::async_trait;
use jobfleet_common::codec::{self, Format};
use jobfleet_common::store::{JobRecord, JobState, ScheduledJob};
use jobfleet_common::Job;

use crate::consumer::{Incoming, RouteHandler};
use crate::context::Context;
use crate::error::SchedulerError;
use crate::intake::{self, Rejected};

/// Files delayed jobs in the store's delayed set.
#[derive(Debug)]
pub(crate) struct DelayedIntake;

/// What one batch from the delayed route turns into.
#[derive(Debug, Default)]
struct Plan {
    scheduled: Vec<ScheduledJob>,
    records: Vec<JobRecord>,
    dead: Vec<Rejected>,
    unique_keys: Vec<(String, jobfleet_common::JobId)>,
}

#[async_trait]
impl RouteHandler for DelayedIntake {
    fn op(&self) -> &'static str {
        "delayed_intake"
    }

    async fn handle(&self, ctx: &Context, batch: &[Incoming]) -> Result<(), SchedulerError> {
        let now = ctx.now_ms();
        let store = &ctx.store;
        let mut jobs = Vec::with_capacity(batch.len());
        let mut plan = Plan::default();
        for delivery in batch {
            match intake::job(delivery, &ctx.config.limits, now) {
                Ok(job) => jobs.push(job),
                Err(rejected) => plan.dead.push(*rejected),
            }
        }
        let ids: Vec<_> = jobs.iter().map(|j| j.id).collect();
        let cancelled = if ids.is_empty() {
            Vec::new()
        } else {
            store.cancel_requested(&ids).await?
        };
        for (job, cancelled) in jobs.into_iter().zip(cancelled) {
            plan.add(job, cancelled, now);
        }
        // Keys of cancelled jobs first: a `cancelled` record promises a free key.
        for (key, id) in &plan.unique_keys {
            store.unique_release(key, *id).await?;
        }
        // Records before scheduling: once scheduled, a job may be released and run at once,
        // and a `scheduled` written after that would hide it.
        if !plan.records.is_empty() {
            store.put_records(&plan.records).await?;
        }
        if !plan.scheduled.is_empty() {
            store.schedule(plan.scheduled).await?;
            ctx.wake.notify_one();
        }
        // Last, so a store failure above (which gives the batch back) does not file the
        // same rejected message twice.
        if !plan.dead.is_empty() {
            let messages = plan.dead.iter().map(|r| r.message.clone()).collect();
            ctx.broker.publish(messages).await?;
            plan.dead.iter().for_each(|r| r.published());
        }
        Ok(())
    }
}

impl Plan {
    /// Plans one decoded job: scheduled, or dropped as cancelled.
    fn add(&mut self, job: Job, cancelled: bool, now_ms: i64) {
        if cancelled {
            let mut record = JobRecord::of(&job, JobState::Cancelled, now_ms);
            record.note = Some("cancelled before it was due".into());
            self.records.push(record);
            if let Some(key) = &job.unique_key {
                self.unique_keys.push((key.clone(), job.id));
            }
            return;
        }
        let due_ms = job.run_at_ms.unwrap_or(now_ms);
        // A lock-conflict requeue or a retry carries errors; a first run does not.
        let state = if job.errors.is_empty() {
            JobState::Scheduled
        } else {
            JobState::Retrying
        };
        let mut record = JobRecord::of(&job, state, now_ms);
        record.run_at_ms = Some(due_ms);
        self.records.push(record);
        self.scheduled.push(ScheduledJob {
            id: job.id,
            queue: job.queue.clone(),
            due_ms,
            body: codec::encode(&job, Format::Binary),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobfleet_common::{ErrorKind, ErrorRecord};

    #[test]
    fn plans_first_runs_retries_and_cancels() {
        let mut plan = Plan::default();
        let first = Job::new("q", "k", "{}").with_run_at_ms(5_000);
        let mut retry = Job::new("q", "k", "{}");
        retry.errors.push(ErrorRecord {
            attempt: 1,
            at_ms: 1,
            kind: ErrorKind::Failed,
            message: "boom".into(),
        });
        let gone = Job::new("q", "k", "{}").with_unique_key("u");
        plan.add(first.clone(), false, 1_000);
        plan.add(retry.clone(), false, 1_000);
        plan.add(gone.clone(), true, 1_000);

        let due: Vec<_> = plan.scheduled.iter().map(|s| (s.id, s.due_ms)).collect();
        assert_eq!(due, [(first.id, 5_000), (retry.id, 1_000)]);
        let decoded = codec::decode(&plan.scheduled[0].body, None).expect("binary body");
        assert_eq!(decoded, first);
        let states: Vec<_> = plan.records.iter().map(|r| (r.id, r.state)).collect();
        assert_eq!(
            states,
            [
                (first.id, JobState::Scheduled),
                (retry.id, JobState::Retrying),
                (gone.id, JobState::Cancelled)
            ]
        );
        assert_eq!(plan.records[1].run_at_ms, Some(1_000));
        assert_eq!(plan.unique_keys, [("u".to_string(), gone.id)]);
    }
}

//! The release loop: due jobs leave the delayed set for their ready routes.
//!
//! What is due is judged by the store's clock (`StoreTime::store_time_ms`, Redis `TIME`),
//! so schedulers whose clocks disagree release each job at the same time.
//!
//! Each round claims up to `scheduler.release_batch` due jobs under a lease of
//! `scheduler.release_lease`, publishes them all in one confirmed batch, and only then
//! tells the store they are done. A scheduler that dies between claim and done leaves a
//! lease that expires, and the jobs are claimed again: a duplicate at worst, which the
//! workers' completion markers absorb. Between rounds the loop sleeps until the next due
//! time, a tick at most, or until the intake says it filed something new.

use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::store::{JobRecord, JobState, ScheduledJob};
use jobfleet_common::{codec, dead, telemetry, ErrorKind, JobId, Message, Route};
use tokio_util::sync::CancellationToken;

use crate::context::{content_type_of, Context};
use crate::error::SchedulerError;
use crate::pause::Pause;

/// Releases due jobs until `shutdown`.
pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let settings = &ctx.config.scheduler;
    let (limit, tick) = (settings.release_batch, settings.tick);
    let lease_ms = settings.release_lease.as_millis() as u64;
    let mut pause = Pause::new();
    while !shutdown.is_cancelled() {
        // Due is judged by the store's clock, as cron is: a scheduler whose own clock
        // runs ahead must not release jobs early.
        let claimed_at = match ctx.store.store_time_ms().await {
            Ok(now) => now,
            Err(e) => {
                telemetry::backend_error("scheduler", "store_time", &e);
                pause.wait(&shutdown).await;
                continue;
            }
        };
        let claimed = match ctx.store.claim_due(claimed_at, limit, lease_ms).await {
            Ok(claimed) => claimed,
            Err(e) => {
                telemetry::backend_error("scheduler", "claim_due", &e);
                pause.wait(&shutdown).await;
                continue;
            }
        };
        let full = claimed.len() >= limit;
        if !claimed.is_empty() {
            if let Err(e) = release(&ctx, claimed, claimed_at).await {
                // The claimed jobs stay leased; when the lease runs out they are claimed again.
                telemetry::backend_error("scheduler", "release", &e);
                pause.wait(&shutdown).await;
                continue;
            }
        }
        pause.reset();
        if full {
            // More are due; let the other tasks on this thread run before the next round.
            tokio::task::yield_now().await;
            continue;
        }
        let wait = until_next(&ctx, claimed_at, tick).await;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.wake.notified() => {}
        }
    }
}

/// How long to sleep: until the next due time, a tick at most.
async fn until_next(ctx: &Context, claimed_at: i64, tick: Duration) -> Duration {
    match ctx.store.next_due_ms().await {
        // Due by the time we claimed yet not claimed: another scheduler holds its lease.
        Ok(Some(due)) if due <= claimed_at => tick,
        Ok(Some(due)) => {
            let ms = (due - claimed_at).max(0) as u64;
            Duration::from_millis(ms).min(tick)
        }
        Ok(None) => tick,
        Err(e) => {
            telemetry::backend_error("scheduler", "next_due", &e);
            tick
        }
    }
}

/// Publishes claimed jobs to their ready routes and marks them done; cancelled ones are
/// dropped instead. `now` is the store's time of the claim.
async fn release(
    ctx: &Context,
    claimed: Vec<ScheduledJob>,
    now: i64,
) -> Result<(), SchedulerError> {
    let store = &ctx.store;
    let ids: Vec<JobId> = claimed.iter().map(|s| s.id).collect();
    let cancelled = store.cancel_requested(&ids).await?;
    let mut messages = Vec::with_capacity(claimed.len());
    let mut records = Vec::with_capacity(claimed.len());
    let mut released = Vec::with_capacity(claimed.len());
    let mut unique_keys = Vec::new();
    for (entry, cancelled) in claimed.into_iter().zip(cancelled) {
        let content_type = content_type_of(&entry.body);
        let job = match codec::decode(&entry.body, Some(content_type)) {
            Ok(job) => job,
            Err(e) => {
                let text = format!("delayed set entry {}: {e}", entry.id);
                let ct = Some(content_type.to_string());
                messages.push(dead::message(entry.body, ct, ErrorKind::Undecodable, &text));
                continue;
            }
        };
        if cancelled {
            let mut record = JobRecord::of(&job, JobState::Cancelled, now);
            record.note = Some("cancelled while waiting".into());
            records.push(record);
            if let Some(key) = job.unique_key {
                unique_keys.push((key, job.id));
            }
            continue;
        }
        records.push(JobRecord::of(&job, JobState::Pending, now));
        released.push((job.queue.clone(), now - entry.due_ms));
        messages.push(Message {
            route: Route::Ready(job.queue),
            priority: job.priority,
            body: entry.body,
            content_type: Some(content_type.to_string()),
            reason: None,
            key: job.ordering_key,
        });
    }
    ctx.declare_queues(released.iter().map(|(q, _)| q.as_str()))
        .await?;
    // Keys of cancelled jobs first: a `cancelled` record promises a free key.
    for (key, id) in &unique_keys {
        store.unique_release(key, *id).await?;
    }
    // Records before publishing: once published, a worker may record `running` at once,
    // and a `pending` written after it would hide that.
    if !records.is_empty() {
        store.put_records(&records).await?;
    }
    if !messages.is_empty() {
        ctx.broker.publish(messages).await?;
    }
    store.release_done(&ids).await?;
    for (queue, late_ms) in released {
        let late = Duration::from_millis(late_ms.max(0) as u64).as_secs_f64();
        metrics::histogram!(telemetry::RELEASE_LATENESS).record(late);
        metrics::counter!(telemetry::RELEASED, "queue" => queue).increment(1);
    }
    Ok(())
}

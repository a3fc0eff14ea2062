//! What a worker does with one delivery, in the order of architecture.md step 3: size,
//! decode, validate, kind, completion marker, cancel flag, lock, `running` record, the
//! attempt, and the outcome.
//!
//! Every step that cannot run a job ends by settling the delivery itself; a backend
//! error at any step gives the delivery back so it is redelivered, never lost.

use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::broker::{Delivery, Route};
use jobfleet_common::job::ConflictPolicy;
use jobfleet_common::limits::ENVELOPE_ALLOWANCE;
use jobfleet_common::store::{JobRecord, JobState, LockRequest};
use jobfleet_common::{codec, dead, telemetry, ErrorKind, Job};
use tokio::time::Instant;
use tracing::Instrument;

use crate::attempt::{self, LockWatch};
use crate::context::{JobContext, Parts};
use crate::events;
use crate::handler::Handler;
use crate::settle;
use crate::state::Worker;
use crate::ticket::{self, Hold, Ticket};

/// Handles one delivery from start to settlement.
pub(crate) async fn process(worker: Arc<Worker>, delivery: Delivery) {
    let Some((job, handler, delivery)) = admit(&worker, delivery).await else {
        return;
    };
    let span = tracing::info_span!(
        "job",
        job_id = %job.id,
        queue = %job.queue,
        kind = %job.kind,
        attempt = job.attempt,
    );
    execute(&worker, job, handler, delivery)
        .instrument(span)
        .await;
}

/// Steps 1–2: a message that cannot become a runnable job goes to the dead route.
async fn admit(worker: &Worker, delivery: Delivery) -> Option<(Job, Arc<dyn Handler>, Delivery)> {
    let limits = &worker.config.limits;
    let max_body = limits.max_payload_bytes.saturating_add(ENVELOPE_ALLOWANCE);
    if delivery.body.len() > max_body {
        let text = format!(
            "message of {} bytes, over the limit of {max_body}",
            delivery.body.len()
        );
        reject(worker, delivery, None, ErrorKind::Oversized, text).await;
        return None;
    }
    let job = match codec::decode(&delivery.body, delivery.content_type.as_deref()) {
        Ok(job) => job,
        Err(e) => {
            reject(
                worker,
                delivery,
                None,
                ErrorKind::Undecodable,
                e.to_string(),
            )
            .await;
            return None;
        }
    };
    if let Err(e) = limits.validate(&job, worker.backends.clock.now_ms()) {
        let kind = if e.field == "payload" {
            ErrorKind::Oversized
        } else {
            ErrorKind::Invalid
        };
        let text = format!("{}: {}", e.field, e.reason);
        reject(worker, delivery, Some(&job.queue), kind, text).await;
        return None;
    }
    let Some(handler) = worker.registry.get(&job.kind) else {
        let text = format!("no handler for kind {:?} on worker {}", job.kind, worker.id);
        reject(
            worker,
            delivery,
            Some(&job.queue),
            ErrorKind::UnknownKind,
            text,
        )
        .await;
        return None;
    };
    Some((job, handler, delivery))
}

/// Sends the delivery as received to the dead route with the reason, then acks.
async fn reject(
    worker: &Worker,
    delivery: Delivery,
    queue: Option<&str>,
    kind: ErrorKind,
    text: String,
) {
    let message = dead::message(
        delivery.body.clone(),
        delivery.content_type.clone(),
        kind,
        &text,
    );
    if settle::publish_then_ack(worker, delivery, message).await {
        telemetry::dead_lettered(queue.unwrap_or("?"), kind.as_str(), &text);
    }
}

/// Steps 3–7 for a job that can run.
async fn execute(worker: &Worker, job: Job, handler: Arc<dyn Handler>, delivery: Delivery) {
    let Some(delivery) = preflight(worker, &job, delivery).await else {
        return;
    };
    let store = &worker.backends.store;
    let lock = job.lock.as_ref().map(|spec| LockRequest {
        key: spec.key.clone(),
        mode: spec.mode,
        holder: worker.lock_holder(&job),
        ttl_ms: u64::try_from(worker.config.worker.lock_ttl.as_millis()).unwrap_or(u64::MAX),
    });
    let fence = match &lock {
        None => None,
        Some(request) => match store.lock_acquire(request).await {
            Err(e) => {
                settle::give_back(worker, delivery, "lock_acquire", &e).await;
                return;
            }
            Ok(Some(token)) => Some(token),
            Ok(None) => return lock_conflict(worker, job, delivery, &request.key).await,
        },
    };
    run_attempt(worker, job, handler, delivery, fence, lock.as_ref()).await;
    // Whatever happened, the lock goes: releasing one already lost is harmless.
    if let Some(request) = &lock {
        if let Err(e) = store.lock_release(request).await {
            telemetry::backend_error("worker", "lock_release", &e);
        }
    }
}

/// Steps 3–4: the completion marker and the cancel flag. Returns the delivery if the job
/// should run, having settled it otherwise.
async fn preflight(worker: &Worker, job: &Job, delivery: Delivery) -> Option<Delivery> {
    let store = &worker.backends.store;
    match store.is_completed(job.id).await {
        Err(e) => {
            settle::give_back(worker, delivery, "is_completed", &e).await;
            return None;
        }
        Ok(true) => {
            settle::ack(delivery).await;
            events::finished(job, "duplicate");
            return None;
        }
        Ok(false) => {}
    }
    match store.cancel_requested(&[job.id]).await {
        Err(e) => {
            settle::give_back(worker, delivery, "cancel_requested", &e).await;
            None
        }
        Ok(flags) if flags.first() == Some(&true) => {
            let now = worker.backends.clock.now_ms();
            let record = JobRecord::of(job, JobState::Cancelled, now);
            let note = "cancel requested before it started".to_string();
            if settle::cancelled(worker, delivery, record, job.unique_key.as_deref(), note).await {
                events::finished(job, "cancelled");
            }
            None
        }
        Ok(_) => Some(delivery),
    }
}

/// Steps 6–7 with the lock (if any) held: `running` record, handler, outcome.
async fn run_attempt(
    worker: &Worker,
    job: Job,
    handler: Arc<dyn Handler>,
    delivery: Delivery,
    fence: Option<u64>,
    lock: Option<&LockRequest>,
) {
    let store = &worker.backends.store;
    // Registered before the shutdown check, so a drain that ends now cannot miss it.
    let guard = worker.running.enter(job.id);
    if worker.shutdown.is_cancelled() {
        // Received but not started when the drain began: hand it back untouched.
        return settle::requeue(delivery).await;
    }
    let now = worker.backends.clock.now_ms();
    let record = JobRecord {
        started_at_ms: Some(now),
        worker: Some(worker.id.to_string()),
        ..JobRecord::of(&job, JobState::Running, now)
    };
    if let Err(e) = store.put_records(std::slice::from_ref(&record)).await {
        settle::give_back(worker, delivery, "put_records", &e).await;
        return;
    }
    let Some(ticket) = hold_if_long(worker, &job, delivery).await else {
        return;
    };
    let ctx = JobContext::new(Parts {
        job: job.clone(),
        cancelled: guard.stopper().token().clone(),
        fence,
        worker_id: worker.id.clone(),
        store: store.clone(),
        clock: worker.backends.clock.clone(),
        record: record.clone(),
    });
    let watch = lock.map(|request| LockWatch {
        store: store.clone(),
        request: request.clone(),
    });
    events::started(&job, events::wait_of(&job, now));
    let began = Instant::now();
    let attempt = attempt::run(handler, ctx, guard.stopper(), watch);
    let outcome = ticket::run_while(ticket.hold(), attempt).await;
    events::stopped(&job, began.elapsed());
    drop(guard);
    settle::outcome(worker, ticket, job, record, outcome).await;
}

/// A job longer than `worker.ack_early_after` is held in the store and its delivery acked
/// now (see [`crate::ticket`]); others keep their delivery. `None` if the delivery was
/// given back after a store error.
async fn hold_if_long(worker: &Worker, job: &Job, delivery: Delivery) -> Option<Ticket> {
    let settings = &worker.config.worker;
    if !Hold::wanted(job, settings.ack_early_after) {
        return Some(delivery.into());
    }
    let (store, clock) = (worker.backends.store.clone(), worker.backends.clock.clone());
    let body = settle::job_message(Route::Ready(job.queue.clone()), job).body;
    match Hold::take(store, clock, job, body, settings.hold_lease, delivery).await {
        Ok(hold) => Some(Ticket::Held(hold)),
        Err((delivery, e)) => {
            settle::give_back(worker, delivery, "hold", &e).await;
            None
        }
    }
}

/// Step 5's conflict policies: requeue through the delayed route, or skip as cancelled.
async fn lock_conflict(worker: &Worker, mut job: Job, delivery: Delivery, key: &str) {
    let policy = job
        .lock
        .as_ref()
        .map_or(ConflictPolicy::Requeue, |l| l.on_conflict);
    match policy {
        ConflictPolicy::Requeue => {
            let delay = worker.config.worker.lock_conflict_delay;
            let run_at = worker.backends.clock.now_ms().saturating_add(millis(delay));
            tracing::debug!(lock = key, run_at, "lock held; requeued for later");
            job.run_at_ms = Some(run_at);
            let message = settle::job_message(Route::Delayed, &job);
            if settle::publish_then_ack(worker, delivery, message).await {
                events::finished(&job, "requeued");
            }
        }
        ConflictPolicy::Skip => {
            let now = worker.backends.clock.now_ms();
            let record = JobRecord::of(&job, JobState::Cancelled, now);
            let note = format!("skipped: lock {key} held");
            if settle::cancelled(worker, delivery, record, job.unique_key.as_deref(), note).await {
                events::finished(&job, "skipped");
            }
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

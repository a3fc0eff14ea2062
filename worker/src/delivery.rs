//! What a worker does with one delivery, in the order of architecture.md step 3: size,
//! decode, validate, kind, due time (a job ahead of its `run_at_ms` by the store's clock
//! goes to the delayed route), completion marker, cancel flag, execution lease, lock,
//! `running` record, the attempt, and the outcome.
//!
//! Every step that cannot run a job ends by settling the delivery itself; a backend
//! error at any step gives the delivery back so it is redelivered, never lost.

use std::sync::Arc;

use jobfleet_common::broker::{Delivery, Route};
use jobfleet_common::job::{ConflictPolicy, TraceContext};
use jobfleet_common::limits::ENVELOPE_ALLOWANCE;
use jobfleet_common::store::{JobRecord, JobState, LockRequest};
use jobfleet_common::{codec, dead, telemetry, ErrorKind, Job};
use tokio::time::Instant;
use tracing::Instrument;

use crate::admission;
use crate::attempt;
use crate::context::{JobContext, Parts};
use crate::events;
use crate::handler::Handler;
use crate::job_trace;
use crate::lease::{Execution, LockWatch};
use crate::ms::{ms_i64, ms_u64};
use crate::settle;
use crate::settlement::Settlement;
use crate::state::WorkerState;
use crate::ticket::{self, Hold, Ticket};

/// Handles one delivery from start to settlement.
pub(crate) async fn process(worker: Arc<WorkerState>, delivery: Delivery) {
    let Some((job, handler, delivery)) = admit(&worker, delivery).await else {
        return;
    };
    let trace = job_trace::attempt_span(&job);
    execute(&worker, job, handler, delivery, trace.outgoing)
        .instrument(trace.span)
        .await;
}

/// Steps 1–2: a message that cannot become a runnable job goes to the dead route.
async fn admit(
    worker: &WorkerState,
    delivery: Delivery,
) -> Option<(Job, Arc<dyn Handler>, Delivery)> {
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
    let mut job = match codec::decode(&delivery.body, delivery.content_type.as_deref()) {
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
    // A bad trace header costs the trace, never the job (the W3C recommendation).
    jobfleet_common::trace::drop_invalid(&mut job);
    if let Err(e) = limits.validate(&job, worker.clock.now_ms()) {
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
    // The worker's clock is the store's (see `store_time`), the one the scheduler
    // releases by: a worker whose own clock runs ahead never starts a job early.
    if job.run_at_ms.is_some_and(|due| due > worker.clock.now_ms()) {
        defer_early(worker, job, delivery).await;
        return None;
    }
    if job.lock.is_none() {
        job.lock = handler.lock(&job);
    }
    Some((job, handler, delivery))
}

/// A job that arrived on a ready route before its `run_at_ms` by the store's clock (a
/// producer in another language published it there, or one whose clock runs ahead): it
/// never starts early, it goes to the delayed route, whose scheduler releases it when due.
async fn defer_early(worker: &WorkerState, job: Job, delivery: Delivery) {
    tracing::debug!(
        job_id = %job.id,
        run_at_ms = job.run_at_ms,
        "ahead of its run_at_ms: sent to the delayed route"
    );
    let message = settle::job_message(Route::Delayed, &job);
    if settle::publish_then_ack(worker, delivery, message).await {
        worker.finished(&job, Settlement::Requeued);
    }
}

/// Sends the delivery as received to the dead route with the reason, then acks.
async fn reject(
    worker: &WorkerState,
    delivery: Delivery,
    queue: Option<&str>,
    kind: ErrorKind,
    text: String,
) {
    // A body over the message limit goes on with its head only (`dead::bounded`).
    let max_body = worker
        .config
        .limits
        .max_payload_bytes
        .saturating_add(ENVELOPE_ALLOWANCE);
    let (body, cut) = dead::bounded(delivery.body.clone(), max_body);
    let text = match cut {
        Some(note) => format!("{text}; {note}"),
        None => text,
    };
    let message = dead::message(body, delivery.content_type.clone(), kind, &text);
    if settle::publish_then_ack(worker, delivery, message).await {
        telemetry::dead_lettered(queue.unwrap_or("?"), kind.as_str(), &text);
    }
}

/// Steps 3–7 for a job that can run.
async fn execute(
    worker: &WorkerState,
    job: Job,
    handler: Arc<dyn Handler>,
    delivery: Delivery,
    trace: Option<TraceContext>,
) {
    let store = &worker.store;
    let lock = job.lock.as_ref().map(|spec| LockRequest {
        key: spec.key.clone(),
        mode: spec.mode,
        holder: worker.lock_holder(&job),
        ttl_ms: ms_u64(worker.config.worker.lock_ttl),
    });
    // Without a lock nothing stands between the checks and the `running` record, so one
    // store call does both; with one, the record waits until the lock is taken.
    let Some((delivery, execution, early)) =
        admission::preflight(worker, &job, delivery, lock.is_none()).await
    else {
        return;
    };
    let fence = match &lock {
        None => None,
        Some(request) => {
            let sent = Instant::now();
            match store.lock_acquire(request).await {
                Err(e) => {
                    execution.release().await;
                    settle::give_back(worker, delivery, "lock_acquire", &e).await;
                    return;
                }
                Ok(Some(token)) => Some((token, sent)),
                Ok(None) => {
                    execution.release().await;
                    return lock_conflict(worker, job, delivery, &request.key).await;
                }
            }
        }
    };
    let attempt = Attempt {
        execution: &execution,
        fence,
        lock: lock.as_ref(),
        recorded: early,
        trace,
    };
    run_attempt(worker, job, handler, delivery, attempt).await;
    execution.release().await;
    // Whatever happened, the lock goes: releasing one already lost is harmless.
    if let Some(request) = &lock {
        if let Err(e) = store.lock_release(request).await {
            telemetry::backend_error("worker", "lock_release", &e);
        }
    }
}

/// What an attempt starts with besides its job.
struct Attempt<'a> {
    /// The execution lease, taken at admission.
    execution: &'a Execution,
    /// The lock's fencing token and when its acquisition was sent, if the job holds one.
    fence: Option<(u64, Instant)>,
    lock: Option<&'a LockRequest>,
    /// The `running` record, if [`admission::preflight`] already wrote it.
    recorded: Option<JobRecord>,
    /// The trace context the handler hands on (see `job_trace`).
    trace: Option<TraceContext>,
}

/// Steps 6–7 with the lease and the lock (if any) held: `running` record, handler,
/// outcome. The lease is released as soon as the handler has stopped, before the outcome
/// is settled, so a retry or redelivery never waits for it.
async fn run_attempt(
    worker: &WorkerState,
    job: Job,
    handler: Arc<dyn Handler>,
    delivery: Delivery,
    attempt: Attempt<'_>,
) {
    let store = &worker.store;
    let execution = attempt.execution;
    // Registered before the shutdown check, so a drain that ends now cannot miss it.
    let guard = worker.running.enter(job.id);
    if worker.shutdown.is_cancelled() {
        // Received but not started when the drain began: hand it back, saying `pending`
        // again if its `running` record is already written.
        if attempt.recorded.is_some() {
            let now = worker.clock.now_ms();
            let pending = JobRecord::of(&job, JobState::Pending, now);
            if let Err(e) = store.put_records(&[pending]).await {
                telemetry::backend_error("worker", "put_records", &e);
            }
        }
        execution.release().await;
        return settle::requeue(delivery).await;
    }
    let record = match attempt.recorded {
        Some(record) => record,
        None => {
            let record = worker.running_record(&job);
            if let Err(e) = store.put_records(std::slice::from_ref(&record)).await {
                execution.release().await;
                settle::give_back(worker, delivery, "put_records", &e).await;
                return;
            }
            record
        }
    };
    let Some(ticket) = hold_if_long(worker, &job, delivery, execution).await else {
        return;
    };
    let ctx = JobContext::new(Parts {
        job: job.clone(),
        cancelled: guard.stopper().token().clone(),
        lease_token: execution.token,
        fence: attempt.fence.map(|(token, _)| token),
        worker_id: worker.id.clone(),
        store: store.clone(),
        clock: worker.clock.clone(),
        limits: worker.config.limits.clone(),
        record: record.clone(),
        result: std::sync::Mutex::new(None),
        trace: attempt.trace,
    });
    let results = ctx.clone();
    let watch = attempt
        .lock
        .zip(attempt.fence)
        .map(|(request, (_, taken_at))| LockWatch {
            store: store.clone(),
            request: request.clone(),
            taken_at,
        });
    let now = worker.clock.now_ms();
    events::started(&job, events::wait_of(&job, now));
    let began = Instant::now();
    let outcome = attempt::run(handler, ctx, guard.stopper(), execution, watch);
    let outcome = ticket::run_while(ticket.hold(), outcome).await;
    events::stopped(&job, began.elapsed());
    drop(guard);
    // A completion removes the lease in the same store call as it writes the marker: one
    // round trip per job for the lease, the admission. Other outcomes free it first, so
    // a retry never waits for it.
    let completed = outcome == attempt::Outcome::Completed;
    if !completed {
        execution.release().await;
    }
    let record = JobRecord {
        result: results.take_result().filter(|_| completed),
        ..record
    };
    let settled = settle::outcome(worker, ticket, job, record, outcome).await;
    if completed && settled {
        execution.ended_by_completion();
    }
}

/// A job longer than `worker.ack_early_after` is held in the store and its delivery acked
/// now (see [`crate::ticket`]); others keep their delivery. `None` if the delivery was
/// given back after a store error.
async fn hold_if_long(
    worker: &WorkerState,
    job: &Job,
    delivery: Delivery,
    execution: &Execution,
) -> Option<Ticket> {
    let settings = &worker.config.worker;
    if !Hold::wanted(job, settings.ack_early_after) {
        return Some(delivery.into());
    }
    let (store, clock) = (worker.store.clone(), worker.clock.clone());
    let body = settle::job_message(Route::Ready(job.queue.clone()), job).body;
    match Hold::take(store, clock, job, body, settings.hold_lease, delivery).await {
        Ok(hold) => Some(Ticket::Held(hold)),
        Err((delivery, e)) => {
            execution.release().await;
            settle::give_back(worker, delivery, "hold", &e).await;
            None
        }
    }
}

/// Step 5's conflict policies: requeue through the delayed route, or skip as cancelled.
async fn lock_conflict(worker: &WorkerState, mut job: Job, delivery: Delivery, key: &str) {
    let policy = job
        .lock
        .as_ref()
        .map_or(ConflictPolicy::Requeue, |l| l.on_conflict);
    match policy {
        ConflictPolicy::Requeue => {
            let delay = worker.config.worker.lock_conflict_delay;
            let run_at = worker.clock.now_ms().saturating_add(ms_i64(delay));
            tracing::debug!(lock = key, run_at, "lock held; requeued for later");
            job.run_at_ms = Some(run_at);
            let message = settle::job_message(Route::Delayed, &job);
            if settle::publish_then_ack(worker, delivery, message).await {
                worker.finished(&job, Settlement::Requeued);
            }
        }
        ConflictPolicy::Skip => {
            let now = worker.clock.now_ms();
            let record = JobRecord::of(&job, JobState::Cancelled, now);
            let note = format!("skipped: lock {key} held");
            if settle::cancelled(worker, delivery, record, job.unique_key.as_deref(), note).await {
                worker.finished(&job, Settlement::Skipped);
            }
        }
    }
}

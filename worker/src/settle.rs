//! Settling a job's [`Ticket`] (its delivery, or its hold for a long job): every move
//! publishes (with confirms) first and acks after, and a backend error anywhere gives the
//! job back instead, so it runs again.
//!
//! [`outcome`] turns an attempt's [`Outcome`] into the records, publishes and ack that
//! architecture.md step 3.7 prescribes, and reports it as its
//! [`Settlement`](crate::Settlement).

use std::time::Duration;

use jobfleet_common::broker::{Message, Route};
use jobfleet_common::codec::{self, Format};
use jobfleet_common::store::{JobRecord, JobState};
use jobfleet_common::{dead, telemetry, ErrorKind, ErrorRecord, Job, JobId};

use crate::attempt::{Interruption, Outcome};
use crate::follow_up;
use crate::state::WorkerState;
use crate::ticket::Ticket;

/// How long a delivery is held after a backend error before it is given back, so a store
/// or broker outage does not turn into a hot redelivery loop.
const BACKEND_PAUSE: Duration = Duration::from_secs(1);

/// Whether a delivery was settled as intended, or given back after a backend error.
pub(crate) type Settled = bool;

/// Acks; a failed ack only means the message comes back, which the completion marker and
/// the cancel flag absorb.
pub(crate) async fn ack(ticket: impl Into<Ticket>) -> Settled {
    if let Err(e) = ticket.into().ack().await {
        telemetry::backend_error("worker", "ack", &e);
    }
    true
}

/// Gives the delivery back at once (shutdown, nothing went wrong).
pub(crate) async fn requeue(ticket: impl Into<Ticket>) {
    if let Err(e) = ticket.into().requeue().await {
        telemetry::backend_error("worker", "requeue", &e);
    }
}

/// Logs a backend error and gives the delivery back after a pause (cut short by shutdown).
pub(crate) async fn give_back(
    worker: &WorkerState,
    ticket: impl Into<Ticket>,
    op: &'static str,
    error: &(dyn std::fmt::Display + Sync),
) -> Settled {
    telemetry::backend_error("worker", op, error);
    tokio::select! {
        () = tokio::time::sleep(BACKEND_PAUSE) => {}
        () = worker.shutdown.cancelled() => {}
    }
    requeue(ticket).await;
    false
}

/// Publishes `message` with confirms, then acks; gives the delivery back if the publish fails.
pub(crate) async fn publish_then_ack(
    worker: &WorkerState,
    ticket: impl Into<Ticket>,
    message: Message,
) -> Settled {
    match worker.broker.publish(vec![message]).await {
        Ok(()) => ack(ticket).await,
        Err(e) => give_back(worker, ticket, "publish", &e).await,
    }
}

/// `job` encoded in the binary form for `route`.
pub(crate) fn job_message(route: Route, job: &Job) -> Message {
    let format = Format::Binary;
    let mut message = Message::new(
        route,
        job.priority,
        codec::encode(job, format),
        format.content_type(),
    );
    message.key = job.ordering_key.clone();
    message
}

/// Writes a terminal `cancelled` record with `note`, frees the uniqueness key, acks.
pub(crate) async fn cancelled(
    worker: &WorkerState,
    ticket: impl Into<Ticket>,
    record: JobRecord,
    unique_key: Option<&str>,
    note: String,
) -> Settled {
    let now = worker.clock.now_ms();
    let record = JobRecord {
        state: JobState::Cancelled,
        updated_at_ms: now,
        finished_at_ms: Some(now),
        note: Some(note),
        worker: Some(worker.id.to_string()),
        ..record
    };
    // The key first: a `cancelled` record promises a free uniqueness key.
    release_unique(worker, record.id, unique_key).await;
    if let Err(e) = worker
        .store
        .put_records(std::slice::from_ref(&record))
        .await
    {
        return give_back(worker, ticket, "put_records", &e).await;
    }
    ack(ticket).await
}

/// Frees the job's uniqueness key; a failure is logged, since the key expires anyway.
pub(crate) async fn release_unique(worker: &WorkerState, id: JobId, key: Option<&str>) {
    let Some(key) = key else { return };
    if let Err(e) = worker.store.unique_release(key, id).await {
        telemetry::backend_error("worker", "unique_release", &e);
    }
}

/// Sends `job` to the dead route with `kind` and `text` added to its error history (the
/// scheduler files the body as it is), acks, and frees its uniqueness key.
pub(crate) async fn dead(
    worker: &WorkerState,
    ticket: impl Into<Ticket>,
    job: &mut Job,
    kind: ErrorKind,
    text: String,
) -> Settled {
    let now = worker.clock.now_ms();
    job.errors.push(ErrorRecord {
        attempt: job.attempt,
        at_ms: now,
        kind,
        message: text.clone(),
    });
    let encoded = job_message(Route::Dead, job);
    let message = dead::message(encoded.body, encoded.content_type, kind, &text);
    let settled = publish_then_ack(worker, ticket, message).await;
    if settled {
        telemetry::dead_lettered(&job.queue, kind.as_str(), &text);
        // Dead is terminal: a new job with the same key may be enqueued now.
        release_unique(worker, job.id, job.unique_key.as_deref()).await;
    }
    settled
}

/// What the record of a job handed back by a shutdown says about it (before the note
/// the `running` record had, if any). A `pending` record is what it is (the job waits
/// for a worker again), but without a note a forced exit reads like nothing happened.
/// There is no separate `interrupted` state: every reader of `pending` (queue age, the
/// dashboard, `jobfleet dev`) must keep counting the job as waiting.
fn interruption_note(
    why: Interruption,
    worker: &str,
    attempt: u32,
    earlier: Option<&str>,
) -> Option<String> {
    let what = match why {
        Interruption::GraceOver => "shut down and worker.grace_period ran out",
        Interruption::ForcedExit => "was forced to exit (a second SIGTERM or Ctrl-C)",
        Interruption::Unexplained => return earlier.map(str::to_string),
    };
    let note = format!(
        "interrupted: worker {worker} {what} during attempt {attempt}; handed back to the \
         queue, the attempt does not count"
    );
    Some(match earlier {
        Some(earlier) => format!("{note}; {earlier}"),
        None => note,
    })
}

/// Settles an attempt that ended with `outcome`; `running` is the record it started with.
/// Returns whether it was settled as intended (false: given back after a backend error).
pub(crate) async fn outcome(
    worker: &WorkerState,
    ticket: Ticket,
    mut job: Job,
    running: JobRecord,
    outcome: Outcome,
) -> Settled {
    let now = worker.clock.now_ms();
    let settlement = outcome.settlement();
    let unique = job.unique_key.clone();
    let settled = match outcome {
        Outcome::Completed => {
            // A pipeline's next step first: see `follow_up`.
            if let Some(member) = jobfleet_common::pipeline::member_of(&job) {
                if let Err(e) = follow_up::advance(worker, member, running.result.as_ref()).await {
                    return give_back(worker, ticket, "pipeline", &e).await;
                }
            }
            let record = JobRecord {
                state: JobState::Completed,
                updated_at_ms: now,
                finished_at_ms: Some(now),
                progress: Some(1.0),
                ..running
            };
            // Whoever sees `completed` may enqueue the same uniqueness key again at once:
            // free it first. Should `complete` then fail, the job runs again with its key
            // free, a duplicate the completion marker cannot stop but no lost job.
            release_unique(worker, job.id, unique.as_deref()).await;
            match worker.store.complete(&record).await {
                Ok(()) => ack(ticket).await,
                Err(e) => give_back(worker, ticket, "complete", &e).await,
            }
        }
        Outcome::Failed { kind, message } => {
            let kind = kind.error_kind();
            tracing::info!(error_kind = %kind, error = %message, "attempt failed");
            job.errors.push(ErrorRecord {
                attempt: job.attempt,
                at_ms: now,
                kind,
                message,
            });
            publish_then_ack(worker, ticket, job_message(Route::Failed, &job)).await
        }
        Outcome::Permanent(text) => {
            dead(worker, ticket, &mut job, ErrorKind::Permanent, text).await
        }
        Outcome::Cancelled => {
            let note = "cancelled while running".to_string();
            cancelled(worker, ticket, running, unique.as_deref(), note).await
        }
        Outcome::Interrupted(why) => {
            // Back to the ready route without counting an attempt: say so in the record.
            let record = JobRecord {
                state: JobState::Pending,
                updated_at_ms: now,
                note: interruption_note(why, &worker.id, job.attempt, running.note.as_deref()),
                ..running
            };
            if let Err(e) = worker.store.put_records(&[record]).await {
                telemetry::backend_error("worker", "put_records", &e);
            }
            requeue(ticket).await;
            true
        }
    };
    if settled {
        worker.finished(&job, settlement);
    }
    settled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_records_say_which_shutdown_and_keep_the_earlier_note() {
        let forced = interruption_note(Interruption::ForcedExit, "w-1", 2, None);
        assert_eq!(
            forced.as_deref(),
            Some(
                "interrupted: worker w-1 was forced to exit (a second SIGTERM or Ctrl-C) during \
                 attempt 2; handed back to the queue, the attempt does not count"
            )
        );
        let drained = interruption_note(Interruption::GraceOver, "w-1", 1, Some("fired by x"))
            .expect("a note");
        assert!(
            drained.contains("worker.grace_period ran out") && drained.ends_with("; fired by x"),
            "{drained}"
        );
        let unexplained = interruption_note(Interruption::Unexplained, "w-1", 1, Some("n"));
        assert_eq!(unexplained.as_deref(), Some("n"));
    }
}

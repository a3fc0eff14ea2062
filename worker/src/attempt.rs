//! Running one attempt of a handler: its timeout, its panics, its cancellation from
//! outside, and the watchdogs that keep its execution lease and lock alive.
//!
//! Whatever ends the attempt, the result is one [`Outcome`]; the delivery's steps turn that into
//! records, publishes and the ack, and report it as its [`Settlement`]. When the handler is stopped from outside, its token is
//! cancelled and its future dropped at once: a stopped handler must not keep working on
//! a job whose lock may already belong to someone else.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use jobfleet_common::ErrorKind;
use tokio::time::Instant;

use crate::context::JobContext;
use crate::handler::Handler;
use crate::lease::{Execution, LockWatch};
use crate::running::{StopReason, Stopper};
use crate::settlement::Settlement;

/// How an attempt ended, with what its settling needs (the error's text, which shutdown).
/// [`Outcome::settlement`] is what it is reported as once settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The handler returned Ok.
    Completed,
    /// A retryable failure.
    Failed { kind: Retryable, message: String },
    /// The handler returned a permanent error.
    Permanent(String),
    /// Stopped by a cancel request.
    Cancelled,
    /// Stopped by a shutdown: the attempt does not count and the job goes back.
    Interrupted(Interruption),
}

/// Which shutdown stopped an attempt, for the note its record keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interruption {
    /// The worker drained and `worker.grace_period` ran out.
    GraceOver,
    /// The worker was told to exit at once (a second SIGTERM or Ctrl-C).
    ForcedExit,
    /// Stopped with no reason given (never expected: every stop names one).
    Unexplained,
}

/// The ways an attempt fails that another attempt may mend: the retryable subset of
/// [`ErrorKind`], so an attempt's failure cannot name a kind only admission gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retryable {
    /// The handler returned a retryable error.
    Failed,
    /// The handler ran past the job's timeout.
    Timeout,
    /// The handler panicked.
    Panic,
    /// The job's lock or execution lease was lost mid-run.
    LockLost,
}

impl Retryable {
    /// The kind the job's error history records.
    pub fn error_kind(self) -> ErrorKind {
        match self {
            Self::Failed => ErrorKind::Failed,
            Self::Timeout => ErrorKind::Timeout,
            Self::Panic => ErrorKind::Panic,
            Self::LockLost => ErrorKind::LockLost,
        }
    }

    fn settlement(self) -> Settlement {
        match self {
            Self::Failed => Settlement::Failed,
            Self::Timeout => Settlement::Timeout,
            Self::Panic => Settlement::Panic,
            Self::LockLost => Settlement::LockLost,
        }
    }
}

impl Outcome {
    /// How the delivery is reported once this outcome is settled.
    pub fn settlement(&self) -> Settlement {
        match self {
            Self::Completed => Settlement::Completed,
            Self::Failed { kind, .. } => kind.settlement(),
            Self::Permanent(_) => Settlement::Permanent,
            Self::Cancelled => Settlement::Cancelled,
            // Handed back to the broker: the attempt does not count.
            Self::Interrupted(_) => Settlement::Requeued,
        }
    }
}

/// Runs `handler` on `ctx` until it returns, times out, panics or is stopped.
pub(crate) async fn run(
    handler: Arc<dyn Handler>,
    ctx: JobContext,
    stopper: &Stopper,
    lease: &Execution,
    lock: Option<LockWatch>,
) -> Outcome {
    let timeout_ms = ctx.job().timeout_ms;
    let lock_key = lock.as_ref().map(|l| l.request.key.clone());
    // As the heartbeat names this worker when it detects a loss of the store's data.
    let detected_by = format!("worker {}", ctx.worker_id());
    let token = stopper.token().clone();
    let timeout = Duration::from_millis(timeout_ms);
    let timed_out_at = Instant::now() + timeout;
    let handler_run =
        tokio::time::timeout(timeout, AssertUnwindSafe(handler.run(ctx)).catch_unwind());
    let lock_watchdog = async {
        match &lock {
            Some(watch) => watch.watch(stopper).await,
            None => std::future::pending().await,
        }
    };
    // The watchdogs come before the handler: a process resumed past a deadline stops the
    // handler in the same poll, without letting it take another step.
    let finished = tokio::select! {
        biased;
        () = token.cancelled() => None,
        () = lock_watchdog => None,
        () = lease.watch(stopper) => None,
        result = handler_run => Some(result),
    };
    // A stop decides the outcome whatever the handler returned: a handler that notices
    // its token and returns Ok has not done its work.
    if let Some(reason) = stopper.reason() {
        // A task starved past both its timeout and a watchdog's deadline sees them
        // together, and the watchdog is polled first; the timeout was due first.
        let watchdog = matches!(reason, StopReason::LockLost(_) | StopReason::LeaseLost(_));
        if watchdog && Instant::now() >= timed_out_at {
            return timed_out(timeout_ms);
        }
        // The handler is stopped (its future dropped with the `select!`): there is time
        // to ask the store why a renewal was refused.
        let reason = match reason {
            StopReason::LeaseLost(lapse) => {
                StopReason::LeaseLost(lease.explain(lapse, &detected_by).await)
            }
            StopReason::LockLost(lapse) => {
                StopReason::LockLost(lease.explain(lapse, &detected_by).await)
            }
            other => other,
        };
        return from_stop(Some(reason), lock_key.as_deref());
    }
    // The handler ended on its own: anything it left running on the token stops now.
    token.cancel();
    match finished {
        None => from_stop(None, lock_key.as_deref()),
        Some(Err(_elapsed)) => timed_out(timeout_ms),
        Some(Ok(Err(panic))) => Outcome::Failed {
            kind: Retryable::Panic,
            message: format!("handler panicked: {}", panic_message(panic.as_ref())),
        },
        Some(Ok(Ok(Ok(())))) => Outcome::Completed,
        Some(Ok(Ok(Err(e)))) if e.is_permanent() => Outcome::Permanent(e.message().to_string()),
        Some(Ok(Ok(Err(e)))) => Outcome::Failed {
            kind: Retryable::Failed,
            message: e.message().to_string(),
        },
    }
}

fn timed_out(timeout_ms: u64) -> Outcome {
    Outcome::Failed {
        kind: Retryable::Timeout,
        message: format!("ran past its timeout of {timeout_ms} ms"),
    }
}

fn from_stop(reason: Option<StopReason>, lock_key: Option<&str>) -> Outcome {
    match reason {
        Some(StopReason::CancelRequested) => Outcome::Cancelled,
        Some(StopReason::LockLost(lapse)) => Outcome::Failed {
            kind: Retryable::LockLost,
            message: format!(
                "lock {} lost mid-run: {}",
                lock_key.unwrap_or("?"),
                lapse.describe("the lock key", "worker.lock_ttl")
            ),
        },
        // Counted like a lost lock: a job that keeps its worker from renewing (one that
        // blocks the executor, say) must run out of attempts, not loop.
        Some(StopReason::LeaseLost(lapse)) => Outcome::Failed {
            kind: Retryable::LockLost,
            message: format!(
                "execution lease lost mid-run: {}",
                lapse.describe("the lease key", "worker.lease_ttl")
            ),
        },
        Some(StopReason::Shutdown) => Outcome::Interrupted(Interruption::GraceOver),
        Some(StopReason::ForcedExit) => Outcome::Interrupted(Interruption::ForcedExit),
        // Only a stop cancels the token before the attempt ends; without a reason, hand
        // the job back rather than count an attempt nobody can explain.
        None => Outcome::Interrupted(Interruption::Unexplained),
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lapse::Lapse;

    #[test]
    fn panic_messages_are_read_from_either_string_type() {
        let boxed: Box<dyn Any + Send> = Box::new("static");
        assert_eq!(panic_message(boxed.as_ref()), "static");
        let boxed: Box<dyn Any + Send> = Box::new(String::from("owned"));
        assert_eq!(panic_message(boxed.as_ref()), "owned");
        let boxed: Box<dyn Any + Send> = Box::new(7_u8);
        assert_eq!(panic_message(boxed.as_ref()), "(non-string panic payload)");
    }

    #[test]
    fn stops_map_to_outcomes() {
        assert_eq!(
            from_stop(Some(StopReason::CancelRequested), None),
            Outcome::Cancelled
        );
        assert_eq!(
            from_stop(Some(StopReason::Shutdown), None),
            Outcome::Interrupted(Interruption::GraceOver)
        );
        assert_eq!(
            from_stop(Some(StopReason::ForcedExit), None),
            Outcome::Interrupted(Interruption::ForcedExit)
        );
        let lapse = Lapse::StoreLostData {
            detected_at_ms: 0,
            detected_by: "worker w".into(),
        };
        let lease = from_stop(Some(StopReason::LeaseLost(lapse)), None);
        assert!(
            matches!(&lease, Outcome::Failed { kind: Retryable::LockLost, message }
                if message.starts_with("execution lease lost mid-run: the lease key is gone \
                    because the store lost its data")),
            "{lease:?}"
        );
        let lost = from_stop(Some(StopReason::LockLost(Lapse::Refused)), Some("k"));
        assert!(
            matches!(&lost, Outcome::Failed { kind: Retryable::LockLost, message }
                if message == "lock k lost mid-run: the store refused its renewal: the lock \
                    key is gone or another holder has it"),
            "{lost:?}"
        );
        assert_eq!(lost.settlement(), Settlement::LockLost);
    }

    #[test]
    fn outcomes_settle_under_their_error_kinds_name() {
        for kind in [
            Retryable::Failed,
            Retryable::Timeout,
            Retryable::Panic,
            Retryable::LockLost,
        ] {
            let failed = Outcome::Failed {
                kind,
                message: String::new(),
            };
            assert_eq!(failed.settlement().as_str(), kind.error_kind().as_str());
        }
        assert_eq!(
            Outcome::Permanent(String::new()).settlement().as_str(),
            ErrorKind::Permanent.as_str()
        );
        let interrupted = Outcome::Interrupted(Interruption::ForcedExit);
        assert_eq!(interrupted.settlement(), Settlement::Requeued);
        assert_eq!(Outcome::Cancelled.settlement(), Settlement::Cancelled);
        assert_eq!(Outcome::Completed.settlement(), Settlement::Completed);
    }
}

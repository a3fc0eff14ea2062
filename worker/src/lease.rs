//! What a running attempt must keep alive in the store — its execution lease, and its
//! lock if the job has one — and the watchdog that stops the attempt the moment either
//! may have run out.
//!
//! Both are renewed every third of their TTL. The watchdog counts from the moment the
//! last successful renewal (or the acquisition) was *sent*: the store set its expiry
//! later than that, by its own clock, so stopping at `sent + ttl` stops strictly before
//! the store can hand the lease or lock to someone else. A renewal that is refused, or
//! no successful renewal by that deadline (store unreachable, process paused), stops the
//! attempt at once.
//!
//! The attempt's error then says which of those it was (a [`Lapse`], in `crate::lapse`): an
//! operator reading "lease lost" must learn whether to look at the store, at the network
//! or at the worker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::store::{LockRequest, Locks, StoreResult, WorkerStore};
use jobfleet_common::{telemetry, JobId};
use tokio::time::Instant;

use crate::lapse::{data_lost_since, Lapse};
use crate::ms::{ms_i64, ms_u64};
use crate::running::{StopReason, Stopper};

/// One attempt's execution lease, from admission to release.
pub(crate) struct Execution {
    /// The lease itself, and (to explain losing it) the store's clock and integrity.
    store: Arc<dyn WorkerStore>,
    job: JobId,
    /// Unique per execution.
    pub holder: String,
    ttl: Duration,
    /// When the admission that took the lease was sent.
    taken_at: Instant,
    /// The lease's fencing token.
    pub token: u64,
    released: AtomicBool,
}

impl Execution {
    /// The lease `holder` took on `job` with an admission sent at `taken_at`.
    pub fn new(
        store: Arc<dyn WorkerStore>,
        job: JobId,
        holder: String,
        ttl: Duration,
        taken_at: Instant,
        token: u64,
    ) -> Self {
        Self {
            store,
            job,
            holder,
            ttl,
            taken_at,
            token,
            released: AtomicBool::new(false),
        }
    }

    /// Ends the execution once: frees the lease so another delivery of the job may run.
    /// A failure is logged: the lease then expires, which counts as a crash.
    pub async fn release(&self) {
        if self.released.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = self.store.lease_release(self.job, &self.holder).await {
            telemetry::backend_error("worker", "lease_release", &e);
        }
    }

    /// Marks the execution ended without a store call: the job's completion, recorded,
    /// removed the lease with it.
    pub fn ended_by_completion(&self) {
        self.released.store(true, Ordering::Release);
    }

    /// Keeps the lease until it is lost, then stops the attempt with
    /// [`StopReason::LeaseLost`].
    pub async fn watch(&self, stopper: &Stopper) {
        let renew = || {
            self.store
                .lease_renew(self.job, &self.holder, ms_u64(self.ttl))
        };
        let lapse = keep(self.ttl, self.taken_at, renew, "lease_renew").await;
        tracing::warn!(
            job_id = %self.job,
            reason = %lapse.describe("the lease key", "worker.lease_ttl"),
            "execution lease lost; stopping the handler"
        );
        stopper.stop(StopReason::LeaseLost(lapse));
    }

    /// `lapse` with what the store knows about it: a refusal becomes
    /// [`Lapse::StoreLostData`] when the store reports a loss of its data detected since
    /// this lease was taken (the check itself may be the one that detects it, as
    /// `detected_by`). Asked once the handler has stopped; a store that does not answer
    /// within the lease's TTL leaves the refusal as it is.
    pub async fn explain(&self, lapse: Lapse, detected_by: &str) -> Lapse {
        if lapse != Lapse::Refused {
            return lapse;
        }
        // By the store's clock, as incidents are stamped.
        let lookup = async {
            let now = self.store.store_time_ms().await?;
            let since_ms = now.saturating_sub(ms_i64(self.taken_at.elapsed()));
            data_lost_since(self.store.as_ref(), detected_by, since_ms).await
        };
        match tokio::time::timeout(self.ttl, lookup).await {
            Ok(Ok(Some(incident))) => Lapse::StoreLostData {
                detected_at_ms: incident.detected_at_ms,
                detected_by: incident.detected_by,
            },
            Ok(Ok(None)) | Err(_) => lapse,
            Ok(Err(e)) => {
                telemetry::backend_error("worker", "check_integrity", &e);
                lapse
            }
        }
    }
}

/// The lock an attempt holds, and how to keep it.
pub(crate) struct LockWatch {
    pub store: Arc<dyn Locks>,
    pub request: LockRequest,
    /// When the acquisition was sent.
    pub taken_at: Instant,
}

impl LockWatch {
    /// Keeps the lock until it is lost, then stops the attempt with
    /// [`StopReason::LockLost`].
    pub async fn watch(&self, stopper: &Stopper) {
        let ttl = Duration::from_millis(self.request.ttl_ms);
        let renew = || self.store.lock_renew(&self.request);
        let lapse = keep(ttl, self.taken_at, renew, "lock_renew").await;
        tracing::warn!(
            lock = %self.request.key,
            reason = %lapse.describe("the lock key", "worker.lock_ttl"),
            "lock lost; stopping the handler"
        );
        stopper.stop(StopReason::LockLost(lapse));
    }
}

/// Renews every third of `ttl` until a renewal is refused or the deadline (`ttl` after
/// the last successful renewal was sent, or after `taken_at`) passes; then returns why.
async fn keep<F, Fut>(ttl: Duration, taken_at: Instant, renew: F, op: &'static str) -> Lapse
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = StoreResult<bool>>,
{
    let mut valid_until = taken_at + ttl;
    let mut next = taken_at + ttl / 3;
    // The error of the last renewal, while none has succeeded since.
    let mut last_error: Option<String> = None;
    loop {
        let wake = next.min(valid_until);
        tokio::time::sleep_until(wake).await;
        let now = Instant::now();
        if now >= valid_until {
            // Woken for a renewal due well before the deadline, yet past it, with none
            // failing: the worker did not run. Otherwise the store is what failed.
            if wake < valid_until && last_error.is_none() {
                let late = now - valid_until;
                return Lapse::Stalled { ttl, late };
            }
            return Lapse::Unanswered { ttl, last_error };
        }
        match tokio::time::timeout_at(valid_until, renew()).await {
            Ok(Ok(true)) => {
                valid_until = now + ttl;
                next = now + ttl / 3;
                last_error = None;
            }
            Ok(Ok(false)) => return Lapse::Refused,
            Err(_) => return Lapse::Unanswered { ttl, last_error },
            Ok(Err(e)) => {
                telemetry::backend_error("worker", op, &e);
                last_error = Some(e.to_string());
                // Try again soon, but not in a hot loop.
                next = Instant::now() + (ttl / 10).max(Duration::from_millis(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use jobfleet_common::StoreError;

    use super::*;

    const TTL: Duration = Duration::from_millis(300);

    #[tokio::test(start_paused = true)]
    async fn renewals_keep_it_until_one_is_refused() {
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let renew = || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            Ok(n < 5)
        };
        let lapse = keep(TTL, started, renew, "t").await;
        assert_eq!(lapse, Lapse::Refused);
        assert_eq!(calls.load(Ordering::SeqCst), 6);
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(600),
            "every 100 ms"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failing_renewals_give_up_at_the_deadline_not_later() {
        let started = Instant::now();
        let renew = || async { Err(StoreError::Connection("down".into())) };
        let lapse = keep(TTL, started, renew, "t").await;
        assert_eq!(started.elapsed(), TTL);
        let last_error = Some("store connection: down".to_string());
        assert_eq!(
            lapse,
            Lapse::Unanswered {
                ttl: TTL,
                last_error
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_that_hangs_gives_up_at_the_deadline() {
        let started = Instant::now();
        let renew = || std::future::pending::<StoreResult<bool>>();
        let lapse = keep(TTL, started, renew, "t").await;
        assert_eq!(started.elapsed(), TTL);
        let last_error = None;
        assert_eq!(
            lapse,
            Lapse::Unanswered {
                ttl: TTL,
                last_error
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_passed_while_paused_stops_without_asking() {
        let calls = AtomicU32::new(0);
        // Taken long ago: as if the process had been stopped past the TTL.
        let taken_at = Instant::now() - Duration::from_secs(5);
        let renew = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(true)
        };
        let lapse = keep(TTL, taken_at, renew, "t").await;
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        let late = Duration::from_millis(4_700);
        assert_eq!(lapse, Lapse::Stalled { ttl: TTL, late });
    }
}

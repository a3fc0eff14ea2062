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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::store::{LockRequest, StoreResult};
use jobfleet_common::{telemetry, JobId, Store};
use tokio::time::Instant;

use crate::running::{StopReason, Stopper};

/// One attempt's execution lease, from admission to release.
pub(crate) struct Execution {
    store: Arc<dyn Store>,
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
        store: Arc<dyn Store>,
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
                .lease_renew(self.job, &self.holder, ttl_ms(self.ttl))
        };
        keep(self.ttl, self.taken_at, renew, "lease_renew").await;
        tracing::warn!(
            job_id = %self.job,
            "execution lease lost (store unreachable or paused past its TTL); stopping the \
             handler"
        );
        stopper.stop(StopReason::LeaseLost);
    }
}

/// The lock an attempt holds, and how to keep it.
pub(crate) struct LockWatch {
    pub store: Arc<dyn Store>,
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
        keep(ttl, self.taken_at, renew, "lock_renew").await;
        tracing::warn!(lock = %self.request.key, "lock lost; stopping the handler");
        stopper.stop(StopReason::LockLost);
    }
}

/// Renews every third of `ttl` until a renewal is refused or the deadline (`ttl` after
/// the last successful renewal was sent, or after `taken_at`) passes; then returns.
async fn keep<F, Fut>(ttl: Duration, taken_at: Instant, renew: F, op: &'static str)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = StoreResult<bool>>,
{
    let mut valid_until = taken_at + ttl;
    let mut next = taken_at + ttl / 3;
    loop {
        tokio::time::sleep_until(next.min(valid_until)).await;
        if Instant::now() >= valid_until {
            return;
        }
        let sent = Instant::now();
        match tokio::time::timeout_at(valid_until, renew()).await {
            Ok(Ok(true)) => {
                valid_until = sent + ttl;
                next = sent + ttl / 3;
            }
            Ok(Ok(false)) | Err(_) => return,
            Ok(Err(e)) => {
                telemetry::backend_error("worker", op, &e);
                // Try again soon, but not in a hot loop.
                next = Instant::now() + (ttl / 10).max(Duration::from_millis(10));
            }
        }
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use jobfleet_common::StoreError;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn renewals_keep_it_until_one_is_refused() {
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let renew = || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            Ok(n < 5)
        };
        keep(Duration::from_millis(300), started, renew, "t").await;
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
        keep(Duration::from_millis(300), started, renew, "t").await;
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_that_hangs_gives_up_at_the_deadline() {
        let started = Instant::now();
        let renew = || std::future::pending::<StoreResult<bool>>();
        keep(Duration::from_millis(300), started, renew, "t").await;
        assert_eq!(started.elapsed(), Duration::from_millis(300));
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
        keep(Duration::from_millis(300), taken_at, renew, "t").await;
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}

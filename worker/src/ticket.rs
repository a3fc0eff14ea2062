//! What a worker settles when an attempt ends: the broker delivery, or — for a long job
//! acknowledged early — the job's hold in the store.
//!
//! A job whose timeout exceeds `worker.ack_early_after` must not keep its delivery
//! unacknowledged for that long (RabbitMQ closes the channel after `consumer_timeout`).
//! So before its handler starts, the worker puts the encoded job in the delayed set due
//! `worker.hold_lease` from now, acks the delivery, and keeps pushing the due time forward
//! while the handler runs. If the worker dies, the push stops, and the scheduler's release
//! loop publishes the job again when the lease runs out. See docs/architecture.md, "Long
//! jobs and RabbitMQ's `consumer_timeout`".
//!
//! Settling a hold mirrors settling a delivery: `ack` removes the entry (`unschedule`),
//! `requeue` makes it due now so the scheduler releases it at once.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::broker::{BrokerError, Delivery};
use jobfleet_common::store::{DelayedSet, ScheduledJob};
use jobfleet_common::{telemetry, Job, JobId, SharedClock};

use crate::ms::ms_i64;

/// A delivery, or a hold standing in for one.
pub(crate) enum Ticket {
    /// The broker's delivery, unsettled.
    Delivery(Delivery),
    /// The job is held in the store; its delivery was acknowledged.
    Held(Hold),
}

impl From<Delivery> for Ticket {
    fn from(delivery: Delivery) -> Self {
        Self::Delivery(delivery)
    }
}

/// Why settling a ticket failed; either way the job comes back (redelivery or lease).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SettleError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Store(#[from] jobfleet_common::StoreError),
}

impl Ticket {
    /// Done with the job: it will not come back.
    pub async fn ack(self) -> Result<(), SettleError> {
        match self {
            Self::Delivery(d) => Ok(d.ack().await?),
            Self::Held(hold) => Ok(hold.store.unschedule(hold.entry.id).await.map(drop)?),
        }
    }

    /// Give the job back to run again, without counting an attempt.
    pub async fn requeue(self) -> Result<(), SettleError> {
        match self {
            Self::Delivery(d) => Ok(d.requeue().await?),
            Self::Held(mut hold) => {
                hold.entry.due_ms = hold.clock.now_ms();
                Ok(hold.store.schedule(vec![hold.entry]).await?)
            }
        }
    }

    /// The hold, if this is a held job.
    pub fn hold(&self) -> Option<&Hold> {
        match self {
            Self::Delivery(_) => None,
            Self::Held(hold) => Some(hold),
        }
    }
}

/// The delayed-set id a hold of job `id` is filed under. Not the job's own id: a retry
/// of the job (filed by the scheduler under its id once the attempt's failure is
/// published) must survive the holder removing its hold. The mapping flips the UUID's
/// 62 random low bits, so it cannot meet another job's id in practice, and the entry's
/// body still carries the job with its own id.
pub(crate) fn hold_id(id: JobId) -> JobId {
    const RANDOM_LOW_BITS: u128 = (1 << 62) - 1;
    JobId(uuid::Uuid::from_u128(id.0.as_u128() ^ RANDOM_LOW_BITS))
}

/// Runs `attempt` to its end, pushing a held job's due time forward meanwhile. The
/// renewal is part of this future, not a task of its own, so it stops exactly when the
/// attempt does (or when the worker itself is torn down) and never lands after the
/// settlement.
pub(crate) async fn run_while<T>(hold: Option<&Hold>, attempt: impl Future<Output = T>) -> T {
    match hold {
        None => attempt.await,
        Some(hold) => tokio::select! {
            out = attempt => out,
            never = hold.keep() => match never {},
        },
    }
}

/// A long job held in the delayed set in place of its acknowledged delivery.
pub(crate) struct Hold {
    store: Arc<dyn DelayedSet>,
    clock: SharedClock,
    entry: ScheduledJob,
    lease_ms: i64,
}

impl Hold {
    /// Whether `job` is long enough to be held rather than kept unacknowledged.
    pub fn wanted(job: &Job, ack_early_after: Duration) -> bool {
        u128::from(job.timeout_ms) > ack_early_after.as_millis()
    }

    /// Puts `job` (as `body`) in the delayed set due one lease from now, then acks the
    /// delivery. On a store error the delivery is returned untouched with the error.
    pub async fn take(
        store: Arc<dyn DelayedSet>,
        clock: SharedClock,
        job: &Job,
        body: bytes::Bytes,
        lease: Duration,
        delivery: Delivery,
    ) -> Result<Self, (Delivery, SettleError)> {
        let lease_ms = ms_i64(lease);
        let entry = ScheduledJob {
            id: hold_id(job.id),
            queue: job.queue.clone(),
            due_ms: clock.now_ms().saturating_add(lease_ms),
            body,
        };
        if let Err(e) = store.schedule(vec![entry.clone()]).await {
            return Err((delivery, e.into()));
        }
        // The hold now guarantees the job; a failed ack only means a duplicate delivery,
        // which the completion marker absorbs.
        if let Err(e) = delivery.ack().await {
            telemetry::backend_error("worker", "ack", &e);
        }
        Ok(Self {
            store,
            clock,
            entry,
            lease_ms,
        })
    }

    /// Pushes the due time one lease ahead every third of a lease, forever.
    async fn keep(&self) -> Infallible {
        let every = Duration::from_millis(u64::try_from(self.lease_ms / 3).unwrap_or(1).max(1));
        let mut entry = self.entry.clone();
        loop {
            tokio::time::sleep(every).await;
            entry.due_ms = self.clock.now_ms().saturating_add(self.lease_ms);
            if let Err(e) = self.store.schedule(vec![entry.clone()]).await {
                // The next round tries again; a lease that runs out only means a rerun.
                telemetry::backend_error("worker", "hold_renew", &e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_is_filed_apart_from_its_job_and_keeps_the_uuid_shape() {
        let id = JobId::new();
        let hold = hold_id(id);
        assert_ne!(hold, id);
        assert_eq!(hold_id(hold), id);
        assert_eq!(hold.0.get_version_num(), 7);
        assert_eq!(hold.0.get_variant(), uuid::Variant::RFC4122);
    }
}

//! Whether the store still holds what it held: a capability for stores that can lose
//! their data while the roles run (a Redis restarted without persistence, or flushed).
//!
//! The roles call [`Integrity::check_integrity`] periodically; a store that detects a
//! loss logs it, counts it, records a [`DataLossIncident`] that stays until an operator
//! clears it ([`Integrity::clear_data_loss`], `jobfleet queues --ack-data-loss`), and
//! arms itself again so a later loss is caught too. The embedded store lives and dies
//! with its process and has nothing to check: every method's default says so.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreResult;

/// A detected loss of the store's data, as recorded for operators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataLossIncident {
    /// When it was detected, Unix ms.
    pub detected_at_ms: i64,
    /// Which process noticed (role, host, pid).
    pub detected_by: String,
    /// What was lost, in words.
    pub lost: String,
    /// When the state that was lost began to be written (the vanished sentinel's
    /// creation), Unix ms, if known.
    pub since_ms: Option<i64>,
}

/// What one integrity check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntegrityCheck {
    /// The store holds what it held at the last check.
    Intact,
    /// This backend cannot lose data behind the roles' backs; nothing was checked.
    NotApplicable,
    /// The store lost its data since the last check; the incident is recorded.
    DataLost(DataLossIncident),
}

/// What the store's server keeps across its own restart, as it reports it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durability {
    /// Whether the server keeps an append-only file (what jobfleet requires unless
    /// `redis.require_persistence = false`).
    pub persisting: bool,
    /// What the server has, in one phrase ("no AOF (appendonly no), RDB snapshots none").
    pub summary: String,
    /// What a restart (or crash) of the server loses with this setting.
    pub loss_window: String,
    /// A weakness worth a warning even on a persisting server (an append-only file the
    /// OS alone flushes), if any.
    pub concern: Option<String>,
}

impl Durability {
    /// The warning operators must see while a store that should persist does not (its
    /// persistence turned off or lost after the roles started): `None` when it persists
    /// or when `required` is off (volatility accepted by configuration).
    pub fn alarm(&self, required: bool) -> Option<String> {
        (required && !self.persisting).then(|| {
            format!(
                "THE STORE IS NOT PERSISTING: it has {}; a restart of it loses {}. Turn \
                 the append-only file back on (`CONFIG SET appendonly yes`)",
                self.summary, self.loss_window
            )
        })
    }

    /// Logs what the store keeps, once, as a role starts: an error where it should
    /// persist and does not (`required`: its persistence went between the connect check
    /// and now), a warning where it loses more than about a second of writes, otherwise
    /// at info.
    pub fn log_at_start(&self, role: &'static str, required: bool) {
        crate::telemetry::store_persisting(self.persisting);
        let (has, window) = (&self.summary, &self.loss_window);
        if let Some(alarm) = self.alarm(required) {
            tracing::error!(role, "{alarm}");
        } else if !self.persisting {
            tracing::warn!(role, persistence = %has, loss_window = %window,
                "store without an append-only file, accepted by \
                 redis.require_persistence = false: a restart of it loses jobs");
        } else if let Some(concern) = &self.concern {
            tracing::warn!(role, persistence = %has, loss_window = %window, "{concern}");
        } else {
            tracing::info!(role, persistence = %has, loss_window = %window, "store persistence");
        }
    }
}

/// Asks `store` what it keeps and logs it for `role` as it starts (nothing for a store
/// that lives with its process; a failed question is logged and counted, not fatal: the
/// connection has just been checked). `required` is `redis.require_persistence`.
pub async fn announce_durability(store: &dyn Integrity, role: &'static str, required: bool) {
    match store.durability().await {
        Ok(Some(durability)) => durability.log_at_start(role, required),
        Ok(None) => {}
        Err(e) => crate::telemetry::backend_error(role, "durability", &e),
    }
}

/// Detecting and recording a store that lost its data.
#[async_trait]
pub trait Integrity: Send + Sync {
    /// Checks that the store still holds what it held at the last check; on a loss, logs
    /// it at error level, counts it, records the incident and arms a fresh check.
    /// `detected_by` names the caller in the incident.
    async fn check_integrity(&self, detected_by: &str) -> StoreResult<IntegrityCheck> {
        let _ = detected_by;
        Ok(IntegrityCheck::NotApplicable)
    }

    /// The recorded incident an operator has not cleared yet, if any.
    async fn data_loss_incident(&self) -> StoreResult<Option<DataLossIncident>> {
        Ok(None)
    }

    /// Clears the recorded incident once operators have dealt with it; returns it, or
    /// `None` if none was open.
    async fn clear_data_loss(&self) -> StoreResult<Option<DataLossIncident>> {
        Ok(None)
    }

    /// What the store's server keeps across its restart, asked now; `None` for a store
    /// that lives and dies with its process.
    async fn durability(&self) -> StoreResult<Option<Durability>> {
        Ok(None)
    }
}

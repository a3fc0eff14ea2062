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
}

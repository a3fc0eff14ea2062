//! Why a lease or lock could not be kept, in the words the attempt's error keeps.
//!
//! The watchdog knows what it saw: a renewal refused, none answered (or each failing)
//! until the deadline, or itself waking past the deadline. A refusal is looked into once
//! the handler has stopped: when the store reports that it lost its data since the key
//! was taken (a Redis restarted without persistence, a flush), the key went with the
//! data, and the error says so rather than blaming the network or the worker.

use std::time::Duration;

use jobfleet_common::cron;
use jobfleet_common::store::{DataLossIncident, Integrity, IntegrityCheck, StoreResult};

/// Why a lease or lock could not be kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Lapse {
    /// A renewal reached the store and was refused: the key is gone, or another holder
    /// has it.
    Refused,
    /// Refused, and the store reports that it lost its data since the key was taken (a
    /// restart without persistence, a flush): the key went with it.
    StoreLostData {
        /// When the loss was detected, Unix ms.
        detected_at_ms: i64,
        /// Which process detected it.
        detected_by: String,
    },
    /// No renewal succeeded within the TTL: each one failed (`last_error`), or the last
    /// was still unanswered at the deadline.
    Unanswered {
        ttl: Duration,
        last_error: Option<String>,
    },
    /// The watchdog woke `late` past its deadline with no renewal failing before: this
    /// worker stalled (its executor blocked, its process paused) and could not renew.
    Stalled { ttl: Duration, late: Duration },
}

impl Lapse {
    /// Why `key` (the lease's or the lock's, in words) was lost; `ttl_key` names the
    /// setting its TTL comes from.
    pub fn describe(&self, key: &str, ttl_key: &str) -> String {
        match self {
            Self::Refused => {
                format!("the store refused its renewal: {key} is gone or another holder has it")
            }
            Self::StoreLostData {
                detected_at_ms,
                detected_by,
            } => format!(
                "{key} is gone because the store lost its data (data-loss incident detected \
                 at {} by {detected_by})",
                cron::rfc3339(*detected_at_ms)
            ),
            Self::Unanswered {
                ttl,
                last_error: Some(error),
            } => format!(
                "no renewal reached the store within {ttl_key} ({:?}): {error}",
                millis_only(*ttl)
            ),
            Self::Unanswered {
                ttl,
                last_error: None,
            } => format!(
                "the store did not answer a renewal within {ttl_key} ({:?})",
                millis_only(*ttl)
            ),
            Self::Stalled { ttl, late } => format!(
                "the worker stalled (executor blocked or process paused): its watchdog woke \
                 {:?} past the deadline, too late to renew within {ttl_key} ({:?})",
                millis_only(*late),
                millis_only(*ttl)
            ),
        }
    }
}

/// `d` without its sub-millisecond part, for words people read ("1.5s", "250ms").
fn millis_only(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The store's data-loss incident if it lost its data at `since_ms` or later: one this
/// check detects, or an open one detected since (by another process, or by this one's
/// heartbeat, which re-armed the check).
pub(super) async fn data_lost_since(
    store: &dyn Integrity,
    detected_by: &str,
    since_ms: i64,
) -> StoreResult<Option<DataLossIncident>> {
    match store.check_integrity(detected_by).await? {
        IntegrityCheck::DataLost(incident) => return Ok(Some(incident)),
        IntegrityCheck::NotApplicable => return Ok(None),
        IntegrityCheck::Intact => {}
    }
    let open = store.data_loss_incident().await?;
    Ok(open.filter(|incident| incident.detected_at_ms >= since_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_millis(300);

    #[test]
    fn each_lapse_says_what_to_look_at() {
        let key = "the lease key";
        let ttl_key = "worker.lease_ttl";
        let refused = Lapse::Refused.describe(key, ttl_key);
        assert_eq!(
            refused,
            "the store refused its renewal: the lease key is gone or another holder has it"
        );
        let lost = Lapse::StoreLostData {
            detected_at_ms: 1_714_564_800_250,
            detected_by: "worker w-1".into(),
        };
        assert_eq!(
            lost.describe(key, ttl_key),
            "the lease key is gone because the store lost its data (data-loss incident \
             detected at 2024-05-01T12:00:00.250Z by worker w-1)"
        );
        let cut = Lapse::Unanswered {
            ttl: Duration::from_millis(1_500),
            last_error: Some("store connection: refused".into()),
        };
        assert_eq!(
            cut.describe(key, ttl_key),
            "no renewal reached the store within worker.lease_ttl (1.5s): store connection: \
             refused"
        );
        let silent = Lapse::Unanswered {
            ttl: TTL,
            last_error: None,
        };
        assert!(
            silent.describe(key, ttl_key).contains("did not answer"),
            "{silent:?}"
        );
        let stalled = Lapse::Stalled {
            ttl: TTL,
            late: Duration::from_micros(4_700_123),
        };
        assert_eq!(
            stalled.describe(key, ttl_key),
            "the worker stalled (executor blocked or process paused): its watchdog woke 4.7s \
             past the deadline, too late to renew within worker.lease_ttl (300ms)"
        );
    }

    #[tokio::test]
    async fn a_store_that_cannot_lose_data_never_explains_a_refusal() {
        let store = jobfleet_common::Backends::embedded().store;
        let found = data_lost_since(store.as_ref(), "worker w", 0).await;
        assert_eq!(found.expect("the embedded store answers"), None);
    }
}

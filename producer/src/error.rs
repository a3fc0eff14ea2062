//! Why an enqueue failed, and whether trying again can help.

use jobfleet_common::limits::InvalidJob;
use jobfleet_common::{BrokerError, StoreError};

/// Why [`Producer::enqueue`](crate::Producer::enqueue) or
/// [`Producer::enqueue_many`](crate::Producer::enqueue_many) failed.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// A job breaks a limit; nothing in its batch was published. Retrying will not help.
    #[error("job {index}: {source}")]
    Invalid {
        /// The job's position in the batch (0 for [`enqueue`](crate::Producer::enqueue)).
        index: usize,
        /// Which field is wrong and why.
        source: InvalidJob,
    },
    /// The broker did not accept the batch (or the declaration of its routes).
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The store did not record the batch or claim its uniqueness keys.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ProduceError {
    /// Whether enqueueing the same jobs again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Invalid { .. } => false,
            Self::Broker(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_the_index_and_field_and_is_final() {
        let e = ProduceError::Invalid {
            index: 3,
            source: InvalidJob {
                field: "queue",
                reason: "must not be empty".into(),
            },
        };
        assert_eq!(
            e.to_string(),
            "job 3: invalid job: queue: must not be empty"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn backend_errors_keep_their_retryability() {
        assert!(ProduceError::from(BrokerError::Connection("down".into())).is_retryable());
        assert!(!ProduceError::from(BrokerError::Invalid("bad".into())).is_retryable());
        assert!(ProduceError::from(StoreError::Connection("down".into())).is_retryable());
        assert!(!ProduceError::from(StoreError::Corrupt("junk".into())).is_retryable());
    }
}

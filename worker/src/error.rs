//! Why a worker could not start or had to stop.
//!
//! Failures of single jobs are not here: a job's failure is data (an `ErrorRecord` on the
//! failed route), and a backend error in the middle of a job only puts its delivery back.
//! What stops [`run`](crate::run) is what leaves it nothing to do: routes it cannot
//! declare, queues it cannot consume, consumers the broker closed, a store that cannot
//! tell the time it keeps.

use jobfleet_common::store::StoreError;
use jobfleet_common::BrokerError;

/// Why [`run`](crate::run) returned an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The registry has no handler, so every job would be dead-lettered as an unknown kind.
    #[error("no handlers registered: every job would go to the dead route")]
    NoHandlers,
    /// The broker refused to declare the routes.
    #[error("cannot declare the worker's routes: {0}")]
    Declare(#[source] BrokerError),
    /// The broker refused a consumer for a queue.
    #[error("cannot consume queue {queue:?}: {source}")]
    Consume {
        /// The queue.
        queue: String,
        /// What the broker said.
        #[source]
        source: BrokerError,
    },
    /// Every consumer stream ended: the broker went away for good.
    #[error("the broker closed every consumer")]
    ConsumersClosed,
    /// The HTTP endpoint (`worker.http`) could not listen on its address.
    #[error(transparent)]
    Http(#[from] jobfleet_http::BindError),
    /// The store did not tell its time at start-up: the worker keeps time by the store's
    /// clock, so it cannot judge a job due without it.
    #[error("cannot read the store's clock: {0}")]
    StoreTime(#[source] StoreError),
}

impl WorkerError {
    /// Whether starting the worker again later can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::NoHandlers => false,
            Self::Declare(e) | Self::Consume { source: e, .. } => e.is_retryable(),
            Self::ConsumersClosed => true,
            // The address is taken or not ours: a configuration problem.
            Self::Http(_) => false,
            Self::StoreTime(e) => e.is_retryable(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryability_follows_the_cause() {
        assert!(!WorkerError::NoHandlers.is_retryable());
        assert!(WorkerError::ConsumersClosed.is_retryable());
        assert!(WorkerError::Declare(BrokerError::Connection("down".into())).is_retryable());
        let refused = WorkerError::Consume {
            queue: "q".into(),
            source: BrokerError::Invalid("x".into()),
        };
        assert!(!refused.is_retryable());
        assert!(refused.to_string().contains("\"q\""), "{refused}");
        let clockless = WorkerError::StoreTime(StoreError::Connection("reset".into()));
        assert!(clockless.is_retryable());
        assert!(
            clockless.to_string().contains("store's clock"),
            "{clockless}"
        );
    }
}

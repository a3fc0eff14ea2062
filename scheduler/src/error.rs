//! The scheduler's errors: what stops [`crate::run`] and what an operator function returns.
//!
//! Backend failures inside the running scheduler never reach the caller: the loops log
//! them, back off and go on. They surface here only from the operator functions in
//! [`crate::ops`], and as the causes inside a loop's own step results.

use jobfleet_common::config::ConfigError;
use jobfleet_common::{BrokerError, StoreError};

/// Why the scheduler could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The configuration holds a schedule that does not compile (a cron expression or
    /// time zone `Config::validate` cannot read without a cron parser); names the key.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A broker call failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// A store call failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTP endpoint could not listen on its address.
    #[error("cannot serve HTTP on {addr}: {source}")]
    Http {
        /// The configured `scheduler.http` address.
        addr: String,
        /// What the operating system said.
        source: std::io::Error,
    },
}

impl SchedulerError {
    /// Whether retrying the same thing later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Broker(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
            Self::Config(_) => false,
            // The address is taken or not ours: a configuration problem, not a transient one.
            Self::Http { .. } => false,
        }
    }
}

/// Why an operator function (cancel, dead-letter list/replay/purge, queue depths) failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// A broker call failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// A store call failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// What was asked is wrong (an invalid schedule, a name already taken); the message
    /// names the field.
    #[error("{0}")]
    Invalid(String),
}

impl OpsError {
    /// Whether running the same command again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Broker(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
            Self::Invalid(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryability_follows_the_cause() {
        assert!(SchedulerError::from(StoreError::Connection("down".into())).is_retryable());
        assert!(!SchedulerError::from(StoreError::Corrupt("bad".into())).is_retryable());
        assert!(OpsError::from(BrokerError::Connection("down".into())).is_retryable());
        assert!(!OpsError::from(BrokerError::Invalid("no".into())).is_retryable());
        let http = SchedulerError::Http {
            addr: "127.0.0.1:1".into(),
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        assert!(!http.is_retryable());
    }
}

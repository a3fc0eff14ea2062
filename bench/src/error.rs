//! Why a bench run failed.

use jobfleet_connect::ConnectError;
use jobfleet_producer::ProduceError;
use jobfleet_worker::WorkerError;

/// Why `jobfleet bench` could not measure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Flags that parse but do not make sense together.
    #[error("{0}")]
    Usage(String),
    /// The broker or store could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Publishing the bench's jobs failed.
    #[error(transparent)]
    Produce(#[from] ProduceError),
    /// A store call failed.
    #[error(transparent)]
    Store(#[from] jobfleet_common::StoreError),
    /// The bench's worker stopped with an error.
    #[error("worker: {0}")]
    Worker(#[from] WorkerError),
    /// A measurement failed: a baseline client error, a timeout, a panicked task.
    #[error("{0}")]
    Task(String),
}

/// Shorthand for bench results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

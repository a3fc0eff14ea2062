//! The data kinds' errors, and which of them another attempt could fix.

use jobfleet_worker::JobError;

/// What went wrong in a data job.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The payload (or a file it names) is wrong: no retry helps.
    #[error("{field}: {reason}")]
    Invalid {
        /// The payload field, e.g. `schema.columns[2].type` or `target`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `[data]` configuration is wrong.
    #[error("{0}")]
    Config(String),
    /// Reading or writing storage failed; another attempt may succeed.
    #[error("storage: {0}")]
    Io(String),
    /// Something in storage is not what this version of jobfleet wrote.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The input was read but is not good enough (too many rejected rows, one class).
    #[error("{0}")]
    Rejected(String),
    /// Another holder with a newer fencing token wrote first: this attempt is stale.
    #[error("{0}")]
    Stale(String),
    /// The job was cancelled (timeout, cancel request, shutdown).
    #[error("cancelled")]
    Cancelled,
}

impl DataError {
    /// An invalid payload field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<DataError> for JobError {
    fn from(e: DataError) -> Self {
        match e {
            DataError::Io(_) | DataError::Stale(_) | DataError::Cancelled => {
                JobError::retryable(e.to_string())
            }
            DataError::Invalid { .. }
            | DataError::Config(_)
            | DataError::Corrupt(_)
            | DataError::Rejected(_) => JobError::permanent(e.to_string()),
        }
    }
}

impl From<parquet::errors::ParquetError> for DataError {
    fn from(e: parquet::errors::ParquetError) -> Self {
        Self::Io(format!("parquet: {e}"))
    }
}

impl From<arrow_schema::ArrowError> for DataError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        Self::Io(format!("arrow: {e}"))
    }
}

/// A blocking task that panicked or was cancelled.
pub(crate) fn joined<T>(
    r: Result<Result<T, DataError>, tokio::task::JoinError>,
) -> Result<T, DataError> {
    r.map_err(|e| DataError::Io(format!("the data task stopped: {e}")))?
}

//! Every way a `jobfleet` command can fail, with the exit code each one ends the process
//! with and whether running the command again could help.
//!
//! Exit codes: `2` when what was asked is wrong (configuration, flags, a backend that
//! cannot serve the command), `1` when the command ran and failed, `130` when a second
//! Ctrl-C/SIGTERM cut the shutdown short.

use std::path::PathBuf;
use std::time::Duration;

use jobfleet_common::config::ConfigError;
use jobfleet_common::shutdown::Interrupted;
use jobfleet_common::StoreError;
use jobfleet_connect::ConnectError;
use jobfleet_producer::ProduceError;
use jobfleet_scheduler::{OpsError, SchedulerError};
use jobfleet_worker::WorkerError;

use crate::dev_summary::DevSummary;

/// What the embedded backend cannot do, said once so every command refuses alike.
pub const EMBEDDED_HINT: &str =
    "the embedded backend lives inside one process; use `jobfleet dev`, or set --broker/--store";

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; the message names the key.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The command needs shared services but the configuration names the embedded backend.
    #[error("`jobfleet {command}` cannot run on the embedded backend: {EMBEDDED_HINT}")]
    EmbeddedOnly {
        /// The command that refused, e.g. `worker`.
        command: &'static str,
    },
    /// Flags that parse but do not make sense together.
    #[error("{0}")]
    Usage(String),
    /// The broker or store could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A store call failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Publishing jobs failed.
    #[error(transparent)]
    Produce(#[from] ProduceError),
    /// An operator function (cancel, dead letters, depths) failed.
    #[error(transparent)]
    Ops(#[from] OpsError),
    /// The data kinds cannot start (`[data]`), or `sample-data` failed.
    #[cfg(feature = "data")]
    #[error("data: {0}")]
    Data(#[from] jobfleet_data::DataError),
    /// A worker stopped with an error.
    #[error("worker: {0}")]
    Worker(#[from] WorkerError),
    /// The scheduler stopped with an error.
    #[error("scheduler: {0}")]
    Scheduler(#[from] SchedulerError),
    /// A jobs file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A line of a jobs file is not a valid job; nothing from its batch was published.
    #[error("line {line}: {reason} ({published} jobs from earlier lines were enqueued)")]
    BadLine {
        /// The line number, from 1.
        line: usize,
        /// The decode or validation error.
        reason: String,
        /// Jobs published before the bad batch.
        published: usize,
    },
    /// A batch of a jobs file was not confirmed by the broker (or not recorded by the
    /// store): earlier batches were, and the message says how many and what to do.
    #[error(
        "{source}: the jobs of lines {}–{} were not all confirmed (some may have been \
         published and will run; none of them is left recorded as pending); the {confirmed} \
         jobs of the lines before were. Running the same file again is safe: a job keeps its \
         id, so none runs twice", lines.0, lines.1
    )]
    BatchNotConfirmed {
        /// Jobs confirmed before the failed batch.
        confirmed: usize,
        /// The first and last line of the failed batch.
        lines: (usize, usize),
        /// What the producer said.
        source: ProduceError,
    },
    /// The job or dead letter asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Part of what was asked for was done, part could not be (the output lists which).
    #[error("{0}")]
    Incomplete(String),
    /// `jobfleet dev --until-idle` ran out of time before every job finished.
    #[error("not idle after {}: {} of {} jobs unfinished", humantime::format_duration(*timeout), summary.unfinished, summary.total)]
    NotIdle {
        /// The `--timeout` that passed.
        timeout: Duration,
        /// Where the jobs were when time ran out.
        summary: Box<DevSummary>,
    },
    /// A task of the in-process fleet panicked.
    #[error("a fleet task failed: {0}")]
    Task(String),
    /// A second signal arrived while shutting down.
    #[error("interrupted again during shutdown; exiting without waiting")]
    Interrupted,
}

impl From<Interrupted> for Error {
    fn from(_: Interrupted) -> Self {
        Self::Interrupted
    }
}

impl From<jobfleet_worker::Error> for Error {
    fn from(e: jobfleet_worker::Error) -> Self {
        use jobfleet_worker::Error as Worker;
        match e {
            Worker::Config(e) => Self::Config(e),
            Worker::Connect(e) => Self::Connect(e),
            Worker::Run(e) => Self::Worker(e),
            Worker::Interrupted(_) => Self::Interrupted,
        }
    }
}

impl From<jobfleet_bench::Error> for Error {
    fn from(e: jobfleet_bench::Error) -> Self {
        use jobfleet_bench::Error as Bench;
        match e {
            Bench::Usage(message) => Self::Usage(message),
            Bench::Connect(e) => Self::Connect(e),
            Bench::Produce(e) => Self::Produce(e),
            Bench::Store(e) => Self::Store(e),
            Bench::Worker(e) => Self::Worker(e),
            Bench::Task(message) => Self::Task(message),
        }
    }
}

/// Shorthand for command results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::EmbeddedOnly { .. } | Self::Usage(_) => 2,
            Self::Ops(OpsError::Invalid(_)) => 2,
            Self::Connect(
                ConnectError::NotBuilt { .. }
                | ConnectError::Refused { .. }
                | ConnectError::NotDurable(_)
                | ConnectError::Mixed
                | ConnectError::EmbeddedAlone { .. },
            ) => 2,
            #[cfg(feature = "data")]
            Self::Data(
                jobfleet_data::DataError::Config(_) | jobfleet_data::DataError::Invalid { .. },
            ) => 2,
            Self::Interrupted => 130,
            _ => 1,
        }
    }

    /// Whether running the same command again later could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect(ConnectError::Unreachable { .. }) => true,
            Self::Store(e) => e.is_retryable(),
            Self::Produce(e) | Self::BatchNotConfirmed { source: e, .. } => e.is_retryable(),
            Self::Ops(e) => e.is_retryable(),
            Self::Worker(e) => e.is_retryable(),
            Self::Scheduler(e) => e.is_retryable(),
            Self::NotIdle { .. } | Self::Task(_) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_problems_exit_2_and_are_not_retryable() {
        let e = Error::from(ConfigError {
            key: "worker.concurrency".into(),
            reason: "x".into(),
        });
        assert_eq!(e.exit_code(), 2);
        assert!(!e.is_retryable());
        assert_eq!(e.to_string(), "config key `worker.concurrency`: x");
        let e = Error::EmbeddedOnly { command: "worker" };
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("use `jobfleet dev`"), "{e}");
    }

    #[test]
    fn runtime_failures_exit_1() {
        let e = Error::from(StoreError::Connection("down".into()));
        assert_eq!(e.exit_code(), 1);
        assert!(e.is_retryable());
        let e = Error::BadLine {
            line: 7,
            reason: "bad".into(),
            published: 500,
        };
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().starts_with("line 7: bad"), "{e}");
        let e = Error::BatchNotConfirmed {
            confirmed: 1000,
            lines: (1001, 1500),
            source: ProduceError::Broker(jobfleet_common::BrokerError::Connection(
                "connection reset".into(),
            )),
        };
        assert_eq!(e.exit_code(), 1);
        assert!(e.is_retryable());
        let text = e.to_string();
        for needle in [
            "connection reset",
            "lines 1001–1500",
            "the 1000 jobs",
            "again is safe",
        ] {
            assert!(text.contains(needle), "{needle:?} in {text}");
        }
    }
}

//! A worker of your own, as a service: the configuration `jobfleet worker` reads, your
//! handlers (with or without the built-in kinds), the backends the configuration names,
//! and the same drain on SIGTERM or Ctrl-C.
//!
//! ```no_run
//! use jobfleet_worker::{JobContext, JobError, Worker};
//!
//! async fn resize(ctx: JobContext) -> Result<(), JobError> {
//!     let width: u32 = ctx.payload_json()?;
//!     if width == 0 {
//!         return Err(JobError::permanent("width must be positive"));
//!     }
//!     Ok(())
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), jobfleet_worker::Error> {
//!     let worker = Worker::from_env()?.handler_fn("resize", resize);
//!     let _spans = jobfleet_worker::init_logging(worker.config())?;
//!     worker.run_until_signal().await
//! }
//! ```

use std::future::Future;
use std::sync::Arc;

use jobfleet_common::config::{ConfigError, LogFormat};
use jobfleet_common::shutdown::{self, Interrupted};
use jobfleet_common::{Backends, Config};
use jobfleet_connect::ConnectError;
use tokio_util::sync::CancellationToken;

use crate::otel::{self, OtelGuard};
use crate::{Handler, JobContext, JobError, Registry, WorkerError};

/// Why a [`Worker`] could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; the message names the key.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The broker or store could not be reached, or this build lacks its backend.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The worker could not start or had to stop.
    #[error("worker: {0}")]
    Run(#[from] WorkerError),
    /// A second signal arrived before the running jobs drained.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
}

impl Error {
    /// Whether starting again later can help (a service that was down, say).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect(e) => e.is_retryable(),
            Self::Run(e) => e.is_retryable(),
            Self::Config(_) | Self::Interrupted(_) => false,
        }
    }
}

/// A worker to configure and run: [`Worker::from_env`] or [`Worker::new`], handlers,
/// then [`Worker::run_until_signal`] (or [`Worker::run`] with a token of your own).
pub struct Worker {
    config: Config,
    registry: Registry,
    backends: Option<Backends>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queues", &self.config.worker.queues)
            .field("kinds", &self.registry.kinds())
            .field("backends", &self.backends)
            .finish()
    }
}

impl Worker {
    /// A worker on the configuration an operator gives `jobfleet worker`: the file
    /// `JOBFLEET_CONFIG` names, then the `JOBFLEET_*` variables. No handlers yet.
    pub fn from_env() -> Result<Self, Error> {
        Ok(Self::new(Config::from_env()?))
    }

    /// A worker on `config`, with no handlers yet.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            registry: Registry::new(),
            backends: None,
        }
    }

    /// Adds the built-in kinds (`echo`, `sleep`, `flaky`, `fail`) beside yours.
    pub fn with_builtins(mut self) -> Self {
        let mut builtins = Registry::with_builtins();
        builtins.merge(std::mem::take(&mut self.registry));
        self.registry = builtins;
        self
    }

    /// Runs jobs of `kind` with `handler` (replacing an earlier one for `kind`).
    pub fn handler(mut self, kind: impl Into<String>, handler: impl Handler + 'static) -> Self {
        self.registry.register(kind, handler);
        self
    }

    /// Runs jobs of `kind` with an async function of the job's context.
    pub fn handler_fn<F, Fut>(mut self, kind: impl Into<String>, f: F) -> Self
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        self.registry.register_fn(kind, f);
        self
    }

    /// The registry, for what the builder methods do not cover (e.g.
    /// [`Registry::on_settled`]).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Runs on `backends` instead of connecting to the ones the configuration names
    /// (tests, or one process that also produces on the embedded backend).
    pub fn on(mut self, backends: Backends) -> Self {
        self.backends = Some(backends);
        self
    }

    /// The configuration the worker runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Connects (unless given backends), consumes `worker.queues` until `shutdown` is
    /// cancelled, then drains exactly as `jobfleet worker` does: running jobs get
    /// `worker.grace_period` to finish, the rest are handed back. A connection it opened
    /// itself is closed at the end; backends given with [`Worker::on`] are left open.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        // Backends handed in with `on` may be shared: only close what this call opened.
        let (backends, owned) = match self.backends {
            Some(backends) => (backends, false),
            None => (
                jobfleet_connect::connect_shared(&self.config, "worker").await?,
                true,
            ),
        };
        tracing::info!(
            queues = ?self.config.worker.queues,
            concurrency = self.config.worker.concurrency,
            kinds = ?self.registry.kinds(),
            backends = ?backends,
            "worker starting"
        );
        let broker = backends.broker.clone();
        let out = crate::run(
            Arc::new(self.config),
            backends,
            Arc::new(self.registry),
            shutdown,
        )
        .await;
        if owned {
            broker.close().await;
        }
        out?;
        tracing::info!("worker stopped");
        Ok(())
    }

    /// [`Worker::run`] until SIGTERM or Ctrl-C; a second signal stops waiting for the
    /// drain: the running jobs are stopped and handed back at once (within
    /// [`shutdown::FORCED_EXIT_GRACE`]), their records saying the worker was forced to
    /// exit, and it returns [`Error::Interrupted`].
    pub async fn run_until_signal(self) -> Result<(), Error> {
        shutdown::run_until_signal(|token| self.run(token)).await
    }
}

/// Logs `tracing` events to stderr at `log.level` (or `RUST_LOG`), as text or JSON
/// (`log.format`), as `jobfleet worker` does, and exports job spans to
/// `log.otlp_endpoint` when it is set (the `otel` feature). Keep the returned guard until
/// the process ends: dropping it flushes the last spans. A second call keeps the first
/// subscriber.
pub fn init_logging(config: &Config) -> Result<OtelGuard, Error> {
    use tracing_subscriber::Layer;

    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| config.log.level.clone());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match config.log.format {
        LogFormat::Json => lines.json().boxed(),
        LogFormat::Text => lines.boxed(),
    };
    Ok(otel::install(filter, lines, Some(&config.log))?)
}

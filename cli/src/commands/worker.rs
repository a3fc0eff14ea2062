//! `jobfleet worker`: one worker process on shared services, with the built-in job kinds,
//! until SIGTERM or Ctrl-C.

use std::sync::Arc;

use jobfleet_common::Config;
use jobfleet_worker::Registry;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::global::connect_shared;

/// Connects and runs the worker until `shutdown` is cancelled and its jobs have drained.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    run_with(config, Registry::with_builtins(), shutdown).await
}

/// Runs a worker exactly as `jobfleet worker` does, but with the handlers in `registry`:
/// the entry point of a worker binary that brings its own job kinds.
///
/// It connects to the shared services `config` names (refusing the embedded backend),
/// consumes `worker.queues` until `shutdown` is cancelled, then drains. A binary of your
/// own needs little more than this:
///
/// ```no_run
/// use jobfleet::{logging, shutdown, GlobalArgs};
/// use jobfleet_worker::Registry;
///
/// # fn main() -> Result<(), jobfleet::Error> {
/// let config = GlobalArgs::default().load_config()?; // the file and JOBFLEET_* variables
/// logging::init(&logging::choose(&config, logging::Profile::Service, None, None))?;
/// let mut registry = Registry::with_builtins();
/// registry.register_fn("resize", |ctx| async move { ctx.progress(1.0).await; Ok(()) });
/// let runtime = tokio::runtime::Runtime::new().map_err(|e| jobfleet::Error::Task(e.to_string()))?;
/// runtime.block_on(shutdown::run_until_signal(|token| {
///     jobfleet::commands::worker::run_with(config, registry, token)
/// }))
/// # }
/// ```
pub async fn run_with(
    config: Config,
    registry: Registry,
    shutdown: CancellationToken,
) -> Result<()> {
    let backends = connect_shared(&config, "worker").await?;
    tracing::info!(
        queues = ?config.worker.queues,
        concurrency = config.worker.concurrency,
        kinds = ?registry.kinds(),
        backends = ?backends,
        "worker starting"
    );
    jobfleet_worker::run(Arc::new(config), backends, Arc::new(registry), shutdown).await?;
    tracing::info!("worker stopped");
    Ok(())
}

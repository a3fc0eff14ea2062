//! `jobfleet worker`: one worker process on shared services, with the built-in job kinds,
//! until SIGTERM or Ctrl-C. It is a [`Worker`] from `jobfleet-worker`, the same API a
//! worker binary with job kinds of its own uses (see `examples/`).

use jobfleet_common::Config;
use jobfleet_worker::{Registry, Worker};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// Connects and runs the worker until `shutdown` is cancelled and its jobs have drained.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let registry = crate::kinds::registry(&config)?;
    run_with(config, registry, shutdown).await
}

/// Runs a worker exactly as `jobfleet worker` does, but with the handlers in `registry`
/// (the crash tests' `testfleet` adds its kinds this way). A binary of your own needs
/// none of this crate: `jobfleet_worker::Worker::from_env()?.handler(..).run_until_signal()`.
pub async fn run_with(
    config: Config,
    registry: Registry,
    shutdown: CancellationToken,
) -> Result<()> {
    if config.broker.is_embedded() || config.store.is_embedded() {
        return Err(Error::EmbeddedOnly { command: "worker" });
    }
    // The worker connects (and closes, flushing, when it stops) by itself.
    let mut worker = Worker::new(config);
    worker.registry_mut().merge(registry);
    Ok(worker.run(shutdown).await?)
}

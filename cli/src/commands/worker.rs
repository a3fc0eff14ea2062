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
    let backends = connect_shared(&config, "worker").await?;
    let registry = Registry::with_builtins();
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

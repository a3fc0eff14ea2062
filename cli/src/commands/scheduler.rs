//! `jobfleet scheduler`: the scheduler role on shared services (delayed set, retries,
//! dead letters, optional HTTP endpoint) until SIGTERM or Ctrl-C.

use std::sync::Arc;

use jobfleet_common::Config;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::global::connect_shared;

/// Connects and runs the scheduler until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let backends = connect_shared(&config, "scheduler").await?;
    tracing::info!(
        tick = ?config.scheduler.tick,
        http = config.scheduler.http.as_deref().unwrap_or("off"),
        backends = ?backends,
        "scheduler starting"
    );
    jobfleet_scheduler::run(Arc::new(config), backends, shutdown).await?;
    tracing::info!("scheduler stopped");
    Ok(())
}

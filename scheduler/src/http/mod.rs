//! The scheduler's HTTP endpoint (`scheduler.http`): the probes every process serves
//! (`/healthz`, `/readyz`, `/metrics`, see `jobfleet_http`), the JSON API under
//! `/api/`, and the dashboard page at `/`.
//!
//! - `auth`: who may use the API and the page: the access token (`scheduler.http_token`,
//!   as a bearer header or the cookie `/login` sets), the origin and host checks.
//! - `api`: the JSON API over [`crate::ops`] and the store.
//! - `dashboard`: the page and its script and style, built into the binary.
//!
//! The readiness probe asks the whole store, as every process's does, and is made at the
//! scheduler's entry; the API and the metrics refresh hold only [`OperatorBackends`],
//! whose store is an [`OperatorStore`](jobfleet_common::store::OperatorStore): what the
//! operator commands may touch, no more.
//!
//! The probes need no token (they show counts and queue names, and Kubernetes and
//! Prometheus call them); everything else does, where a token is set. See
//! docs/dashboard.md.

mod api;
mod auth;
mod dashboard;

use std::sync::Arc;

use async_trait::async_trait;
use jobfleet_common::{telemetry, Config, OperatorBackends};
use jobfleet_http::{self as http, BackendsProbe, Probe};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::{OpsError, SchedulerError};
use crate::ops::{self, QueueDepth};

/// [`ops::queue_depths`] of `queues` on the operator's backends.
pub(crate) async fn queue_depths(
    backends: &OperatorBackends,
    queues: &[String],
) -> Result<Vec<QueueDepth>, OpsError> {
    ops::queue_depths(
        &*backends.store,
        &*backends.broker,
        &*backends.clock,
        queues,
    )
    .await
}

/// Listens on `addr`; failing here stops the scheduler before it starts anything.
pub(crate) async fn bind(addr: &str) -> Result<TcpListener, SchedulerError> {
    http::bind("scheduler.http", addr)
        .await
        .map_err(|e| SchedulerError::Http {
            addr: e.addr,
            source: e.source,
        })
}

/// The queues the endpoint reports: the configured ones; the store adds every queue with
/// delayed jobs or dead letters, and the API adds those live workers consume.
pub(crate) fn configured_queues(config: &Config) -> Vec<String> {
    let mut queues: Vec<String> = config.worker.queues.clone();
    queues.extend(config.queues.keys().cloned());
    queues.sort();
    queues.dedup();
    queues
}

/// The endpoint, made at the scheduler's entry: where it listens, what answers `/readyz`
/// and what everything else answers from.
pub(crate) struct Endpoint {
    pub listener: TcpListener,
    /// Asks the whole store, as every process's `/readyz` does.
    pub ready: BackendsProbe,
    /// What the API and `/metrics` may use.
    pub backends: OperatorBackends,
}

/// Serves until `shutdown`.
pub(crate) async fn serve(endpoint: Endpoint, config: &Config, shutdown: CancellationToken) {
    let Endpoint {
        listener,
        ready,
        backends,
    } = endpoint;
    let queues = Arc::new(configured_queues(config));
    let probe = Arc::new(SchedulerProbe {
        ready,
        backends: backends.clone(),
        queues: queues.clone(),
    });
    let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    let guard = auth::Guard::new(config.scheduler.http_token.clone(), loopback);
    let mut app = http::probes(probe);
    if let Some(guard) = guard {
        let state = api::ApiState {
            backends,
            queues,
            limits: Arc::new(config.limits.clone()),
        };
        let guarded = api::router(state).merge(dashboard::router()).layer(
            axum::middleware::from_fn_with_state(guard.clone(), auth::check),
        );
        app = app.merge(guarded).merge(auth::router(guard));
    } else {
        tracing::error!(
            "scheduler.http is not a loopback address and no scheduler.http_token is set: \
             serving the probes only, not the API or the dashboard"
        );
    }
    http::serve(listener, app, shutdown).await;
}

/// Ready when the broker and store answer; before `/metrics` renders, refreshes the
/// queue depth gauges and the live-worker gauge from the backends.
struct SchedulerProbe {
    ready: BackendsProbe,
    backends: OperatorBackends,
    queues: Arc<Vec<String>>,
}

#[async_trait]
impl Probe for SchedulerProbe {
    async fn ready(&self) -> Result<Vec<String>, String> {
        self.ready.ready().await
    }

    async fn refresh_metrics(&self) {
        let workers = match self.backends.store.workers().await {
            Ok(workers) => workers,
            Err(e) => {
                telemetry::backend_error("scheduler", "workers", &e);
                Vec::new()
            }
        };
        metrics::gauge!(telemetry::LIVE_WORKERS).set(workers.len() as f64);
        let queues = api::queues_with_workers(&self.queues, &workers);
        match queue_depths(&self.backends, &queues).await {
            Ok(depths) => {
                for d in depths {
                    telemetry::queue_depth(&d.queue, "ready", d.ready);
                    telemetry::queue_depth(&d.queue, "unacked", d.unacked);
                    telemetry::queue_depth(&d.queue, "delayed", Some(d.delayed));
                    telemetry::queue_depth(&d.queue, "dead", Some(d.dead));
                    telemetry::queue_oldest_waiting(&d.queue, d.oldest_waiting_ms);
                }
            }
            Err(e) => telemetry::backend_error("scheduler", "queue_depths", &e),
        }
    }
}

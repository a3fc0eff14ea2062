//! The HTTP endpoint every long-running jobfleet process can serve (`worker.http`,
//! `scheduler.http`, `jobfleet dev`):
//!
//! - `GET /healthz`: `ok` while the process runs (a liveness probe: it looks at nothing).
//! - `GET /readyz`: `ready` (200) when the broker and the store answer now and the store
//!   has no open data-loss incident; otherwise 503 and a one-line reason. A store that
//!   should persist but has stopped (its append-only file turned off after the roles
//!   started) is still ready, with the warning after `ready; WARNING:`: nothing is lost
//!   yet, and taking the fleet out of service would not bring the file back.
//! - `GET /metrics`: every metric the process recorded, in Prometheus text.
//!
//! These three need no token: they show counts and queue names, never job contents or
//! secrets, and Kubernetes probes and Prometheus scrape them. The scheduler adds its JSON
//! API and dashboard to the same router behind its access token.
//!
//! A crate of its own so that `jobfleet-common`, which every crate builds on, needs
//! neither axum nor the Prometheus exporter.
//!
//! # Layout
//!
//! - this file: the Prometheus [`recorder`], the [`Probe`] an endpoint asks and the
//!   [`BackendsProbe`] most roles use, [`bind`], the [`probes`] router and [`serve`].

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use jobfleet_common::{Backends, Route};

/// The Prometheus recorder jobfleet installed in this process, shared by every endpoint.
static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus recorder: installed by the first caller, unless the process
/// already installed a metrics recorder of its own (then `None`, and `/metrics` says so).
pub fn recorder() -> Option<PrometheusHandle> {
    RECORDER
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
}

/// What a process's endpoint asks before it answers `/readyz` and `/metrics`.
#[async_trait]
pub trait Probe: Send + Sync + 'static {
    /// `Ok` when the process can do its work now, with any warnings operators must
    /// see; otherwise why not, in one line.
    async fn ready(&self) -> Result<Vec<String>, String>;

    /// Refreshes gauges read from the backends (queue depths, say) before `/metrics`
    /// renders. Nothing by default.
    async fn refresh_metrics(&self) {}
}

/// Ready when the broker answers about `route` and the store answers with no open
/// data-loss incident; warns while a store that should persist does not.
pub struct BackendsProbe {
    backends: Backends,
    route: Route,
    require_persistence: bool,
}

impl BackendsProbe {
    /// A probe asking `backends`, the broker about `route` (one the process declares
    /// itself, so a broker that answers at all answers about it); `require_persistence`
    /// is `redis.require_persistence`.
    pub fn new(backends: Backends, route: Route, require_persistence: bool) -> Self {
        Self {
            backends,
            route,
            require_persistence,
        }
    }
}

#[async_trait]
impl Probe for BackendsProbe {
    async fn ready(&self) -> Result<Vec<String>, String> {
        let broker = self.backends.broker.depth(&self.route);
        let store = self.backends.store.data_loss_incident();
        let durability = self.backends.store.durability();
        let (broker, store, durability) = tokio::join!(broker, store, durability);
        match broker {
            // A refusal is an answer: the broker is reachable.
            Err(e) if e.is_retryable() => {
                return Err(format!("the broker does not answer: {e}"));
            }
            _ => {}
        }
        match store {
            Ok(None) => {
                // Unreadable now: the incident check above has just answered, so the
                // store is up; the next probe asks again.
                let Ok(Some(durability)) = durability else {
                    return Ok(Vec::new());
                };
                jobfleet_common::telemetry::store_persisting(durability.persisting);
                Ok(durability
                    .alarm(self.require_persistence)
                    .into_iter()
                    .collect())
            }
            Ok(Some(incident)) => Err(format!(
                "the store lost data (detected at Unix ms {} by {}); deal with it, then \
                 clear it with `jobfleet queues --ack-data-loss`",
                incident.detected_at_ms, incident.detected_by
            )),
            Err(e) => Err(format!("the store does not answer: {e}")),
        }
    }
}

/// Why an endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("config key `{key}`: cannot listen on {addr}: {source}")]
pub struct BindError {
    /// The config key that named the address.
    pub key: String,
    /// The address.
    pub addr: String,
    /// What the OS said.
    #[source]
    pub source: std::io::Error,
}

/// Listens on `addr` (named by the config key `key`).
pub async fn bind(key: &str, addr: &str) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        key: key.to_string(),
        addr: addr.to_string(),
        source,
    })
}

/// `/healthz`, `/readyz` and `/metrics` answered through `probe`. Installs the
/// Prometheus recorder now, so every metric recorded from here on is exported.
pub fn probes(probe: Arc<dyn Probe>) -> Router {
    let _ = recorder();
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(probe)
}

/// Serves `app` on `listener` until `shutdown`; errors are logged, never fatal.
pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP endpoint listening");
    }
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "HTTP endpoint stopped");
    }
}

async fn readyz(State(probe): State<Arc<dyn Probe>>) -> Response {
    match probe.ready().await {
        Ok(warnings) if warnings.is_empty() => "ready".into_response(),
        Ok(warnings) => {
            let text = format!("ready; WARNING: {}", warnings.join("; WARNING: "));
            text.replace('\n', " ").into_response()
        }
        Err(reason) => {
            let text = format!("not ready: {}", reason.replace('\n', " "));
            (StatusCode::SERVICE_UNAVAILABLE, text).into_response()
        }
    }
}

async fn metrics_text(State(probe): State<Arc<dyn Probe>>) -> Response {
    let Some(handle) = recorder() else {
        let text = "metrics unavailable: another metrics recorder is installed in this process";
        return (StatusCode::SERVICE_UNAVAILABLE, text).into_response();
    };
    probe.refresh_metrics().await;
    handle.render().into_response()
}

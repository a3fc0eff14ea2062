//! The scheduler's HTTP endpoint (`scheduler.http`): health, Prometheus metrics and
//! queue depths as JSON.
//!
//! - `GET /healthz`: `ok` while the scheduler runs.
//! - `GET /readyz`: `ready` (200) when the store answers and no data-loss incident is
//!   open; otherwise 503 and a one-line reason (see docs/architecture.md, "Store
//!   durability").
//! - `GET /metrics`: every metric this process recorded, in Prometheus text, with the
//!   queue depth gauges refreshed first.
//! - `GET /api/queues`: [`crate::ops::queue_depths`] of the configured queues as JSON.
//!
//! Metrics need a Prometheus recorder; the first scheduler that serves HTTP in a process
//! installs one, unless the process already installed a recorder of its own (then
//! `/metrics` answers 503 and says so).

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jobfleet_common::{telemetry, Backends, Config};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::SchedulerError;
use crate::ops;

/// The recorder this crate installed, shared by every scheduler in the process.
static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// What the handlers need.
#[derive(Clone)]
struct AppState {
    backends: Backends,
    queues: Arc<Vec<String>>,
    metrics: Option<PrometheusHandle>,
}

/// Listens on `addr`; failing here stops the scheduler before it starts anything.
pub(crate) async fn bind(addr: &str) -> Result<TcpListener, SchedulerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| SchedulerError::Http {
            addr: addr.to_string(),
            source,
        })
}

/// Serves until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    config: &Config,
    backends: Backends,
    shutdown: CancellationToken,
) {
    let mut queues: Vec<String> = config.worker.queues.clone();
    queues.extend(config.queues.keys().cloned());
    queues.sort();
    queues.dedup();
    let metrics = RECORDER
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone();
    let state = AppState {
        backends,
        queues: Arc::new(queues),
        metrics,
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api/queues", get(queues_json))
        .with_state(state);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "HTTP endpoint stopped");
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.backends.store.data_loss_incident().await {
        Ok(None) => "ready".into_response(),
        Ok(Some(incident)) => {
            let text = format!(
                "not ready: the store lost data (detected at Unix ms {} by {}); deal with \
                 it, then clear it with `jobfleet queues --ack-data-loss`",
                incident.detected_at_ms, incident.detected_by
            );
            (StatusCode::SERVICE_UNAVAILABLE, text).into_response()
        }
        Err(e) => {
            let text = format!("not ready: the store does not answer: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, text.replace('\n', " ")).into_response()
        }
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let Some(handle) = &state.metrics else {
        let text = "metrics unavailable: another metrics recorder is installed in this process";
        return (StatusCode::SERVICE_UNAVAILABLE, text).into_response();
    };
    match ops::queue_depths(&state.backends, &state.queues).await {
        Ok(depths) => {
            for d in depths {
                let states = [
                    ("ready", d.ready),
                    ("unacked", d.unacked),
                    ("delayed", Some(d.delayed)),
                    ("dead", Some(d.dead)),
                ];
                for (name, value) in states {
                    if let Some(value) = value {
                        metrics::gauge!(telemetry::QUEUE_DEPTH, "queue" => d.queue.clone(), "state" => name)
                            .set(value as f64);
                    }
                }
            }
        }
        Err(e) => telemetry::backend_error("scheduler", "queue_depths", &e),
    }
    handle.render().into_response()
}

async fn queues_json(State(state): State<AppState>) -> Response {
    match ops::queue_depths(&state.backends, &state.queues).await {
        Ok(depths) => Json(depths).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

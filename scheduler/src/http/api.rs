//! The JSON API under `/api/`, over [`crate::ops`] and the store. Reads are `GET`;
//! anything that changes the fleet is `POST` with a JSON body (see `auth`).
//!
//! | Route | What |
//! |---|---|
//! | `GET /api/overview` | queues with depths, live workers, fleet totals, the store's time |
//! | `GET /api/queues` | queue depths |
//! | `GET /api/workers` | live workers with their running jobs and counters |
//! | `GET /api/jobs/{id}` | a job's record, and its dead letter if it has one |
//! | `POST /api/jobs/{id}/cancel` | cancel a job |
//! | `GET /api/dead?queue=&kind=&error=&limit=` | dead letters, newest first, without bodies |
//! | `POST /api/dead/replay` | `{"ids": [...]}` or a filter: replay dead letters |
//! | `POST /api/dead/purge` | `{"ids": [...]}` or a filter: remove dead letters |
//! | `GET /api/schedules` | cron schedules with their next fire |
//! | `POST /api/schedules/{name}/{pause,resume,trigger}` | change or fire one |

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jobfleet_common::limits::Limits;
use jobfleet_common::store::{DeadFilter, DeadLetter, WorkerInfo};
use jobfleet_common::JobId;
use serde::{Deserialize, Serialize};

use super::auth::refuse;
use crate::error::OpsError;
use crate::ops;
use jobfleet_common::OperatorBackends;

/// Dead letters a list returns when the request does not say.
const DEFAULT_DEAD_LIMIT: usize = 100;
/// The most dead letters one list or one replay handles.
const MAX_DEAD_LIMIT: usize = 1_000;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub backends: OperatorBackends,
    pub queues: Arc<Vec<String>>,
    pub limits: Arc<Limits>,
}

/// The API's routes.
pub(crate) fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/overview", get(overview))
        .route("/api/queues", get(queues))
        .route("/api/workers", get(workers))
        .route("/api/jobs/{id}", get(job))
        .route("/api/jobs/{id}/cancel", post(cancel))
        .route("/api/dead", get(dead_list))
        .route("/api/dead/replay", post(dead_replay))
        .route("/api/dead/purge", post(dead_purge))
        .route("/api/schedules", get(schedules))
        .route("/api/schedules/{name}/{action}", post(schedule_action))
        .with_state(state)
}

/// `queues` plus every queue a live worker consumes, sorted.
pub(crate) fn queues_with_workers(queues: &[String], workers: &[WorkerInfo]) -> Vec<String> {
    let all: BTreeSet<&String> = queues
        .iter()
        .chain(workers.iter().flat_map(|w| &w.queues))
        .collect();
    all.into_iter().cloned().collect()
}

/// An operator function's error as a response: 503 when retrying can help, else 400.
fn failed(e: OpsError) -> Response {
    let status = if e.is_retryable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::BAD_REQUEST
    };
    refuse(status, &e.to_string())
}

fn bad_id(id: &str) -> Response {
    refuse(
        StatusCode::BAD_REQUEST,
        &format!("{id:?} is not a job id (a UUID)"),
    )
}

/// The fleet at a glance, in one request: what the dashboard polls.
#[derive(Serialize)]
struct Overview {
    /// The store's clock, Unix ms: what the page measures rates against.
    now_ms: i64,
    queues: Vec<ops::QueueDepth>,
    workers: Vec<WorkerInfo>,
    /// Jobs completed, as the store counts them (every worker that ever ran).
    completed: u64,
    /// Attempts failed, summed over live workers since each started.
    failed: u64,
    /// Jobs running now across live workers.
    running: usize,
}

async fn overview(State(s): State<ApiState>) -> Response {
    let workers = match s.backends.store.workers().await {
        Ok(w) => w,
        Err(e) => return failed(e.into()),
    };
    let now_ms = match s.backends.store.store_time_ms().await {
        Ok(now) => now,
        Err(e) => return failed(e.into()),
    };
    let names = queues_with_workers(&s.queues, &workers);
    match super::queue_depths(&s.backends, &names).await {
        Ok(mut queues) => {
            ops::count_failed(&mut queues, &workers);
            Json(Overview {
                now_ms,
                completed: queues.iter().map(|q| q.completed).sum(),
                queues,
                failed: workers.iter().map(|w| w.failed).sum(),
                running: workers.iter().map(|w| w.running).sum(),
                workers,
            })
            .into_response()
        }
        Err(e) => failed(e),
    }
}

async fn queues(State(s): State<ApiState>) -> Response {
    let workers = s.backends.store.workers().await.unwrap_or_default();
    let names = queues_with_workers(&s.queues, &workers);
    match super::queue_depths(&s.backends, &names).await {
        Ok(mut depths) => {
            ops::count_failed(&mut depths, &workers);
            Json(depths).into_response()
        }
        Err(e) => failed(e),
    }
}

async fn workers(State(s): State<ApiState>) -> Response {
    match s.backends.store.workers().await {
        Ok(workers) => Json(workers).into_response(),
        Err(e) => failed(e.into()),
    }
}

async fn job(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<JobId>() else {
        return bad_id(&id);
    };
    let store = &s.backends.store;
    let (record, dead) = tokio::join!(store.record(id), store.dead_get(id));
    match (record, dead) {
        (Ok(None), Ok(None)) => refuse(StatusCode::NOT_FOUND, &format!("no job {id}")),
        (Ok(record), Ok(dead)) => Json(serde_json::json!({
            "id": id,
            "record": record,
            // The body stays out: `jobfleet dlq show` prints it.
            "dead_letter": dead.as_ref().map(DeadLetter::summary),
        }))
        .into_response(),
        (Err(e), _) | (_, Err(e)) => failed(e.into()),
    }
}

async fn cancel(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<JobId>() else {
        return bad_id(&id);
    };
    match ops::cancel(&*s.backends.store, &*s.backends.clock, id).await {
        Ok(outcome) => {
            let outcome = match outcome {
                ops::CancelOutcome::WasWaiting => "cancelled".to_string(),
                ops::CancelOutcome::Requested => "requested".to_string(),
                ops::CancelOutcome::AlreadyFinished(state) => format!("already {state}"),
                ops::CancelOutcome::Unknown => "unknown".to_string(),
            };
            Json(serde_json::json!({ "id": id, "outcome": outcome })).into_response()
        }
        Err(e) => failed(e),
    }
}

/// A dead-letter filter and a limit, from a query string or a JSON body.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct DeadQuery {
    queue: Option<String>,
    kind: Option<String>,
    error: Option<String>,
    limit: Option<usize>,
    /// POST bodies only: the letters to act on; empty means every one the filter matches.
    ids: Vec<JobId>,
}

impl DeadQuery {
    fn filter(&self) -> DeadFilter {
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        DeadFilter {
            queue: nonempty(&self.queue),
            kind: nonempty(&self.kind),
            error: nonempty(&self.error),
        }
    }

    fn limit(&self) -> usize {
        self.limit
            .unwrap_or(DEFAULT_DEAD_LIMIT)
            .clamp(1, MAX_DEAD_LIMIT)
    }
}

async fn dead_list(State(s): State<ApiState>, Query(q): Query<DeadQuery>) -> Response {
    match ops::dlq_list(&*s.backends.store, &q.filter(), q.limit()).await {
        Ok(letters) => Json(letters).into_response(),
        Err(e) => failed(e),
    }
}

async fn dead_replay(State(s): State<ApiState>, Json(q): Json<DeadQuery>) -> Response {
    let limit = if q.ids.is_empty() {
        q.limit()
    } else {
        q.ids.len()
    };
    let b = &s.backends;
    let (store, broker, clock) = (&*b.store, &*b.broker, &*b.clock);
    match ops::dlq_replay(store, broker, clock, &s.limits, &q.filter(), &q.ids, limit).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => failed(e),
    }
}

async fn dead_purge(State(s): State<ApiState>, Json(q): Json<DeadQuery>) -> Response {
    if q.ids.is_empty() && q.filter() == DeadFilter::default() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "name the letters to purge: `ids`, or a `queue`, `kind` or `error` filter",
        );
    }
    match ops::dlq_purge(&*s.backends.store, &q.filter(), &q.ids).await {
        Ok(removed) => Json(serde_json::json!({ "removed": removed })).into_response(),
        Err(e) => failed(e),
    }
}

async fn schedules(State(s): State<ApiState>) -> Response {
    match ops::schedule_list(&*s.backends.store).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => failed(e),
    }
}

async fn schedule_action(
    State(s): State<ApiState>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let result = match action.as_str() {
        "pause" | "resume" => ops::schedule_pause(&*s.backends.store, &name, action == "pause")
            .await
            .map(|found| found.then(|| serde_json::json!({ "name": name, "done": action }))),
        "trigger" => ops::schedule_trigger(&*s.backends.store, &name)
            .await
            .map(|job| job.map(|id| serde_json::json!({ "name": name, "job": id }))),
        _ => {
            let message = format!("{action:?} is not an action: pause, resume or trigger");
            return refuse(StatusCode::NOT_FOUND, &message);
        }
    };
    match result {
        Ok(Some(body)) => Json(body).into_response(),
        Ok(None) => refuse(StatusCode::NOT_FOUND, &format!("no schedule {name:?}")),
        Err(e) => failed(e),
    }
}

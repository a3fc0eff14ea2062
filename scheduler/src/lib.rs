//! jobfleet's scheduler: the control plane that owns time and dead letters.
//!
//! [`run`] consumes the delayed, failed and dead routes into the store (the delayed set
//! and the dead letters), and releases due jobs from the delayed set to their ready
//! routes. Any number of schedulers may run against the same backends: the store's
//! claim-under-lease hands each due job to one of them. [`ops`] holds the operator
//! functions the `jobfleet` command calls (cancel, dead-letter list/replay/purge, queue
//! depths); they need no running scheduler.
//!
//! # Layout
//!
//! - `consumer`: consuming one route in batches; ack after the work, re-open on errors.
//! - `intake`: what the internal routes' consumers do first with a message: decode it
//!   and check it against the limits, as a worker does on a ready route.
//! - `delayed`: the delayed route into the delayed set.
//! - `failed`: the failed route: retry later, or dead after the last attempt.
//! - `dead_route`: the dead route into the dead-letter store.
//! - `release`: the loop that releases due jobs to their ready routes.
//! - `cron`: leader election and firing the schedules; `schedules` writes the config
//!   file's schedules into the store at start-up.
//! - `integrity`: the periodic check that the store has not lost its data.
//! - `http`: the optional HTTP endpoint: probes, metrics, the JSON API and the dashboard.
//! - `context`, `pause`: what the tasks share (the store as a `SchedulerStore`: the
//!   capabilities the loops use, no more), and backing off after errors.
//! - [`ops`]: operator functions.
//! - `error`: [`SchedulerError`] and [`OpsError`].

mod consumer;
mod context;
mod cron;
mod dead_route;
mod delayed;
mod error;
mod failed;
mod http;
mod intake;
mod integrity;
pub mod ops;
mod pause;
mod release;
mod schedules;

use std::sync::Arc;

use jobfleet_common::{telemetry, Backends, Config, Route};
use jobfleet_http::BackendsProbe;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::{OpsError, SchedulerError};

use context::Context;
use pause::Pause;

/// Runs a scheduler until `shutdown` is cancelled and all its tasks have finished.
///
/// With `scheduler.http` set it also serves health, metrics and queue depths there. A
/// schedule in the configuration that does not compile, or an address it cannot listen
/// on, stops it at once, before anything else starts. Backend errors never end it: every task logs them, backs off and
/// carries on.
pub async fn run(
    config: Arc<Config>,
    backends: Backends,
    shutdown: CancellationToken,
) -> Result<(), SchedulerError> {
    let listener = match &config.scheduler.http {
        Some(addr) => Some(http::bind(addr).await?),
        None => None,
    };
    run_serving(config, backends, listener, shutdown).await
}

/// [`run`], serving the HTTP endpoint on `listener` (bound by the caller, which then
/// knows its address) instead of on `scheduler.http`.
///
/// `backends` is narrowed here, once: the loops keep a [`SchedulerStore`] in their
/// context, the HTTP API an [`OperatorStore`]; only the readiness probe sees the whole
/// store.
///
/// [`SchedulerStore`]: jobfleet_common::store::SchedulerStore
/// [`OperatorStore`]: jobfleet_common::store::OperatorStore
pub async fn run_serving(
    config: Arc<Config>,
    backends: Backends,
    listener: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
) -> Result<(), SchedulerError> {
    // `Config::validate` cannot read cron expressions (common has no parser): a library
    // caller that skipped the CLI's check still gets the refusal, with the key.
    jobfleet_cron::check_config(&config)?;
    let names = (backends.broker.name(), backends.store.name());
    let endpoint = listener.map(|listener| endpoint(listener, &config, &backends));
    let ctx = Arc::new(Context::new(config, backends));
    if !declare_routes(&ctx, &shutdown).await {
        return Ok(());
    }
    let tracker = TaskTracker::new();
    let (ctx_cron, shutdown_cron) = (ctx.clone(), shutdown.clone());
    if let Some(endpoint) = endpoint {
        let (config, shutdown) = (ctx.config.clone(), shutdown.clone());
        tracker.spawn(async move { http::serve(endpoint, &config, shutdown).await });
    }
    tracker.spawn(consumer::consume(
        ctx.clone(),
        Route::Delayed,
        delayed::DelayedIntake,
        shutdown.clone(),
    ));
    tracker.spawn(consumer::consume(
        ctx.clone(),
        Route::Failed,
        failed::FailedIntake,
        shutdown.clone(),
    ));
    tracker.spawn(consumer::consume(
        ctx.clone(),
        Route::Dead,
        dead_route::DeadIntake,
        shutdown.clone(),
    ));
    tracker.spawn(release::run(ctx.clone(), shutdown.clone()));
    tracker.spawn(async move {
        // Fire nothing before the config file's schedules are in the store.
        if schedules::apply_config(&ctx_cron, &shutdown_cron).await {
            cron::run(ctx_cron, shutdown_cron).await;
        }
    });
    tracker.spawn(integrity::watch(ctx.clone(), shutdown.clone()));
    tracker.close();
    tracing::info!(broker = names.0, store = names.1, "scheduler running");
    tracker.wait().await;
    tracing::info!("scheduler stopped");
    Ok(())
}

/// The HTTP endpoint on `listener`: its readiness probe gets the whole `backends`, the
/// API and `/metrics` the store narrowed to an `OperatorStore`.
fn endpoint(
    listener: tokio::net::TcpListener,
    config: &Config,
    backends: &Backends,
) -> http::Endpoint {
    let required = config.redis.require_persistence;
    http::Endpoint {
        listener,
        ready: BackendsProbe::new(backends.clone(), Route::Dead, required),
        backends: backends.operator(),
    }
}

/// Declares the shared routes, retrying until it works; false if shut down first.
async fn declare_routes(ctx: &Context, shutdown: &CancellationToken) -> bool {
    let mut pause = Pause::new();
    while !shutdown.is_cancelled() {
        match ctx.broker.declare(&[]).await {
            Ok(()) => return true,
            Err(e) => {
                telemetry::backend_error("scheduler", "declare", &e);
                pause.wait(shutdown).await;
            }
        }
    }
    false
}

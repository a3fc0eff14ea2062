//! The worker's main loop: consumers on every queue merged into one stream, at most
//! `worker.concurrency` jobs at once, the background tasks, and the graceful drain.
//!
//! A permit is taken before a delivery is, so the worker never holds a delivery it has no
//! room to start. On shutdown the consumers are dropped first: the broker gives back
//! whatever sat in their prefetch buffers, while deliveries already held stay settleable.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{SelectAll, StreamExt};
use jobfleet_common::broker::{Consumer, Route};
use jobfleet_common::{store, telemetry, Backends, Config};
use jobfleet_http as http;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::WorkerError;
use crate::handler::Registry;
use crate::running::StopReason;
use crate::state::WorkerState;
use crate::{background, delivery, store_time};

/// How long to wait after a consumer reports a lost connection before reading it again.
const CONSUME_PAUSE: Duration = Duration::from_secs(1);

/// Runs a worker until `shutdown` is cancelled, then drains it and returns.
///
/// Consumes `config.worker.queues`, running each job through its handler in `registry`.
/// On shutdown it stops taking deliveries, hands back those it has not started, lets
/// running jobs finish for up to `worker.grace_period`, then stops the rest and hands
/// their deliveries back too (no attempt counted). It returns once every task it spawned
/// has finished. An error means it could not start, or the broker closed every consumer.
///
/// Run by [`jobfleet_common::shutdown::run_until_signal`] (as `jobfleet worker` is), a
/// second signal cuts the drain short: the running jobs are stopped at once and handed
/// back the same way, their records saying the worker was forced to exit (see
/// [`jobfleet_common::shutdown::forced`]).
pub async fn run(
    config: Arc<Config>,
    backends: Backends,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    // Read now, in the caller's scope: the drain runs on in tasks of its own.
    let forced = jobfleet_common::shutdown::forced();
    if registry.is_empty() {
        return Err(WorkerError::NoHandlers);
    }
    let queues = config.worker.queues.clone();
    let listener = match &config.worker.http {
        Some(addr) => Some(http::bind("worker.http", addr).await?),
        None => None,
    };
    backends
        .broker
        .declare(&queues)
        .await
        .map_err(WorkerError::Declare)?;
    // Operators' views list the worker's queues (best effort: they are only views).
    if let Err(e) = backends.store.queues_add(&queues).await {
        telemetry::backend_error("worker", "queues_add", &e);
    }
    // From here on "now" is the store's time (see `store_time`).
    let local = backends.clock.clone();
    let (clock, store_clock) = store_time::follow(backends.store.clone(), local).await?;
    let backends = Backends { clock, ..backends };
    let prefetch = config.worker.effective_prefetch();
    let mut consumers = SelectAll::new();
    for queue in &queues {
        let route = Route::Ready(queue.clone());
        let consumer = backends
            .broker
            .consume(&route, prefetch)
            .await
            .map_err(|source| WorkerError::Consume {
                queue: queue.clone(),
                source,
            })?;
        consumers.push(consumer);
    }
    // A child token: the worker can start its own drain when the consumers end. From
    // here on the worker holds the store narrowed to its bundle; only the probe below
    // keeps the whole (it answers for the process, as every role's does).
    let worker = Arc::new(WorkerState::new(
        config,
        backends.clone(),
        registry,
        shutdown.child_token(),
    ));
    tracing::info!(worker = %worker.id, ?queues, prefetch, "worker started");
    let required = worker.config.redis.require_persistence;
    store::announce_durability(worker.store.as_ref(), "worker", required).await;

    let stop_background = CancellationToken::new();
    let background_tasks = TaskTracker::new();
    background_tasks.spawn(background::heartbeat(
        worker.clone(),
        stop_background.clone(),
    ));
    background_tasks.spawn(background::cancel_poll(
        worker.clone(),
        stop_background.clone(),
    ));
    background_tasks.spawn(store_clock.run(stop_background.clone()));
    if let Some(listener) = listener {
        // Ready while the broker answers about this worker's first queue and the store
        // answers; served until the drain is over.
        let route = queues.first().cloned().map_or(Route::Dead, Route::Ready);
        let required = worker.config.redis.require_persistence;
        let probe = Arc::new(http::BackendsProbe::new(backends, route, required));
        let app = http::probes(probe);
        background_tasks.spawn(http::serve(listener, app, stop_background.clone()));
    }

    let jobs = TaskTracker::new();
    let consumers_ended = consume(&worker, &mut consumers, &jobs).await;
    drop(consumers);
    drain(&worker, &jobs, &forced).await;

    stop_background.cancel();
    background_tasks.close();
    background_tasks.wait().await;
    tracing::info!(worker = %worker.id, "worker stopped");
    if consumers_ended {
        Err(WorkerError::ConsumersClosed)
    } else {
        Ok(())
    }
}

/// Takes deliveries and spawns a job task for each until shutdown; true if instead every
/// consumer ended.
async fn consume(
    worker: &Arc<WorkerState>,
    consumers: &mut SelectAll<Consumer>,
    jobs: &TaskTracker,
) -> bool {
    let limit = Arc::new(Semaphore::new(worker.config.worker.concurrency));
    let stop = &worker.shutdown;
    loop {
        let permit = tokio::select! {
            biased;
            () = stop.cancelled() => return false,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => return false,
            },
        };
        let next = tokio::select! {
            biased;
            () = stop.cancelled() => return false,
            next = consumers.next() => next,
        };
        match next {
            None => {
                tracing::error!("every consumer ended; the worker stops");
                return true;
            }
            Some(Ok(delivery)) => {
                let worker = worker.clone();
                jobs.spawn(async move {
                    delivery::process(worker, delivery).await;
                    drop(permit);
                });
            }
            Some(Err(e)) => {
                telemetry::backend_error("worker", "consume", &e);
                tokio::select! {
                    () = stop.cancelled() => return false,
                    () = tokio::time::sleep(CONSUME_PAUSE) => {}
                }
            }
        }
    }
}

/// Lets running jobs finish for the grace period, then stops the rest; their tasks hand
/// the deliveries back themselves, as do tasks that had not started their handler yet.
/// `forced` (a second signal) stops them at once, whatever is left of the grace period.
async fn drain(worker: &WorkerState, jobs: &TaskTracker, forced: &CancellationToken) {
    worker.shutdown.cancel();
    jobs.close();
    let grace = worker.config.worker.grace_period;
    tracing::info!(running = worker.running.len(), ?grace, "draining");
    tokio::select! {
        () = jobs.wait() => return,
        () = tokio::time::sleep(grace) => {
            tracing::warn!(
                running = worker.running.len(),
                "grace period over; stopping the jobs still running and handing them back"
            );
            worker.running.stop_all(StopReason::Shutdown);
        }
        () = forced.cancelled() => force(worker),
    }
    jobs.wait().await;
}

/// Stops every running job at once for a forced exit.
fn force(worker: &WorkerState) {
    tracing::warn!(
        running = worker.running.len(),
        "forced to exit: stopping the jobs still running and handing them back"
    );
    worker.running.stop_all(StopReason::ForcedExit);
}

//! The worker's two periodic tasks beside the jobs: the heartbeat that tells the fleet it
//! is alive (and, with each beat, checks that the store has not lost its data), and the
//! cancel poll that stops handlers whose jobs were cancelled.
//!
//! Both run until `stop` is cancelled, which the runtime does only after every job task
//! has finished, so a job cancelled during the drain is still noticed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::store::{IntegrityCheck, WorkerInfo};
use jobfleet_common::telemetry;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::ms::ms_u64;
use crate::running::StopReason;
use crate::state::WorkerState;

/// Reports the worker alive every `worker.heartbeat` for three intervals, and gone at the end.
/// After each beat it checks the store's integrity: a store that lost its data logs,
/// counts and records the loss itself (see `jobfleet_common::store::Integrity`).
pub(crate) async fn heartbeat(worker: Arc<WorkerState>, stop: CancellationToken) {
    let every = worker.config.worker.heartbeat;
    // The id already names the host and pid.
    let me = format!("worker {}", worker.id);
    // The embedded store has nothing to check; asking once is enough to know.
    let mut integrity_applies = true;
    let ttl_ms = ms_u64(every * 3);
    let store = &worker.store;
    let mut tick = ticker(every);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let info = WorkerInfo {
            id: worker.id.to_string(),
            host: worker.host.clone(),
            pid: std::process::id(),
            queues: worker.config.worker.queues.clone(),
            concurrency: worker.config.worker.concurrency,
            running: worker.running.len(),
            started_at_ms: worker.started_at_ms,
            last_seen_ms: worker.clock.now_ms(),
            running_jobs: {
                let mut ids = worker.running.ids();
                ids.truncate(WorkerInfo::MAX_LISTED);
                ids
            },
            completed: worker.completed.load(Ordering::Relaxed),
            failed: worker.failed.load(Ordering::Relaxed),
            by_queue: worker
                .by_queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            result = store.heartbeat(&info, ttl_ms) => {
                if let Err(e) = result {
                    telemetry::backend_error("worker", "heartbeat", &e);
                }
            }
        }
        if !integrity_applies {
            continue;
        }
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            result = store.check_integrity(&me) => match result {
                Ok(IntegrityCheck::NotApplicable) => integrity_applies = false,
                Ok(IntegrityCheck::Intact | IntegrityCheck::DataLost(_)) => {}
                Err(e) => telemetry::backend_error("worker", "check_integrity", &e),
            },
        }
    }
    if let Err(e) = store.worker_gone(&worker.id).await {
        telemetry::backend_error("worker", "worker_gone", &e);
    }
}

/// Every `worker.cancel_poll`, asks the store in one call which running jobs were
/// cancelled, and stops their handlers.
pub(crate) async fn cancel_poll(worker: Arc<WorkerState>, stop: CancellationToken) {
    let mut tick = ticker(worker.config.worker.cancel_poll);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let ids = worker.running.ids();
        if ids.is_empty() {
            continue;
        }
        let flags = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            result = worker.store.cancel_requested(&ids) => result,
        };
        match flags {
            Ok(flags) => {
                for (id, _) in ids.iter().zip(flags).filter(|(_, cancel)| *cancel) {
                    tracing::info!(job_id = %id, "cancel requested; stopping the handler");
                    worker.running.stop(*id, StopReason::CancelRequested);
                }
            }
            Err(e) => telemetry::backend_error("worker", "cancel_requested", &e),
        }
    }
}

/// An interval that does not burst to catch up after a slow store call.
fn ticker(every: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick
}

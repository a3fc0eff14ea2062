//! Queue depths for `jobfleet queues` and the HTTP endpoint: how many jobs each queue
//! holds on its ready route (from the broker) and in the delayed set and dead letters
//! (from the store).

use std::collections::BTreeSet;

use jobfleet_common::broker::{Broker, Depth};
use jobfleet_common::clock::Clock;
use jobfleet_common::store::{OperatorStore, WorkerInfo};
use jobfleet_common::Route;
use serde::Serialize;

use crate::error::OpsError;

/// The queue name dead letters are counted under when their message did not decode.
const UNKNOWN_QUEUE: &str = "?";

/// One queue's jobs, by where they are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    /// The queue.
    pub queue: String,
    /// Waiting on the ready route; `None` where the broker cannot tell.
    pub ready: Option<u64>,
    /// Delivered to a worker, not yet settled; `None` where the broker cannot tell.
    pub unacked: Option<u64>,
    /// Waiting in the delayed set (scheduled or retrying).
    pub delayed: u64,
    /// Dead letters.
    pub dead: u64,
    /// How long the oldest job waiting to start has been ready (its record says
    /// `pending`), in ms; `None` when none waits. What autoscalers should scale on.
    pub oldest_waiting_ms: Option<u64>,
    /// Jobs completed on this queue, counted by the store as each completes (so workers
    /// that came and went count): its throughput is the difference between two looks.
    pub completed: u64,
    /// Attempts that finished any other way, summed over live workers since each started
    /// ([`count_failed`]): a worker that leaves takes its count along.
    pub failed: u64,
}

/// Fills each depth's `failed` from live workers' heartbeats.
pub fn count_failed(depths: &mut [QueueDepth], workers: &[WorkerInfo]) {
    for depth in depths {
        let tallies = workers.iter().filter_map(|w| w.by_queue.get(&depth.queue));
        depth.failed = tallies.map(|t| t.failed).sum();
    }
}

/// Depths of `queues` plus every queue the store knows (producers and workers record
/// theirs) and every queue with delayed jobs or dead letters, sorted by name; `clock`
/// ages the oldest waiting job.
pub async fn queue_depths(
    store: &dyn OperatorStore,
    broker: &dyn Broker,
    clock: &dyn Clock,
    queues: &[String],
) -> Result<Vec<QueueDepth>, OpsError> {
    let known = store.queues_known().await?;
    let delayed = store.delayed_counts().await?;
    let dead = store.dead_counts().await?;
    let completed = store.completed_counts().await?;
    let names: BTreeSet<&String> = queues
        .iter()
        .chain(&known)
        .chain(delayed.keys())
        .chain(dead.keys())
        .collect();
    let listed: Vec<String> = names.iter().map(|q| (*q).clone()).collect();
    let oldest = store.oldest_pending(&listed).await?;
    let now = clock.now_ms();
    let broker_depths =
        futures::future::join_all(names.iter().map(|q| broker_depth(broker, q))).await;
    let mut out = Vec::with_capacity(names.len());
    for (name, depth) in names.into_iter().zip(broker_depths) {
        let depth = depth?;
        out.push(QueueDepth {
            queue: name.clone(),
            ready: depth.map(|d| d.ready),
            unacked: depth.and_then(|d| d.unacked),
            delayed: delayed.get(name).copied().unwrap_or(0),
            dead: dead.get(name).copied().unwrap_or(0),
            oldest_waiting_ms: oldest
                .get(name)
                .map(|since| u64::try_from(now - since).unwrap_or(0)),
            completed: completed.get(name).copied().unwrap_or(0),
            failed: 0,
        });
    }
    Ok(out)
}

/// The broker's depth of `queue`'s ready route; unknown where the route cannot exist or
/// the broker refuses the question.
async fn broker_depth(broker: &dyn Broker, queue: &str) -> Result<Option<Depth>, OpsError> {
    if queue == UNKNOWN_QUEUE {
        return Ok(None);
    }
    match broker.depth(&Route::Ready(queue.to_string())).await {
        Ok(depth) => Ok(depth),
        Err(e) if !e.is_retryable() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

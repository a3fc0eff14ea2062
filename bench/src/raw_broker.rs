//! The baseline for the embedded broker: the bench's load through the [`Broker`] trait
//! alone, on a fresh embedded broker, with no producer, worker or store.
//!
//! Messages of `plan.payload_bytes` bytes are published in batches of [`BATCH`] (one
//! confirmed call each, as the producer does) while a consumer with prefetch
//! `plan.prefetch` acks each delivery as it arrives.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use jobfleet_common::broker::{Broker, Message, Route};
use jobfleet_common::embedded::EmbeddedBroker;
use jobfleet_common::job::Priority;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::report::Baseline;
use crate::Plan;

/// Messages per publish call.
const BATCH: usize = 1000;
const QUEUE: &str = "raw";

/// Publishes and consumes `plan.jobs` messages concurrently on a fresh embedded broker.
pub(crate) async fn measure(plan: &Plan) -> Result<Baseline> {
    let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::new());
    let route = Route::Ready(QUEUE.into());
    broker.declare(&[QUEUE.into()]).await.map_err(failed)?;
    let mut deliveries = broker
        .consume(&route, plan.prefetch)
        .await
        .map_err(failed)?;
    let expected = plan.jobs;
    let drain = tokio::spawn(async move {
        let mut acked = 0;
        while acked < expected {
            let Some(delivery) = deliveries.next().await else {
                break;
            };
            delivery.map_err(failed)?.ack().await.map_err(failed)?;
            acked += 1;
        }
        Ok::<_, Error>((acked, Instant::now()))
    });

    let body = Bytes::from(vec![b'x'; plan.payload_bytes]);
    let began = Instant::now();
    let mut left = plan.jobs;
    while left > 0 {
        let n = left.min(BATCH);
        let batch = (0..n)
            .map(|_| Message::new(route.clone(), Priority::NORMAL, body.clone(), ""))
            .collect();
        broker.publish(batch).await.map_err(failed)?;
        left -= n;
    }
    let published = began.elapsed();

    Baseline::from_drain(plan, began, published, drain).await
}

fn failed(e: jobfleet_common::BrokerError) -> Error {
    Error::Task(format!("baseline: {e}"))
}

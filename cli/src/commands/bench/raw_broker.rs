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

use super::report::Baseline;
use super::{per_second, Plan};
use crate::error::{Error, Result};

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

    let wait = plan.timeout.saturating_sub(began.elapsed());
    let (acked, last_ack) = match tokio::time::timeout(wait, drain).await {
        Ok(joined) => joined.map_err(|e| Error::Task(format!("baseline consumer: {e}")))??,
        Err(_) => return Err(Error::Task(format!("baseline not drained within {wait:?}"))),
    };
    if acked < expected {
        return Err(Error::Task(format!(
            "baseline consumer ended after {acked} of {expected} messages"
        )));
    }
    Ok(Baseline {
        raw_e2e_per_s: per_second(expected, last_ack.duration_since(began)),
        raw_publish_per_s: per_second(expected, published),
    })
}

fn failed(e: jobfleet_common::BrokerError) -> Error {
    Error::Task(format!("baseline: {e}"))
}

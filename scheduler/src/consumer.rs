//! Consuming one route for as long as the scheduler runs: batches, settling, re-opening.
//!
//! A [`RouteHandler`] sees a batch of deliveries and does everything it has to do with
//! them (publish, store writes); only when it returns `Ok` are they acked, all together.
//! On an error every delivery of the batch is given back and the loop backs off, so a
//! handler never settles anything itself and a crash anywhere duplicates at worst. A
//! stream that ends or reports an error is re-opened after a pause, until shutdown.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use jobfleet_common::telemetry;
use jobfleet_common::{Delivery, Route};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::error::SchedulerError;
use crate::pause::Pause;

/// Deliveries handled together at most: what is already waiting, up to this many.
const BATCH: usize = 100;
/// Unsettled deliveries the broker may send ahead; two batches keep the pipe full.
const PREFETCH: u16 = 2 * BATCH as u16;

/// A received message's contents, apart from its settlement (a [`Delivery`] is not
/// `Sync`, so handlers see these instead).
#[derive(Clone, Debug)]
pub(crate) struct Incoming {
    /// The message body.
    pub(crate) body: Bytes,
    /// The content type header.
    pub(crate) content_type: Option<String>,
    /// The dead-route reason header.
    pub(crate) reason: Option<String>,
}

impl Incoming {
    fn of(delivery: &Delivery) -> Self {
        Self {
            body: delivery.body.clone(),
            content_type: delivery.content_type.clone(),
            reason: delivery.reason.clone(),
        }
    }
}

/// What the scheduler does with the messages of one route.
#[async_trait]
pub(crate) trait RouteHandler: Send + Sync + 'static {
    /// The operation name in backend-error metrics, e.g. `delayed_intake`.
    fn op(&self) -> &'static str;

    /// Handles a batch; `Ok` means every delivery may be acked.
    async fn handle(&self, ctx: &Context, batch: &[Incoming]) -> Result<(), SchedulerError>;
}

/// Consumes `route` with `handler` until `shutdown`.
pub(crate) async fn consume<H: RouteHandler>(
    ctx: Arc<Context>,
    route: Route,
    handler: H,
    shutdown: CancellationToken,
) {
    let mut pause = Pause::new();
    while !shutdown.is_cancelled() {
        let mut stream = match ctx.broker.consume(&route, PREFETCH).await {
            Ok(stream) => stream,
            Err(e) => {
                telemetry::backend_error("scheduler", "consume", &e);
                pause.wait(&shutdown).await;
                continue;
            }
        };
        loop {
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                item = stream.next() => item,
            };
            let first = match first {
                Some(Ok(delivery)) => delivery,
                Some(Err(e)) => {
                    telemetry::backend_error("scheduler", "consume", &e);
                    break;
                }
                None => {
                    tracing::warn!(route = %route, "consumer stream ended; re-opening");
                    break;
                }
            };
            let mut batch = vec![first];
            let mut stream_failed = false;
            // Take what is already waiting, without waiting for more.
            while batch.len() < BATCH {
                match stream.next().now_or_never() {
                    Some(Some(Ok(delivery))) => batch.push(delivery),
                    Some(Some(Err(e))) => {
                        telemetry::backend_error("scheduler", "consume", &e);
                        stream_failed = true;
                        break;
                    }
                    Some(None) | None => break,
                }
            }
            let incoming: Vec<Incoming> = batch.iter().map(Incoming::of).collect();
            match handler.handle(&ctx, &incoming).await {
                Ok(()) => {
                    settle(batch, true, handler.op()).await;
                    pause.reset();
                }
                Err(e) => {
                    telemetry::backend_error("scheduler", handler.op(), &e);
                    settle(batch, false, handler.op()).await;
                    pause.wait(&shutdown).await;
                }
            }
            if stream_failed {
                break;
            }
        }
        pause.wait(&shutdown).await;
    }
}

/// Acks (or gives back) a batch, all settlements in flight together.
async fn settle(batch: Vec<Delivery>, ack: bool, op: &'static str) {
    let results = futures::future::join_all(batch.into_iter().map(|d| async move {
        if ack {
            d.ack().await
        } else {
            d.requeue().await
        }
    }))
    .await;
    // An unsettled delivery comes back when the consumer goes away: at worst a duplicate,
    // which every handler tolerates.
    for e in results.into_iter().filter_map(Result::err) {
        telemetry::backend_error("scheduler", op, &e);
    }
}

//! Consumer streams that survive a lost connection or channel, and the acker that settles
//! their deliveries.
//!
//! Each stream owns one channel with `basic.qos(prefetch)` and one manual-ack consumer on
//! it. When the channel or the connection is lost, the stream yields one
//! [`BrokerError::Connection`] item for the caller to log, then re-opens a channel and a
//! consumer (reconnecting with backoff if need be) and carries on. The server requeues
//! the deliveries of the lost channel itself; settling one of them afterwards returns
//! [`BrokerError::Connection`], meaning "it will be redelivered".
//!
//! Ackers keep their channel open: dropping a stream cancels its consumer and gives back
//! what the client had buffered but never handed out, while deliveries already handed
//! out can still be acked, e.g. by a worker draining on shutdown. An acker dropped
//! unsettled requeues its message.
//!
//! # `consumer_timeout`
//!
//! RabbitMQ closes a channel on which a delivery stays unacknowledged longer than
//! `consumer_timeout` (milliseconds; 1 800 000 = 30 minutes by default since 3.8.15, set
//! in `rabbitmq.conf`; `advanced.config` can set it to `undefined` to disable it). On 3.10
//! the setting is global only: the per-queue `x-consumer-timeout` argument and the
//! `consumer-timeout` policy key arrived in 3.12. Seen on this project's 3.10.8 server
//! (the ignored test `a_channel_closed_for_consumer_timeout_is_resumed`):
//!
//! - a channel takes the value in force when it opens; changing it later does not touch
//!   open channels;
//! - the check runs on the channel's periodic tick (`channel_tick_interval`, 60 s), so
//!   the close comes up to a minute after the limit;
//! - the close is `channel.close` with `406 PRECONDITION_FAILED - delivery
//!   acknowledgement on channel N timed out. Timeout value used: … ms`; the connection
//!   stays up, and every unacknowledged delivery of the channel is requeued (redelivered
//!   with `redelivered = true`), not only the late one.
//!
//! Here that close is one more lost channel: the stream yields the error, then resumes
//! on a new channel of the same connection. Jobs that may run that long are acked early
//! by the worker, which holds them in the store under a lease instead (see
//! `docs/architecture.md`, "Long jobs and RabbitMQ's `consumer_timeout`").

use std::sync::Arc;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Channel;
use tokio::runtime::Handle;
use tokio_util::task::TaskTracker;

use super::reconnect::Patience;
use super::{broker_error, lost, topology, QueueName, Shared, REASON_HEADER};
use jobfleet_common::broker::{Acker, BrokerError, Consumer, Delivery, Route};

/// Backoff between attempts to resume a stream whose consumer could not be re-opened
/// on a live connection (the connection itself is waited for in [`Shared::session`]).
const RESUME_BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(std::time::Duration::from_millis(100))
    .with_max_delay(std::time::Duration::from_secs(5))
    .without_max_times();

/// Starts a stream of deliveries from `route`, at most `prefetch` unsettled (0: no
/// limit, as in AMQP).
pub(super) async fn consume(
    shared: Arc<Shared>,
    route: &Route,
    prefetch: u16,
) -> Result<Consumer, BrokerError> {
    let queue = shared.topology.queue(route)?;
    let attached = attach(&shared, &queue, prefetch, Patience::Call).await?;
    let subscription = Subscription {
        shared,
        queue,
        prefetch,
        attached: Some(attached),
    };
    let stream = futures::stream::unfold(subscription, |mut subscription| async move {
        let item = subscription.next().await?;
        Some((item, subscription))
    });
    Ok(stream.boxed())
}

/// One stream's state: what it consumes and its current consumer.
struct Subscription {
    shared: Arc<Shared>,
    queue: QueueName,
    prefetch: u16,
    /// `None` after a loss, until the consumer is re-opened.
    attached: Option<Attached>,
}

impl Subscription {
    /// The next item; `None` once the broker is closed.
    async fn next(&mut self) -> Option<Result<Delivery, BrokerError>> {
        let attached = match self.attached.as_mut() {
            Some(attached) => attached,
            None => self.attached.insert(self.resume().await?),
        };
        let consumer = attached.consumer.as_mut()?;
        let item = tokio::select! {
            () = self.shared.closed.cancelled() => return None,
            item = consumer.next() => item,
        };
        let error = match item {
            Some(Ok(delivery)) => return Some(Ok(attached.delivery(delivery))),
            Some(Err(e)) => lost(&format!("consuming {}", self.queue.name), &e),
            None => BrokerError::Connection(format!(
                "consumer of {} cancelled by the server",
                self.queue.name
            )),
        };
        self.attached = None;
        if self.shared.closed.is_cancelled() {
            return None;
        }
        tracing::warn!(queue = %self.queue.name, error = %error, "rabbitmq consumer lost; resuming");
        Some(Err(error))
    }

    /// A new consumer, retried until the broker is closed (then `None`).
    async fn resume(&self) -> Option<Attached> {
        let attempts = (|| attach(&self.shared, &self.queue, self.prefetch, Patience::Forever))
            .retry(RESUME_BACKOFF.with_jitter())
            .when(|e| !matches!(e, BrokerError::Closed))
            .notify(|e, delay| {
                tracing::warn!(
                    queue = %self.queue.name, error = %e, retry_in = ?delay,
                    "rabbitmq consumer cannot resume yet"
                );
            });
        attempts.await.ok()
    }
}

/// Opens a channel with the prefetch limit and a manual-ack consumer on `queue`.
async fn attach(
    shared: &Shared,
    queue: &QueueName,
    prefetch: u16,
    patience: Patience,
) -> Result<Attached, BrokerError> {
    let session = shared.session(patience).await?;
    let channel = session.channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| broker_error("basic.qos", &e))?;
    // Idempotent, and brings back a queue deleted while we were away.
    topology::declare_on(&channel, queue).await?;
    let consumer = channel
        .basic_consume(
            queue.name.clone(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| broker_error(&format!("consume {}", queue.name), &e))?;
    Ok(Attached {
        channel,
        consumer: Some(consumer),
        tasks: shared.tasks.clone(),
    })
}

/// A consumer and its channel.
struct Attached {
    channel: Channel,
    /// Taken when dropped, to give back what it buffered.
    consumer: Option<lapin::Consumer>,
    tasks: TaskTracker,
}

impl Attached {
    fn delivery(&self, delivery: lapin::message::Delivery) -> Delivery {
        let properties = &delivery.properties;
        let content_type = properties.content_type().as_ref().map(|c| c.to_string());
        let reason = properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get(REASON_HEADER))
            .and_then(header_text);
        let acker = RabbitAcker {
            acker: Some(delivery.acker),
            channel: self.channel.clone(),
            tasks: self.tasks.clone(),
        };
        let body = Bytes::from(delivery.data);
        Delivery::new(
            body,
            content_type,
            reason,
            delivery.redelivered,
            Box::new(acker),
        )
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let (Some(consumer), Ok(runtime)) = (self.consumer.take(), Handle::try_current()) else {
            // Without a runtime the buffered deliveries come back when the channel closes.
            return;
        };
        let channel = self.channel.clone();
        runtime.spawn(
            self.tasks
                .track_future(give_back_buffered(channel, consumer)),
        );
    }
}

/// Cancels `consumer` and requeues what it received but never handed out. After the
/// cancel is confirmed no more deliveries arrive for it, so its buffer is complete.
async fn give_back_buffered(channel: Channel, mut consumer: lapin::Consumer) {
    if !channel.status().connected() {
        return;
    }
    if let Err(e) = channel
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await
    {
        tracing::debug!(error = %e, "rabbitmq basic.cancel");
        return;
    }
    while let Some(Some(Ok(delivery))) = consumer.next().now_or_never() {
        let requeue = BasicNackOptions {
            requeue: true,
            multiple: false,
        };
        if let Err(e) = delivery.acker.nack(requeue).await {
            tracing::debug!(error = %e, "rabbitmq requeue of a buffered delivery");
        }
    }
}

/// A header value as text.
fn header_text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// Settles one delivery on the channel it came from, which it keeps open.
struct RabbitAcker {
    /// Taken when settled.
    acker: Option<lapin::Acker>,
    channel: Channel,
    tasks: TaskTracker,
}

#[async_trait]
impl Acker for RabbitAcker {
    async fn ack(mut self: Box<Self>) -> Result<(), BrokerError> {
        let Some(acker) = self.acker.take() else {
            return Ok(());
        };
        settled("ack", acker.ack(BasicAckOptions::default()).await)
    }

    async fn requeue(mut self: Box<Self>) -> Result<(), BrokerError> {
        let Some(acker) = self.acker.take() else {
            return Ok(());
        };
        let requeue = BasicNackOptions {
            requeue: true,
            multiple: false,
        };
        settled("requeue", acker.nack(requeue).await)
    }
}

impl Drop for RabbitAcker {
    fn drop(&mut self) {
        let Some(acker) = self.acker.take().filter(|a| a.usable()) else {
            return;
        };
        let Ok(runtime) = Handle::try_current() else {
            // The server requeues it when the channel closes.
            return;
        };
        let channel = self.channel.clone();
        runtime.spawn(self.tasks.track_future(async move {
            let requeue = BasicNackOptions {
                requeue: true,
                multiple: false,
            };
            if let Err(e) = acker.nack(requeue).await {
                tracing::debug!(error = %e, "rabbitmq requeue of a dropped delivery");
            }
            // Only now may the channel close.
            drop(channel);
        }));
    }
}

/// A settle's outcome. The client reports `false` when the channel is gone, and then
/// the server has already requeued the message.
fn settled(what: &str, result: lapin::Result<bool>) -> Result<(), BrokerError> {
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(BrokerError::Connection(format!(
            "{what}: the delivery's channel was lost; the server redelivers the message"
        ))),
        Err(e) => Err(lost(what, &e)),
    }
}

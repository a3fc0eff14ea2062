//! The `Broker` trait: durable routes that carry encoded jobs between the roles.
//!
//! A broker has four kinds of [`Route`]: one ready route per queue (with priority),
//! and the shared delayed, failed and dead routes that the scheduler consumes. It only
//! moves bytes: encoding is [`crate::codec`]'s, timing is the scheduler's.
//!
//! Delivery is at least once. A [`Delivery`] is settled exactly once, by
//! [`Delivery::ack`] (done with it) or [`Delivery::requeue`] (give it back for another
//! consumer, e.g. on shutdown); one dropped unsettled is given back when its consumer
//! goes away, as AMQP does when a channel closes.

use std::fmt;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::job::Priority;

/// Where a message goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    /// A queue's ready route: workers consume it, highest priority first.
    Ready(String),
    /// Jobs due later; the scheduler moves them into the store's delayed set.
    Delayed,
    /// Failed attempts; the scheduler times the retry or declares the job dead.
    Failed,
    /// Dead messages with a reason; the scheduler files them in the dead-letter store.
    Dead,
}

impl Route {
    /// A short name for logs and metrics: the queue name, or `delayed`/`failed`/`dead`
    /// in angle brackets.
    pub fn label(&self) -> String {
        match self {
            Route::Ready(q) => q.clone(),
            Route::Delayed => "<delayed>".into(),
            Route::Failed => "<failed>".into(),
            Route::Dead => "<dead>".into(),
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// A message to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Where it goes.
    pub route: Route,
    /// Priority on ready routes; ignored elsewhere.
    pub priority: Priority,
    /// The encoded job (or, on the dead route, whatever bytes could not be run).
    pub body: Bytes,
    /// The body's content type, e.g. [`crate::codec::POSTCARD_CONTENT_TYPE`].
    pub content_type: Option<String>,
    /// Why the message is on the dead route.
    pub reason: Option<String>,
    /// Messages with the same key keep their order where the broker partitions.
    pub key: Option<String>,
}

impl Message {
    /// A message with no reason and no key.
    pub fn new(route: Route, priority: Priority, body: Bytes, content_type: &str) -> Self {
        Self {
            route,
            priority,
            body,
            content_type: Some(content_type.to_string()),
            reason: None,
            key: None,
        }
    }
}

/// Why a broker call failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The connection is down or was lost; retrying after a reconnect can help.
    #[error("broker connection: {0}")]
    Connection(String),
    /// The broker refused (nacked) or returned a publish; retrying may help.
    #[error("publish not accepted: {0}")]
    NotAccepted(String),
    /// The request is wrong (bad route, bad argument); retrying will not help.
    #[error("broker rejected the request: {0}")]
    Invalid(String),
    /// The broker has been closed by this process.
    #[error("broker closed")]
    Closed,
}

impl BrokerError {
    /// Whether retrying the same call later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Connection(_) | Self::NotAccepted(_))
    }
}

/// How a delivery is settled, implemented by each backend.
#[async_trait]
pub trait Acker: Send {
    /// Done with the message: it will not be delivered again.
    async fn ack(self: Box<Self>) -> Result<(), BrokerError>;
    /// Give the message back so it is delivered again, to this or another consumer.
    async fn requeue(self: Box<Self>) -> Result<(), BrokerError>;
}

/// A received message. Settle it with [`Delivery::ack`] or [`Delivery::requeue`].
pub struct Delivery {
    /// The message body.
    pub body: Bytes,
    /// The content type header, if the publisher set one.
    pub content_type: Option<String>,
    /// The dead-route reason header, if any.
    pub reason: Option<String>,
    /// Whether the broker delivered this message before (a hint, not a guarantee).
    pub redelivered: bool,
    acker: Box<dyn Acker>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("bytes", &self.body.len())
            .field("content_type", &self.content_type)
            .field("reason", &self.reason)
            .field("redelivered", &self.redelivered)
            .finish()
    }
}

impl Delivery {
    /// A delivery settled through `acker`.
    pub fn new(
        body: Bytes,
        content_type: Option<String>,
        reason: Option<String>,
        redelivered: bool,
        acker: Box<dyn Acker>,
    ) -> Self {
        Self {
            body,
            content_type,
            reason,
            redelivered,
            acker,
        }
    }

    /// Done with the message.
    pub async fn ack(self) -> Result<(), BrokerError> {
        self.acker.ack().await
    }

    /// Give the message back.
    pub async fn requeue(self) -> Result<(), BrokerError> {
        self.acker.requeue().await
    }
}

/// A stream of deliveries from one route. It ends when the broker closes it; an error
/// item reports a lost connection (the backend may resume after it).
pub type Consumer = Pin<Box<dyn Stream<Item = Result<Delivery, BrokerError>> + Send>>;

/// How many messages a route holds, where the broker can tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Depth {
    /// Waiting to be delivered.
    pub ready: u64,
    /// Delivered, not yet settled; `None` where the broker's client protocol cannot tell
    /// (AMQP reports only ready messages without the management API).
    pub unacked: Option<u64>,
}

/// A message broker: durable routes, confirmed publishes, acknowledged deliveries.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// The backend's name for logs and benchmarks (`embedded`, `rabbitmq`, `kafka`).
    fn name(&self) -> &'static str;

    /// Makes sure the routes exist (idempotent); ready routes for `queues`, plus the
    /// delayed, failed and dead routes.
    async fn declare(&self, queues: &[String]) -> Result<(), BrokerError>;

    /// Publishes a batch; returns Ok only once every message is durably accepted.
    /// Backends pipeline the batch: never one round trip per message.
    async fn publish(&self, batch: Vec<Message>) -> Result<(), BrokerError>;

    /// Starts consuming `route` with at most `prefetch` unsettled deliveries.
    async fn consume(&self, route: &Route, prefetch: u16) -> Result<Consumer, BrokerError>;

    /// The route's depth, or `None` where the backend cannot tell.
    async fn depth(&self, route: &Route) -> Result<Option<Depth>, BrokerError> {
        let _ = route;
        Ok(None)
    }

    /// Admin: deletes the ready routes of `queues` and the shared routes (delayed, failed,
    /// dead) with everything they hold, e.g. when a benchmark or a test removes the
    /// namespace it made. The roles never call it; stop their consumers first. Every
    /// backend implements it; the default (for test doubles) refuses.
    async fn delete_routes(&self, queues: &[String]) -> Result<(), BrokerError> {
        let _ = queues;
        Err(BrokerError::Invalid(format!(
            "the {} broker cannot delete routes",
            self.name()
        )))
    }

    /// Admin: ends every consumer stream and closes the connections, flushing what the
    /// client still buffers. Unsettled deliveries go back to the broker. The default
    /// has nothing to close.
    async fn close(&self) {}
}

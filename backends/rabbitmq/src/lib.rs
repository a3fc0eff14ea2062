//! The RabbitMQ broker: durable priority queues, pipelined publisher confirms, manual acks,
//! and a connection that heals itself.
//!
//! # Naming
//!
//! Every queue lives under the configured namespace (`ns` below) and is published to
//! through the default exchange, with the queue's name as routing key:
//!
//! | route | queue | arguments |
//! | --- | --- | --- |
//! | `Ready(q)` | `ns.q.{q}` | `x-max-priority` = [`Priority::MAX`] |
//! | `Delayed` | `ns.delayed` | none |
//! | `Failed` | `ns.failed` | none |
//! | `Dead` | `ns.dead` | none |
//!
//! All are durable and every message is persistent. A message's [`Message::key`] is
//! ignored: a RabbitMQ queue is FIFO within a priority and needs no partition key.
//!
//! # Layout
//!
//! - this file: [`RabbitBroker`], connecting, queue names and error mapping.
//! - `reconnect`: the current connection and its publishing channels, re-made with
//!   exponential backoff when lost.
//! - `topology`: queue declarations, the cache of what was declared, depth.
//! - `publish`: the confirm pipeline.
//! - `consume`: consumer streams that resume after a loss, and the acker.

mod consume;
mod publish;
mod reconnect;
mod topology;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use lapin::types::ShortString;
use lapin::uri::AMQPUri;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use jobfleet_common::broker::{Broker, BrokerError, Consumer, Depth, Message, Route};
use jobfleet_common::job::Priority;
use jobfleet_common::redact::redact;

use reconnect::{Link, Patience};
use topology::Topology;

/// The largest AMQP frame asked for unless the URL sets `frame_max`. lapin keeps a send
/// and a receive buffer of 32 frames per connection, zero-filled: at RabbitMQ's default
/// of 128 KiB that is 8 MiB resident per connection, a third of an idle worker. 16 KiB
/// frames make it 1 MiB; a larger job body is sent as several frames.
const FRAME_MAX: u32 = 16 * 1024;

/// The RabbitMQ queue behind `route` in `namespace` (the naming table above): the one
/// place that names them, for the broker and for tests and tools that look at queues.
pub fn queue_name(namespace: &str, route: &Route) -> String {
    match route {
        Route::Ready(q) => format!("{}{q}", ready_prefix(namespace)),
        Route::Delayed => format!("{namespace}.delayed"),
        Route::Failed => format!("{namespace}.failed"),
        Route::Dead => format!("{namespace}.dead"),
    }
}

/// What every ready queue of `namespace` starts with: `ns.q.`.
pub fn ready_prefix(namespace: &str) -> String {
    format!("{namespace}.q.")
}

/// The header that carries a dead message's reason.
pub const REASON_HEADER: &str = "x-jobfleet-reason";

/// A [`Broker`] on a RabbitMQ server (3.x, AMQP 0-9-1). Cheap to clone: clones share one
/// connection, its channels and the declared topology.
#[derive(Clone)]
pub struct RabbitBroker {
    shared: Arc<Shared>,
}

/// What every operation, consumer stream and acker of one broker shares.
struct Shared {
    link: Link,
    topology: Topology,
    namespace: String,
    /// Cancelled by [`RabbitBroker::close`]: reconnect loops stop, streams end.
    closed: CancellationToken,
    /// Background settles (dropped ackers, cancelled consumers), awaited on close.
    tasks: TaskTracker,
}

impl RabbitBroker {
    /// Connects to the server at `url` (`amqp://` or `amqps://`) and keeps every queue
    /// under `namespace`. Fails at once if the server cannot be reached; a connection
    /// lost later is re-made in the background. Errors never contain the URL's password.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, BrokerError> {
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err(BrokerError::Invalid(format!(
                "{} is not an amqp:// or amqps:// URL",
                redact(url)
            )));
        }
        if namespace.is_empty() || namespace.contains(char::is_whitespace) {
            return Err(BrokerError::Invalid(format!(
                "namespace {namespace:?} must be non-empty and without whitespace"
            )));
        }
        // The parser's message may quote the URL, password included: do not pass it on.
        let mut uri: AMQPUri = url.parse().map_err(|_| {
            BrokerError::Invalid(format!("{} is not a valid AMQP URL", redact(url)))
        })?;
        uri.query.frame_max.get_or_insert(FRAME_MAX);
        let shared = Arc::new(Shared {
            link: Link::new(uri, redact(url), format!("jobfleet/{namespace}")),
            topology: Topology::new(namespace),
            namespace: namespace.to_string(),
            closed: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        shared.session(Patience::Once).await?;
        Ok(Self { shared })
    }
}

impl fmt::Debug for RabbitBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitBroker")
            .field("server", &self.shared.link.server())
            .field("namespace", &self.shared.namespace)
            .finish()
    }
}

#[async_trait]
impl Broker for RabbitBroker {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }

    async fn declare(&self, queues: &[String]) -> Result<(), BrokerError> {
        let shared = [Route::Delayed, Route::Failed, Route::Dead];
        let routes: Vec<Route> = queues
            .iter()
            .map(|q| Route::Ready(q.clone()))
            .chain(shared)
            .collect();
        self.shared.declare(&routes, true).await
    }

    async fn publish(&self, batch: Vec<Message>) -> Result<(), BrokerError> {
        publish::publish(&self.shared, batch).await
    }

    async fn consume(&self, route: &Route, prefetch: u16) -> Result<Consumer, BrokerError> {
        consume::consume(self.shared.clone(), route, prefetch).await
    }

    /// Messages ready in the route's queue. `unacked` is always `None`: AMQP's passive
    /// declare reports only ready messages, and the unacknowledged count needs the
    /// management API, which jobfleet does not require. A queue that does not exist
    /// holds nothing.
    async fn depth(&self, route: &Route) -> Result<Option<Depth>, BrokerError> {
        let session = self.shared.session(Patience::Call).await?;
        let name = self.shared.topology.queue(route)?;
        let ready = topology::ready_count(&session, &name).await?;
        Ok(Some(Depth {
            ready,
            unacked: None,
        }))
    }

    /// Deletes the queues behind the routes (missing ones are not an error).
    async fn delete_routes(&self, queues: &[String]) -> Result<(), BrokerError> {
        let session = self.shared.session(Patience::Call).await?;
        let routes = queues.iter().map(|q| Route::Ready(q.clone())).chain([
            Route::Delayed,
            Route::Failed,
            Route::Dead,
        ]);
        for route in routes {
            let queue = self.shared.topology.queue(&route)?;
            topology::delete(&session, &queue).await?;
            self.shared.topology.forget(queue.name.as_str());
        }
        Ok(())
    }

    /// Stops reconnecting, ends every consumer stream, waits for background settles and
    /// closes the connection. Deliveries still unsettled are requeued by the server.
    async fn close(&self) {
        self.shared.closed.cancel();
        self.shared.tasks.close();
        // The consumer tasks stop at the cancel; a stuck one must not hold the close up.
        if tokio::time::timeout(std::time::Duration::from_secs(10), self.shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "rabbitmq close: consumer tasks still running after 10s; closing anyway"
            );
        }
        self.shared.link.close().await;
    }
}

impl Shared {
    /// Declares `routes` not yet in the cache (all of them when `force`), so a publish to
    /// a route nobody declared still lands in a queue.
    async fn declare(&self, routes: &[Route], force: bool) -> Result<(), BrokerError> {
        let mut missing = Vec::new();
        for route in routes {
            let queue = self.topology.queue(route)?;
            if force || !self.topology.is_declared(&queue) {
                missing.push(queue);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let session = self.session(Patience::Call).await?;
        self.topology.declare(&session, &missing).await
    }
}

/// A queue's name and how it is declared.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct QueueName {
    /// The full name, also the routing key.
    pub name: ShortString,
    /// Ready routes carry priorities; the shared routes do not.
    pub prioritised: bool,
}

/// The priority property of a message on `queue`: only priority queues get one.
fn priority_of(queue: &QueueName, priority: Priority) -> Option<u8> {
    queue
        .prioritised
        .then(|| priority.level().min(Priority::MAX))
}

/// Maps a client error to whether retrying can help. The server refusing the request
/// (access, a missing queue, arguments that differ from the existing queue's, a vhost
/// that does not exist) will refuse it again; everything else is the connection.
fn broker_error(context: &str, e: &lapin::Error) -> BrokerError {
    if let lapin::ErrorKind::ProtocolError(amqp) = e.kind() {
        // 402 invalid path, 403 access refused, 404 not found, 405 resource locked,
        // 406 precondition failed, 530 not allowed.
        if matches!(amqp.get_id(), 402..=406 | 530) {
            return BrokerError::Invalid(format!("{context}: {e}"));
        }
    }
    BrokerError::Connection(format!("{context}: {e}"))
}

/// The error a broken session gives a caller: the call can be retried after a reconnect.
fn lost(context: &str, e: &lapin::Error) -> BrokerError {
    BrokerError::Connection(format!("{context}: {e}"))
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every critical
/// section here is a single insert, remove or copy).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

//! Queue declarations: the name and arguments of each route's queue, the cache of queues
//! declared through this broker (re-declared after a reconnect), and queue depth.
//!
//! Declaring is idempotent on the server as long as the arguments are the same, so every
//! declaration of a queue uses exactly the arguments below. A queue that already exists
//! with other arguments (say, created by hand without `x-max-priority`) is refused with
//! `PRECONDITION_FAILED`, which becomes [`BrokerError::Invalid`].

use std::collections::BTreeSet;
use std::sync::Mutex;

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::Channel;

use super::reconnect::Session;
use super::{broker_error, lock, QueueName};
use jobfleet_common::broker::{BrokerError, Route};
use jobfleet_common::job::Priority;

/// Queue names under one namespace and the queues declared so far.
pub(super) struct Topology {
    namespace: String,
    declared: Mutex<BTreeSet<QueueName>>,
}

impl Topology {
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            declared: Mutex::default(),
        }
    }

    /// The queue behind `route`; refused if the name is longer than AMQP allows.
    pub fn queue(&self, route: &Route) -> Result<QueueName, BrokerError> {
        let name = super::queue_name(&self.namespace, route);
        let prioritised = matches!(route, Route::Ready(_));
        let name = ShortString::try_new(name)
            .map_err(|e| BrokerError::Invalid(format!("queue name for route {route}: {e}")))?;
        Ok(QueueName { name, prioritised })
    }

    pub fn is_declared(&self, queue: &QueueName) -> bool {
        lock(&self.declared).contains(queue)
    }

    /// Forgets a queue the server no longer has (a publish to it came back), so the
    /// next publish declares it again.
    pub fn forget(&self, name: &str) {
        lock(&self.declared).retain(|q| q.name.as_str() != name);
    }

    /// Declares `queues` and remembers them.
    pub async fn declare(
        &self,
        session: &Session,
        queues: &[QueueName],
    ) -> Result<(), BrokerError> {
        let channel = session.channel().await?;
        for queue in queues {
            declare_on(&channel, queue).await?;
            lock(&self.declared).insert(queue.clone());
        }
        Ok(())
    }

    /// Declares every remembered queue on a new session; returns how many. A refused
    /// queue is logged and skipped (it fails for its own users); a lost connection fails
    /// the whole session.
    pub async fn redeclare(&self, session: &Session) -> Result<usize, BrokerError> {
        let queues: Vec<QueueName> = lock(&self.declared).iter().cloned().collect();
        if queues.is_empty() {
            return Ok(0);
        }
        let mut channel = session.channel().await?;
        for queue in &queues {
            match declare_on(&channel, queue).await {
                Ok(()) => {}
                Err(BrokerError::Invalid(e)) => {
                    tracing::warn!(queue = %queue.name, error = %e, "rabbitmq re-declare refused");
                    // The refusal closed the channel.
                    channel = session.channel().await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(queues.len())
    }
}

/// Declares `queue` (durable, with its arguments) on `channel`.
pub(super) async fn declare_on(channel: &Channel, queue: &QueueName) -> Result<(), BrokerError> {
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.name.clone(), options, arguments(queue))
        .await
        .map_err(|e| broker_error(&format!("declare queue {}", queue.name), &e))?;
    Ok(())
}

/// The declaration arguments; the same on every declaration, or the server refuses.
fn arguments(queue: &QueueName) -> FieldTable {
    let mut arguments = FieldTable::default();
    if queue.prioritised {
        arguments.insert(
            "x-max-priority".into(),
            AMQPValue::LongInt(Priority::MAX.into()),
        );
    }
    arguments
}

/// Messages ready in `queue`, by a passive declare on a channel of its own (a missing
/// queue closes the channel it is asked on); 0 if the queue does not exist.
pub(super) async fn ready_count(session: &Session, queue: &QueueName) -> Result<u64, BrokerError> {
    let channel = session.channel().await?;
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let declared = channel
        .queue_declare(queue.name.clone(), options, FieldTable::default())
        .await;
    match declared {
        Ok(q) => Ok(u64::from(q.message_count())),
        Err(e) if is_not_found(&e) => Ok(0),
        Err(e) => Err(broker_error(&format!("depth of {}", queue.name), &e)),
    }
}

/// Deletes `queue` and what it holds, on a channel of its own; a queue that does not
/// exist is already deleted (RabbitMQ 3.x answers `queue.delete` of one with OK).
pub(super) async fn delete(session: &Session, queue: &QueueName) -> Result<(), BrokerError> {
    let channel = session.channel().await?;
    channel
        .queue_delete(queue.name.clone(), QueueDeleteOptions::default())
        .await
        .map_err(|e| super::broker_error("queue.delete", &e))?;
    if let Err(e) = channel.close(200, "deleted".into()).await {
        tracing::debug!(error = %e, "closing the queue.delete channel");
    }
    Ok(())
}

fn is_not_found(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(amqp)
        if *amqp.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
}

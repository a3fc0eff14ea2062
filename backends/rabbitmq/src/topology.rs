//! Queue declarations: the name and arguments of each route's queues (one, or a ready
//! route's band queues on quorum queues), the cache of queues declared through this
//! broker (re-declared after a reconnect), and queue depth.
//!
//! Declaring is idempotent on the server as long as the arguments are the same, so every
//! declaration of a queue uses exactly the arguments below. A queue that already exists
//! with other arguments (say, created by hand without `x-max-priority`) is refused with
//! `PRECONDITION_FAILED`, which becomes [`BrokerError::Invalid`]; one of the other queue
//! type gets a message that names both types and the way to migrate ([`mismatch`]).
//!
//! Quorum queues are declared without `x-delivery-limit`: RabbitMQ 3.x then has no limit,
//! so the broker never drops or dead-letters a job that was redelivered often; jobfleet's
//! own count (`max_attempts`, and the execution lease's crash count) decides when a job
//! is dead, and files it with its reason (docs/high-availability.md).

use std::collections::BTreeSet;
use std::sync::Mutex;

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::Channel;

use super::reconnect::Session;
use super::{broker_error, lock, QueueName};
use jobfleet_common::broker::{BrokerError, Route};
use jobfleet_common::config::{QueueType, RabbitConfig};
use jobfleet_common::job::Priority;

/// Queue names under one namespace and the queues declared so far.
pub(super) struct Topology {
    namespace: String,
    queue_type: QueueType,
    /// Band queues per ready route: 1 on classic queues (native priorities).
    bands: u8,
    declared: Mutex<BTreeSet<QueueName>>,
}

impl Topology {
    pub fn new(namespace: &str, settings: &RabbitConfig) -> Self {
        Self {
            namespace: namespace.to_string(),
            queue_type: settings.queue_type,
            bands: settings.ready_bands().clamp(1, Priority::MAX + 1),
            declared: Mutex::default(),
        }
    }

    /// The queues behind `route`, lowest band first: one, or a ready route's band queues
    /// on quorum queues. Refused if a name is longer than AMQP allows.
    pub fn queues(&self, route: &Route) -> Result<Vec<QueueName>, BrokerError> {
        match route {
            Route::Ready(q) if self.bands > 1 => (0..self.bands)
                .map(|band| self.named(route, super::band_queue_name(&self.namespace, q, band)))
                .collect(),
            _ => Ok(vec![
                self.named(route, super::queue_name(&self.namespace, route))?
            ]),
        }
    }

    /// The queue a message of `priority` goes to on `route`.
    pub fn queue_for(&self, route: &Route, priority: Priority) -> Result<QueueName, BrokerError> {
        let mut queues = self.queues(route)?;
        let band = usize::from(priority.band(self.bands)).min(queues.len() - 1);
        Ok(queues.swap_remove(band))
    }

    /// A queue of `route` named `name`; native priorities only on classic ready queues.
    fn named(&self, route: &Route, name: String) -> Result<QueueName, BrokerError> {
        let prioritised = matches!(route, Route::Ready(_)) && self.queue_type == QueueType::Classic;
        let name = ShortString::try_new(name)
            .map_err(|e| BrokerError::Invalid(format!("queue name for route {route}: {e}")))?;
        Ok(QueueName {
            name,
            prioritised,
            queue_type: self.queue_type,
        })
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
                Ok(_) => {}
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

/// Declares `queue` (durable, with its arguments) on `channel`; returns how many
/// messages it holds ready.
pub(super) async fn declare_on(channel: &Channel, queue: &QueueName) -> Result<u32, BrokerError> {
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let declared = channel
        .queue_declare(queue.name.clone(), options, arguments(queue))
        .await
        .map_err(|e| match mismatch(queue, &e.to_string()) {
            Some(refusal) => BrokerError::Invalid(refusal),
            None => broker_error(&format!("declare queue {}", queue.name), &e),
        })?;
    Ok(declared.message_count())
}

/// The declaration arguments; the same on every declaration, or the server refuses.
///
/// Every queue names its type, classic ones too, so a vhost's default queue type never
/// decides it. RabbitMQ 3.10 treats a classic queue declared without `x-queue-type` (by
/// jobfleet before `rabbitmq.queue_type`) as equivalent, both ways, so existing
/// deployments and older processes of a fleet keep declaring them
/// (`tests::quorum::classic_queues_accept_the_type_named_or_not`).
pub(super) fn arguments(queue: &QueueName) -> FieldTable {
    let mut arguments = FieldTable::default();
    if queue.prioritised {
        arguments.insert(
            "x-max-priority".into(),
            AMQPValue::LongInt(Priority::MAX.into()),
        );
    }
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(queue.queue_type.as_str().into()),
    );
    arguments
}

/// The refusal of a declaration whose queue exists with another type: names the queue,
/// both types and how to migrate. `None` for any other error. The server checks
/// `x-max-priority` before `x-queue-type`, so its `PRECONDITION_FAILED - inequivalent arg
/// '…' for queue '…' in vhost '/': received … but current is …` names either:
///
/// - `x-queue-type`: the current type is quoted (`none` is a classic queue);
/// - `x-max-priority` with a current value, on a quorum declaration: only classic queues
///   have priorities (quorum queues refuse the argument before RabbitMQ 4);
/// - `x-max-priority` without one, on a classic declaration: a quorum queue, or a classic
///   queue made without priorities, which the message cannot tell apart.
pub(super) fn mismatch(queue: &QueueName, error: &str) -> Option<String> {
    let current = error.split("but current is").nth(1)?;
    let wanted = queue.queue_type;
    let existing = if error.contains("inequivalent arg 'x-queue-type'") {
        // "received none but current is the value 'quorum' of type 'longstr'", or
        // "received the value 'quorum' of type 'longstr' but current is none".
        quoted(current).unwrap_or("classic")
    } else if error.contains("inequivalent arg 'x-max-priority'") {
        match (wanted, quoted(current)) {
            (QueueType::Quorum, Some(_)) => "classic",
            (QueueType::Classic, None) => "quorum (or classic without priorities)",
            _ => return None,
        }
    } else {
        return None;
    };
    Some(format!(
        "queue {} exists as a {existing} queue, but rabbitmq.queue_type is {wanted}: \
         RabbitMQ cannot change a queue's type. Set rabbitmq.queue_type to the queue's type \
         to keep using it, or move its jobs to {wanted} queues \
         (docs/high-availability.md, \"Migrating from classic to quorum queues\"). The \
         server said: {error}",
        queue.name
    ))
}

/// The first single-quoted word of `text`.
fn quoted(text: &str) -> Option<&str> {
    let start = text.find('\'')? + 1;
    let len = text[start..].find('\'')?;
    Some(&text[start..start + len])
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

//! Publishing a batch with pipelined publisher confirms.
//!
//! The whole batch goes out on one confirm-mode channel without waiting in between, and
//! the confirms are awaited together afterwards: the cost of a batch is one round trip,
//! not one per message. At most [`WINDOW`] confirms are outstanding per call, so a huge
//! batch does not pile up unbounded state. The channel's lock is held only while frames
//! are handed to the connection (delivery tags must follow the order of sends), never
//! while confirms are awaited, so concurrent publishers overlap their waits.
//!
//! A publish is `Ok` only if the server acked every message. A nack, or a message
//! returned as unroutable (all publishes are `mandatory`), is
//! [`BrokerError::NotAccepted`]; a connection or channel lost before every confirm
//! arrived is [`BrokerError::Connection`], and the next publish reconnects. Either way
//! some messages may have been stored: a retried batch can duplicate, never lose.

use std::collections::HashMap;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Confirmation};

use super::reconnect::Patience;
use super::{lost, priority_of, QueueName, Shared, REASON_HEADER};
use jobfleet_common::broker::{BrokerError, Message, Route};

/// Most confirms one publish call waits for at a time.
const WINDOW: usize = 1000;
/// Messages sent per hold of a channel's lock, so concurrent publishers interleave.
const SEND_CHUNK: usize = 250;
/// AMQP delivery mode 2: the server writes the message to disk (on a durable queue).
const PERSISTENT: u8 = 2;

/// Publishes `batch` and waits until the server confirmed every message.
pub(super) async fn publish(shared: &Shared, batch: Vec<Message>) -> Result<(), BrokerError> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut routes: Vec<Route> = batch.iter().map(|m| m.route.clone()).collect();
    routes.sort();
    routes.dedup();
    shared.declare(&routes, false).await?;
    let mut queues = HashMap::new();
    for route in routes {
        let queue = shared.topology.queue(&route)?;
        queues.insert(route, queue);
    }
    // Everything that can be refused is refused before the first send.
    let mut outgoing = Vec::with_capacity(batch.len());
    for message in &batch {
        let queue = &queues[&message.route];
        outgoing.push((
            queue.name.clone(),
            properties(queue, message)?,
            &message.body,
        ));
    }

    let session = shared.session(Patience::Call).await?;
    let slot = session.publisher();
    let mut confirms = FuturesUnordered::new();
    for chunk in outgoing.chunks(SEND_CHUNK) {
        while confirms.len() + chunk.len() > WINDOW {
            match confirms.next().await {
                Some(confirmation) => settle(shared, confirmation)?,
                None => break,
            }
        }
        let mut channel = slot.lock().await;
        let channel = session.confirming(&mut channel).await?;
        for (routing_key, properties, body) in chunk {
            let options = BasicPublishOptions {
                mandatory: true,
                immediate: false,
            };
            let confirm = channel
                .basic_publish(
                    "".into(),
                    routing_key.clone(),
                    options,
                    body,
                    properties.clone(),
                )
                .await
                .map_err(|e| lost("publish", &e))?;
            confirms.push(confirm);
        }
    }
    while let Some(confirmation) = confirms.next().await {
        settle(shared, confirmation)?;
    }
    Ok(())
}

/// Whether one confirm says the message is safely stored.
fn settle(shared: &Shared, confirmation: lapin::Result<Confirmation>) -> Result<(), BrokerError> {
    match confirmation.map_err(|e| lost("waiting for publisher confirms", &e))? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
            let queue = returned.delivery.routing_key.as_str();
            // The queue was deleted behind our back: declare it again next time.
            shared.topology.forget(queue);
            Err(BrokerError::NotAccepted(format!(
                "returned by the server from queue {queue}: {} {}",
                returned.reply_code, returned.reply_text
            )))
        }
        Confirmation::Nack(None) => Err(BrokerError::NotAccepted("nacked by the server".into())),
        // Every publishing channel is put in confirm mode before use; a channel that is
        // not has lost its state, and the message's fate is unknown.
        Confirmation::NotRequested => Err(BrokerError::Connection(
            "publisher confirms were not enabled".into(),
        )),
    }
}

/// The AMQP properties of `message` on `queue`.
fn properties(queue: &QueueName, message: &Message) -> Result<BasicProperties, BrokerError> {
    let mut properties = BasicProperties::default().with_delivery_mode(PERSISTENT);
    if let Some(level) = priority_of(queue, message.priority) {
        properties = properties.with_priority(level);
    }
    if let Some(content_type) = &message.content_type {
        let content_type = ShortString::try_new(content_type.as_str())
            .map_err(|e| BrokerError::Invalid(format!("content type: {e}")))?;
        properties = properties.with_content_type(content_type);
    }
    if let Some(reason) = &message.reason {
        let mut headers = FieldTable::default();
        headers.insert(
            REASON_HEADER.into(),
            AMQPValue::LongString(reason.as_str().into()),
        );
        properties = properties.with_headers(headers);
    }
    Ok(properties)
}

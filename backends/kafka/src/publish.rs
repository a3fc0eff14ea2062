//! Publishing: records handed to the idempotent producer back to back, delivery reports
//! awaited together afterwards, so a batch costs one round trip, not one per message.
//!
//! A publish is `Ok` only when every record was acknowledged by all in-sync replicas
//! (`acks=all`). A record not acknowledged within `message.timeout.ms` fails the call
//! with [`BrokerError::Connection`]; a record the cluster refuses fails it with
//! [`BrokerError::NotAccepted`] or [`BrokerError::Invalid`]. Either way some records may
//! have been stored: a retried batch can duplicate, never lose. The producer is
//! idempotent, so its own retries neither duplicate nor reorder records within a
//! partition: records with one key keep their publish order.

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use super::client::Logged;
use super::{kafka_error, CONTENT_TYPE_HEADER, REASON_HEADER};
use jobfleet_common::broker::BrokerError;

/// One record to produce: a published message, or a delivery being given back.
#[derive(Clone, Debug)]
pub(super) struct Record {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub body: Bytes,
    pub content_type: Option<String>,
    pub reason: Option<String>,
}

impl Record {
    /// The record a consumed message was produced as (for giving it back).
    pub fn from_message(message: &impl rdkafka::message::Message) -> Self {
        let header = |name: &str| {
            let headers = message.headers()?;
            let found = headers.iter().find(|h| h.key == name)?;
            found.value.map(|v| String::from_utf8_lossy(v).into_owned())
        };
        Self {
            topic: message.topic().to_string(),
            key: message.key().map(<[u8]>::to_vec),
            body: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
            content_type: header(CONTENT_TYPE_HEADER),
            reason: header(REASON_HEADER),
        }
    }

    fn headers(&self) -> OwnedHeaders {
        let mut headers = OwnedHeaders::new_with_capacity(2);
        if let Some(content_type) = &self.content_type {
            headers = headers.insert(Header {
                key: CONTENT_TYPE_HEADER,
                value: Some(content_type.as_str()),
            });
        }
        if let Some(reason) = &self.reason {
            headers = headers.insert(Header {
                key: REASON_HEADER,
                value: Some(reason.as_str()),
            });
        }
        headers
    }
}

/// Produces `records` in order and waits for every delivery report.
pub(super) async fn send(
    producer: &FutureProducer<Logged>,
    records: &[Record],
) -> Result<(), BrokerError> {
    let mut reports = FuturesUnordered::new();
    for record in records {
        loop {
            let mut future = FutureRecord::<[u8], [u8]>::to(&record.topic)
                .payload(&record.body[..])
                .headers(record.headers());
            if let Some(key) = &record.key {
                future = future.key(&key[..]);
            }
            match producer.send_result(future) {
                Ok(report) => {
                    reports.push(report);
                    break;
                }
                // librdkafka's local queue is full: wait for a report, then try again
                // (the same record, so the order is kept).
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    match reports.next().await {
                        Some(report) => delivered(report).await?,
                        None => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                    }
                }
                Err((e, _)) => return Err(produce_error(&record.topic, &e)),
            }
        }
    }
    while let Some(report) = reports.next().await {
        delivered(report).await?;
    }
    Ok(())
}

/// Whether one delivery report says the record is stored.
async fn delivered(
    report: <DeliveryFuture as std::future::Future>::Output,
) -> Result<(), BrokerError> {
    match report {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, message))) => Err(produce_error(message.topic(), &e)),
        // The producer went away before reporting: the broker is being closed.
        Err(_) => Err(BrokerError::Closed),
    }
}

/// Maps a produce failure to whether retrying can help.
fn produce_error(topic: &str, e: &KafkaError) -> BrokerError {
    let context = format!("publish to {topic}");
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageTimedOut) => BrokerError::Connection(format!(
            "{context}: not acknowledged within {}ms: {e}",
            super::client::MESSAGE_TIMEOUT_MS
        )),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed,
        ) => BrokerError::Invalid(format!("{context}: {e}")),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            BrokerError::NotAccepted(format!("{context}: {e}"))
        }
        _ => kafka_error(&context, e),
    }
}

//! Settling a delivery: ack marks its offset finished and stores the partition's new
//! position; requeue (and a delivery dropped unsettled) publishes the record again, at
//! the end of its partition, and only then marks the offset finished.
//!
//! A give-back that cannot be published leaves the offset unfinished: nothing of the
//! partition is committed past it, and the record is fetched again after the next
//! restart or rebalance. A delivery settled after its partition was revoked moves no
//! offset; the partition's new owner fetches it again (a duplicate, absorbed by the
//! completion marker).

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use rdkafka::consumer::Consumer as _;
use rdkafka::Offset;
use tokio::runtime::Handle;

use super::lane::{list, KafkaConsumer, Lane};
use super::ledger::Ticket;
use super::publish::Record;
use super::{lock, Shared};
use jobfleet_common::broker::{Acker, BrokerError};

/// Settles one delivery of one stream.
pub(super) struct KafkaAcker {
    shared: Arc<Shared>,
    lane: Arc<Lane>,
    consumer: Weak<KafkaConsumer>,
    /// Taken when settled.
    ticket: Option<Ticket>,
    /// The record as fetched, for giving it back.
    record: Record,
}

impl KafkaAcker {
    pub fn new(
        shared: Arc<Shared>,
        lane: Arc<Lane>,
        consumer: Weak<KafkaConsumer>,
        ticket: Ticket,
        record: Record,
    ) -> Self {
        Self {
            shared,
            lane,
            consumer,
            ticket: Some(ticket),
            record,
        }
    }
}

#[async_trait]
impl Acker for KafkaAcker {
    async fn ack(mut self: Box<Self>) -> Result<(), BrokerError> {
        if let Some(ticket) = self.ticket.take() {
            settle(&self.lane, &self.consumer, &ticket, true);
        }
        Ok(())
    }

    async fn requeue(mut self: Box<Self>) -> Result<(), BrokerError> {
        let Some(ticket) = self.ticket.take() else {
            return Ok(());
        };
        give_back(
            &self.shared,
            &self.lane,
            &self.consumer,
            &ticket,
            &self.record,
        )
        .await
    }
}

impl Drop for KafkaAcker {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let Ok(runtime) = Handle::try_current() else {
            // No runtime to publish on: leave the offset unfinished, so it is fetched
            // again after a restart.
            settle(&self.lane, &self.consumer, &ticket, false);
            return;
        };
        let (shared, lane, consumer) = (
            self.shared.clone(),
            self.lane.clone(),
            self.consumer.clone(),
        );
        let record = self.record.clone();
        let tracker = self.shared.tasks.clone();
        runtime.spawn(tracker.track_future(async move {
            if let Err(e) = give_back(&shared, &lane, &consumer, &ticket, &record).await {
                tracing::warn!(
                    topic = %record.topic, error = %e,
                    "kafka give-back of a dropped delivery"
                );
            }
        }));
    }
}

/// Publishes `record` again, then settles `ticket` as finished; if the publish fails
/// the offset stays unfinished.
async fn give_back(
    shared: &Shared,
    lane: &Lane,
    consumer: &Weak<KafkaConsumer>,
    ticket: &Ticket,
    record: &Record,
) -> Result<(), BrokerError> {
    let sent = shared.send(std::slice::from_ref(record)).await;
    settle(lane, consumer, ticket, sent.is_ok());
    sent
}

/// Settles `ticket` in the ledger and stores its partition's new position, if it moved.
fn settle(lane: &Lane, consumer: &Weak<KafkaConsumer>, ticket: &Ticket, finished: bool) {
    {
        let mut ledger = lock(&lane.ledger);
        if let Some(position) = ledger.settle(ticket, finished) {
            // Stored under the ledger's lock, so the polling task (which waits for the
            // last settle before closing the consumer) never closes it before the store,
            // and this temporary strong reference is never the consumer's last.
            if let Some(consumer) = consumer.upgrade() {
                let mut positions = list(std::slice::from_ref(&ticket.partition));
                let stored = positions
                    .set_all_offsets(Offset::Offset(position))
                    .and_then(|()| consumer.store_offsets(&positions));
                if let Err(e) = stored {
                    // The partition was revoked meanwhile: its new owner starts from the
                    // last commit, which is safe.
                    let partition = &ticket.partition;
                    tracing::debug!(?partition, error = %e, "kafka store offset");
                }
            }
        }
    }
    lane.settled();
}

//! What one consumer stream shares between its picks, its polling task, its rebalance
//! callbacks and its ackers: the [`Lane`] (the stream's ledger and wake-ups), the
//! consumer type, and the rebalance callbacks that keep the ledger in step with the
//! assignment.
//!
//! Below both `consume` (which opens streams and polls them) and `acker` (which settles
//! their deliveries), so neither imports the other's internals.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::OwnedMessage;
use rdkafka::TopicPartitionList;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::client::{client_error, log_line};
use super::ledger::{Ledger, Partition};
use super::lock;

/// The consumer type of a stream.
pub(super) type KafkaConsumer = StreamConsumer<Rebalancer>;

/// What a stream, its polling task, its rebalance callbacks and its ackers share.
pub(super) struct Lane {
    pub ledger: Mutex<Ledger<OwnedMessage>>,
    /// For the stream: something may be pickable now.
    pub changed: Notify,
    /// For the polling task: an assignment, a settle, or the stream went away.
    pub wake: Notify,
    /// Partitions assigned whose backlog has not been asked for yet.
    pub fresh: Mutex<Vec<Partition>>,
    /// The stream was dropped: stop fetching, end once every delivery is settled.
    pub detached: AtomicBool,
    /// Cancelled when the polling task ends: the stream ends too.
    pub ended: CancellationToken,
    /// The consumer group, for log lines.
    pub group: String,
}

impl Lane {
    /// A lane over `ledger` for a member of `group`, with nothing assigned yet.
    pub fn new(ledger: Ledger<OwnedMessage>, group: String) -> Self {
        Self {
            ledger: Mutex::new(ledger),
            changed: Notify::new(),
            wake: Notify::new(),
            fresh: Mutex::default(),
            detached: AtomicBool::new(false),
            ended: CancellationToken::new(),
            group,
        }
    }

    /// A delivery was settled: the stream may pick again, the task may be able to end.
    pub fn settled(&self) {
        self.changed.notify_one();
        self.wake.notify_one();
    }
}

/// A topic-partition list of `partitions`.
pub(super) fn list(partitions: &[Partition]) -> TopicPartitionList {
    let mut list = TopicPartitionList::with_capacity(partitions.len());
    for p in partitions {
        list.add_partition(&p.topic, p.partition);
    }
    list
}

/// The partitions in a rebalance's list.
fn partitions(list: &TopicPartitionList) -> Vec<Partition> {
    list.elements()
        .iter()
        .map(|e| Partition {
            topic: e.topic().into(),
            partition: e.partition(),
        })
        .collect()
}

/// Keeps a stream's ledger in step with its assignment. Called by librdkafka from the
/// polling task, inside `recv`.
pub(super) struct Rebalancer {
    lane: Arc<Lane>,
}

impl Rebalancer {
    /// The callbacks of the consumer that feeds `lane`.
    pub fn new(lane: Arc<Lane>) -> Self {
        Self { lane }
    }
}

impl ClientContext for Rebalancer {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_line(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        client_error(&error, reason);
    }
}

impl ConsumerContext for Rebalancer {
    /// Revoked partitions lose their buffered records before librdkafka commits what was
    /// stored for them (and then lets them go).
    ///
    /// Partitions this stream paused (full buffers) are resumed before they go: librdkafka
    /// keeps a partition paused across a revocation, so if the next assignment gave it
    /// back to this member, whose ledger starts it unpaused, it would never be fetched
    /// again. Resuming while still assigned, before the unassign, keeps librdkafka's own
    /// fetch start for a later assignment (from the committed offset) the newest op.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(revoked) => {
                let revoked = partitions(revoked);
                tracing::debug!(group = %self.lane.group, revoked = revoked.len(), "kafka revoke");
                let paused = lock(&self.lane.ledger).revoke(&revoked);
                lock(&self.lane.fresh).retain(|p| !revoked.contains(p));
                if !paused.is_empty() {
                    if let Err(e) = consumer.resume(&list(&paused)) {
                        tracing::warn!(group = %self.lane.group, error = %e, "kafka resume on revoke");
                    }
                }
            }
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.lane.group, error = %e, "kafka rebalance failed");
            }
            Rebalance::Assign(_) => {}
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            let assigned = partitions(assigned);
            tracing::debug!(group = %self.lane.group, assigned = assigned.len(), "kafka assign");
            lock(&self.lane.ledger).assign(assigned.iter().cloned());
            lock(&self.lane.fresh).extend(assigned);
            self.lane.wake.notify_one();
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::debug!(group = %self.lane.group, error = %e, "kafka offset commit");
        }
    }
}

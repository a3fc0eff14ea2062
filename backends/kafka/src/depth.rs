//! Backlogs: where a consumer group resumes each partition and how far the partition
//! goes. A stream waits for its backlog after an assignment; `depth` sums it as lag.
//!
//! librdkafka's offset and watermark queries block, so they run on the blocking pool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::client::Logged;
use super::ledger::Partition;
use super::{kafka_error, lock, Shared, REQUEST_TIMEOUT};
use jobfleet_common::broker::{BrokerError, Route};

/// How long [`backlogs_within`] waits before asking again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// One partition's backlog for a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Backlog {
    pub partition: Partition,
    /// The committed offset, or the low watermark where nothing (valid) is committed:
    /// where the group resumes (`auto.offset.reset=earliest`).
    pub start: i64,
    /// The offset the next record will get.
    pub high: i64,
}

impl Backlog {
    /// Records between where the group resumes and the end.
    pub fn lag(&self) -> u64 {
        u64::try_from(self.high - self.start).unwrap_or(0)
    }

    /// The last offset the group has still to read, if any.
    pub fn last(&self) -> Option<i64> {
        (self.high > self.start).then(|| self.high - 1)
    }
}

/// The backlogs of `partitions` for `client`'s group. Blocking.
pub(super) fn backlogs<C: ConsumerContext>(
    client: &impl Consumer<C>,
    partitions: &[Partition],
) -> Result<Vec<Backlog>, KafkaError> {
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let mut list = TopicPartitionList::with_capacity(partitions.len());
    for p in partitions {
        list.add_partition(&p.topic, p.partition);
    }
    let committed = client.committed_offsets(list, REQUEST_TIMEOUT)?;
    let mut backlogs = Vec::with_capacity(partitions.len());
    for p in partitions {
        let (low, high) = client.fetch_watermarks(&p.topic, p.partition, REQUEST_TIMEOUT)?;
        let committed = committed
            .find_partition(&p.topic, p.partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(n) => Some(n),
                _ => None,
            });
        // A committed offset below the low watermark points at deleted records.
        let start = committed.unwrap_or(low).max(low);
        backlogs.push(Backlog {
            partition: p.clone(),
            start,
            high,
        });
    }
    Ok(backlogs)
}

/// [`backlogs`], asked again every [`RETRY_PAUSE`] until it answers or `within` has
/// passed. Right after a topic is created, or while a partition's leader moves, Kafka
/// answers a watermark query with `NotLeaderForPartition` for a moment (seen on Apache
/// Kafka 4.1 within milliseconds of `CreateTopics`). Blocking.
pub(super) fn backlogs_within<C: ConsumerContext>(
    client: &impl Consumer<C>,
    partitions: &[Partition],
    within: Duration,
) -> Result<Vec<Backlog>, KafkaError> {
    let deadline = Instant::now() + within;
    loop {
        match backlogs(client, partitions) {
            Err(e) if Instant::now() + RETRY_PAUSE < deadline => {
                tracing::debug!(error = %e, "kafka backlog query, asking again");
                std::thread::sleep(RETRY_PAUSE);
            }
            answer => return answer,
        }
    }
}

/// The partitions of `topics` that exist. Blocking.
fn partitions_of<C: ConsumerContext>(
    client: &impl Consumer<C>,
    topics: &[String],
) -> Result<Vec<Partition>, KafkaError> {
    let mut partitions = Vec::new();
    for topic in topics {
        let metadata = client.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
        for t in metadata.topics() {
            // An unknown topic answers with an error and no partitions: it holds nothing.
            if t.error().is_some() {
                continue;
            }
            let name: Arc<str> = t.name().into();
            partitions.extend(t.partitions().iter().map(|p| Partition {
                topic: name.clone(),
                partition: p.id(),
            }));
        }
    }
    Ok(partitions)
}

/// The lag of `route`'s consumer group over all its topics.
pub(super) async fn lag(shared: &Shared, route: &Route) -> Result<u64, BrokerError> {
    let group = shared.names.group(route);
    let reader = reader(shared, &group)?;
    let topics = shared.names.topics(route);
    let counted = tokio::task::spawn_blocking(move || {
        let partitions = partitions_of(&*reader, &topics)?;
        let backlogs = backlogs(&*reader, &partitions)?;
        Ok::<u64, KafkaError>(backlogs.iter().map(Backlog::lag).sum())
    })
    .await
    .map_err(|e| BrokerError::Connection(format!("depth query: {e}")))?;
    counted.map_err(|e| kafka_error(&format!("depth of group {group}"), &e))
}

/// The cached client that reads `group`'s committed offsets without joining it.
fn reader(shared: &Shared, group: &str) -> Result<Arc<BaseConsumer<Logged>>, BrokerError> {
    let mut readers = lock(&shared.readers);
    if let Some(reader) = readers.get(group) {
        return Ok(reader.clone());
    }
    let reader: BaseConsumer<Logged> = shared
        .settings
        .group_reader(group)
        .create_with_context(Logged)
        .map_err(|e| kafka_error("offset reader", &e))?;
    let reader = Arc::new(reader);
    readers.insert(group.to_string(), reader.clone());
    Ok(reader)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backlog(start: i64, high: i64) -> Backlog {
        let partition = Partition {
            topic: "t".into(),
            partition: 0,
        };
        Backlog {
            partition,
            start,
            high,
        }
    }

    #[test]
    fn lag_and_last_offset() {
        assert_eq!(backlog(3, 10).lag(), 7);
        assert_eq!(backlog(3, 10).last(), Some(9));
        assert_eq!(backlog(10, 10).lag(), 0);
        assert_eq!(backlog(10, 10).last(), None);
        assert_eq!(backlog(12, 10).lag(), 0, "never negative");
    }
}

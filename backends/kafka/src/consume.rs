//! Consumer streams: one group member per stream and a task that polls it; what they
//! share with the rebalance callbacks and the ackers (the stream's [`Lane`], which keeps
//! its [`Ledger`]) is in `lane`.
//!
//! The polling task moves every fetched record into the ledger at once (so picks see
//! all bands, not librdkafka's queue order) and pauses a partition whose buffer is full.
//! The stream picks from the ledger whenever it has room under its prefetch. Ackers
//! settle in the ledger and store the partition's new position with `store_offsets`;
//! librdkafka commits stored positions every second, on revocation and on close.
//!
//! After an assignment, picks wait until every new partition has fetched the backlog it
//! had (its end is asked for on the blocking pool) or filled its buffer, for at most
//! [`CATCH_UP_LIMIT`]: otherwise whichever band's fetch answered first would run first.
//!
//! Dropping the stream stops picks and fetching; the member stays in its group until
//! every delivery it handed out is settled (their positions can still be stored), then
//! commits and leaves. Records fetched and never handed out are not committed past.
//!
//! With `kafka.instance_id` set, each consumer is a static member of its group
//! (`group.instance.id`), named by the process's id, the group and the lowest index not
//! used by another open consumer of the same group in this process: a restarted process
//! opens its consumers under the names they had and gets their partitions back. A static
//! member does not leave its group on close; its partitions move only after
//! `session.timeout.ms` without it (Kafka's rule for static members).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::message::{Message as _, OwnedMessage};
use tokio::time::Instant;

use super::acker::KafkaAcker;
use super::depth::backlogs_within;
use super::lane::{list, KafkaConsumer, Lane, Rebalancer};
use super::ledger::{Entry, Ledger, Partition, Picked};
use super::membership::Instance;
use super::publish::Record;
use super::{kafka_error, lock, Shared};
use jobfleet_common::broker::{BrokerError, Consumer, Delivery, Route};

/// Longest wait for new partitions' backlogs before picks start anyway.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(2);

/// Starts a stream of deliveries from `route`, at most `prefetch` unsettled (0: no
/// limit).
pub(super) async fn consume(
    shared: Arc<Shared>,
    route: &Route,
    prefetch: u16,
) -> Result<Consumer, BrokerError> {
    let topics = shared.names.topics(route);
    shared.topics.create(&topics, false).await?;
    let group = shared.names.group(route);
    let ledger = Ledger::new(shared.names.bands(), shared.buffer_records);
    let lane = Arc::new(Lane::new(ledger, group.clone()));
    let context = Rebalancer::new(lane.clone());
    let mut config = shared.settings.consumer(&group);
    let instance = shared
        .settings
        .instance_id()
        .map(|id| shared.instances.take(id, &group));
    if let Some(instance) = &instance {
        config.set("group.instance.id", &instance.name);
    }
    let consumer: KafkaConsumer = config
        .create_with_context(context)
        .map_err(|e| kafka_error(&format!("consumer for {route}"), &e))?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&names)
        .map_err(|e| kafka_error(&format!("subscribe to {names:?}"), &e))?;
    let consumer = Arc::new(consumer);
    let subscription = Subscription {
        shared: shared.clone(),
        lane: lane.clone(),
        consumer: Arc::downgrade(&consumer),
        limit: if prefetch == 0 {
            usize::MAX
        } else {
            usize::from(prefetch)
        },
    };
    let poller = Poller {
        shared: shared.clone(),
        lane,
        consumer,
        instance,
        route: route.clone(),
        paused_all: false,
    };
    shared.tasks.spawn(poller.run());
    let stream = futures::stream::unfold(subscription, |mut subscription| async move {
        let delivery = subscription.next().await?;
        Some((Ok(delivery), subscription))
    });
    Ok(stream.boxed())
}

/// The stream's side: picks from the ledger.
struct Subscription {
    shared: Arc<Shared>,
    lane: Arc<Lane>,
    /// Weak, so the consumer is only ever dropped (a blocking close) by its task.
    consumer: Weak<KafkaConsumer>,
    limit: usize,
}

impl Subscription {
    /// The next delivery; `None` once the broker is closed or the consumer failed.
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            let picked = lock(&self.lane.ledger).pick(self.limit);
            if let Some(picked) = picked {
                return Some(self.delivery(picked));
            }
            tokio::select! {
                () = self.shared.closed.cancelled() => return None,
                () = self.lane.ended.cancelled() => return None,
                () = self.lane.changed.notified() => {}
            }
        }
    }

    fn delivery(&self, picked: Picked<OwnedMessage>) -> Delivery {
        if let (Some(partition), Some(consumer)) = (&picked.resume, self.consumer.upgrade()) {
            if let Err(e) = consumer.resume(&list(std::slice::from_ref(partition))) {
                tracing::debug!(group = %self.lane.group, error = %e, "kafka resume");
            }
        }
        let record = Record::from_message(&picked.entry.item);
        let (body, content_type, reason) = (
            record.body.clone(),
            record.content_type.clone(),
            record.reason.clone(),
        );
        let acker = KafkaAcker::new(
            self.shared.clone(),
            self.lane.clone(),
            self.consumer.clone(),
            picked.ticket,
            record,
        );
        // Kafka does not say whether a record was handed out before.
        Delivery::new(body, content_type, reason, false, Box::new(acker))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.lane.detached.store(true, Ordering::SeqCst);
        self.lane.wake.notify_one();
    }
}

/// The polling task's state: the only strong owner of the consumer.
struct Poller {
    shared: Arc<Shared>,
    lane: Arc<Lane>,
    consumer: Arc<KafkaConsumer>,
    /// The consumer's static-membership name, given back once it is closed.
    instance: Option<Instance>,
    route: Route,
    paused_all: bool,
}

impl Poller {
    async fn run(mut self) {
        let mut catch_up_until: Option<Instant> = None;
        loop {
            let detached = self.lane.detached.load(Ordering::SeqCst);
            if detached && lock(&self.lane.ledger).unsettled() == 0 {
                break;
            }
            if detached && !self.paused_all {
                self.pause_all();
            }
            let deadline = async move {
                match catch_up_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.shared.closed.cancelled() => break,
                () = self.lane.wake.notified() => {
                    if self.ask_backlogs() {
                        catch_up_until = Some(Instant::now() + CATCH_UP_LIMIT);
                    }
                }
                () = deadline => {
                    catch_up_until = None;
                    lock(&self.lane.ledger).stop_catching_up();
                    self.lane.changed.notify_one();
                }
                received = self.consumer.recv() => match received {
                    Ok(message) => self.buffer(message.detach()),
                    Err(e) if is_fatal(&e) => {
                        let group = &self.lane.group;
                        tracing::error!(%group, error = %e, "kafka consumer failed");
                        break;
                    }
                    Err(e) => tracing::warn!(group = %self.lane.group, error = %e, "kafka consume"),
                },
            }
        }
        self.lane.ended.cancel();
        // Closing commits the stored positions and leaves the group; it blocks.
        let (consumer, instance) = (self.consumer, self.instance);
        self.shared.tasks.spawn_blocking(move || {
            drop(consumer);
            drop(instance);
        });
    }

    /// Puts a fetched record in the ledger, pausing its partition if the buffer is full.
    fn buffer(&self, message: OwnedMessage) {
        if self.lane.detached.load(Ordering::SeqCst) {
            // Never handed out and never tracked: the stored position stays below it.
            return;
        }
        let topic = message.topic();
        let band = self.shared.names.band_of_topic(&self.route, topic);
        let partition = Partition {
            topic: topic.into(),
            partition: message.partition(),
        };
        let entry = Entry {
            partition: partition.clone(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            item: message,
        };
        let (group, offset) = (&self.lane.group, entry.offset);
        tracing::trace!(%group, ?partition, offset, "kafka fetched");
        let pause = lock(&self.lane.ledger).push(band, entry);
        if pause {
            if let Err(e) = self.consumer.pause(&list(&[partition])) {
                tracing::debug!(group = %self.lane.group, error = %e, "kafka pause");
            }
        }
        self.lane.changed.notify_one();
    }

    /// Asks for the backlogs of newly assigned partitions in the background; returns
    /// whether there were any.
    fn ask_backlogs(&self) -> bool {
        let fresh = std::mem::take(&mut *lock(&self.lane.fresh));
        if fresh.is_empty() {
            return false;
        }
        let (consumer, lane) = (self.consumer.clone(), self.lane.clone());
        self.shared.tasks.spawn_blocking(move || {
            let asked = std::time::Instant::now();
            match backlogs_within(&*consumer, &fresh, CATCH_UP_LIMIT) {
                Ok(found) => {
                    let backlog: u64 = found.iter().map(|b| b.lag()).sum();
                    let took = asked.elapsed();
                    tracing::debug!(group = %lane.group, ?took, backlog, "kafka backlogs");
                    let mut ledger = lock(&lane.ledger);
                    for backlog in found {
                        ledger.caught_up_to(&backlog.partition, backlog.last());
                    }
                }
                // Picks start at the deadline instead.
                Err(e) => tracing::warn!(group = %lane.group, error = %e, "kafka backlog query"),
            }
            lane.changed.notify_one();
            // The last owner may be this closure: closing blocks, which is fine here.
            drop(consumer);
        });
        true
    }

    /// Stops fetching once the stream is gone.
    fn pause_all(&mut self) {
        self.paused_all = true;
        match self.consumer.assignment() {
            Ok(assignment) => {
                if let Err(e) = self.consumer.pause(&assignment) {
                    tracing::debug!(group = %self.lane.group, error = %e, "kafka pause");
                }
            }
            Err(e) => tracing::debug!(group = %self.lane.group, error = %e, "kafka assignment"),
        }
    }
}

/// Whether a consume error leaves the consumer unusable.
fn is_fatal(e: &KafkaError) -> bool {
    matches!(e, KafkaError::MessageConsumptionFatal(_))
}

//! The Kafka broker (librdkafka through `rdkafka`): priority bands as topics, an
//! idempotent producer with pipelined delivery reports, consumer groups that commit only
//! what is finished, and per-key order. `docs/kafka.md` explains the design.
//!
//! # Naming
//!
//! Under the namespace `ns`, a ready route is one topic per priority band
//! (`ns.q.{queue}.b{band}`, see [`band_of`]); the shared routes are `ns.delayed`,
//! `ns.failed` and `ns.dead`. Every consumer of a route joins the route's consumer group
//! (`ns.g.q.{queue}`, `ns.g.delayed`, …), so the workers of a queue share its partitions.
//! Topics are created on first use with the configured partitions and replication.
//!
//! # Semantics where Kafka differs
//!
//! - Priority is by band, not by level: within a band, jobs run in fetch order.
//! - [`Message::key`] is the record key: jobs with one key go to one partition of their
//!   band's topic and run one at a time, in publish order.
//! - Kafka cannot give a message back; a requeued (or dropped unsettled) delivery is
//!   published again at the end of its partition, then counted as finished.
//!   [`Delivery::redelivered`](jobfleet_common::broker::Delivery::redelivered) is always `false`.
//! - [`Depth::unacked`] is `None`: the committed offset cannot tell running from waiting.
//!
//! # Layout
//!
//! - this file: [`KafkaBroker`], connecting, closing, error mapping.
//! - `client`: the URL, client settings and log routing every client shares.
//! - `topics`: topic and group names, [`band_of`], creating and deleting topics.
//! - `publish`: producing batches with delivery reports.
//! - `consume`: consumer streams and their polling task.
//! - `lane`: what a stream, its polling task, its rebalance callbacks and its ackers
//!   share: the stream's ledger and wake-ups, the consumer type, rebalance handling.
//! - `ledger`, `offsets`: what a stream hands out next and which offsets may be committed.
//! - `membership`: static-membership names (`kafka.instance_id`).
//! - `acker`: settling deliveries.
//! - `depth`: backlogs and consumer-group lag.

mod acker;
mod client;
mod consume;
mod depth;
mod lane;
mod ledger;
mod membership;
mod offsets;
mod publish;
mod topics;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::AdminClient;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use jobfleet_common::broker::{Broker, BrokerError, Consumer, Depth, Message, Route};
use jobfleet_common::config::KafkaConfig;

use client::{Logged, Settings};
use publish::Record;
use topics::{Names, Topics};

pub use client::Settings as ClientSettings;
pub use topics::{await_leaders, band_of};

/// The header that carries the body's content type.
pub const CONTENT_TYPE_HEADER: &str = "content-type";
/// The header that carries a dead message's reason.
pub const REASON_HEADER: &str = "x-jobfleet-reason";

/// How long connecting and each metadata or offset query may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`Broker`] on a Kafka cluster (or a Kafka-compatible one). Cheap to clone: clones
/// share one producer, one admin client and the topics created so far.
#[derive(Clone)]
pub struct KafkaBroker {
    shared: Arc<Shared>,
}

/// What every operation, consumer stream and acker of one broker shares.
struct Shared {
    settings: Settings,
    names: Names,
    topics: Topics,
    /// Records each stream buffers per partition (`kafka.buffer_records`).
    buffer_records: usize,
    producer: FutureProducer<Logged>,
    /// Clients that read a group's committed offsets, one per group asked about.
    readers: Mutex<HashMap<String, Arc<BaseConsumer<Logged>>>>,
    /// Static-membership indexes in use by this process's consumers, per group.
    instances: membership::Instances,
    /// Cancelled by [`KafkaBroker::close`]: consumer streams end.
    closed: CancellationToken,
    /// Polling tasks, give-backs of dropped deliveries, consumer shutdowns.
    tasks: TaskTracker,
}

impl KafkaBroker {
    /// Connects to the cluster at `url` (`kafka://host:port[,host:port]`) and keeps every
    /// topic under `namespace`. Fails at once if no server answers within 10 s; a
    /// connection lost later is re-made by librdkafka.
    pub async fn connect(
        url: &str,
        namespace: &str,
        config: &KafkaConfig,
    ) -> Result<Self, BrokerError> {
        let legal = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
        if namespace.is_empty() || !namespace.chars().all(legal) {
            return Err(BrokerError::Invalid(format!(
                "namespace {namespace:?} must be non-empty and use only letters, digits, \
                 `.`, `_` and `-` (Kafka topic names)"
            )));
        }
        let settings = Settings::new(url, config)?;
        let invalid = |e: KafkaError| BrokerError::Invalid(format!("kafka client: {e}"));
        let producer: FutureProducer<Logged> = settings
            .producer()
            .create_with_context(Logged)
            .map_err(invalid)?;
        let admin: AdminClient<Logged> = settings
            .admin()
            .create_with_context(Logged)
            .map_err(invalid)?;
        let probe = producer.clone();
        let reached = tokio::task::spawn_blocking(move || {
            probe
                .client()
                .fetch_metadata(None, REQUEST_TIMEOUT)
                .map(|_| ())
        })
        .await;
        match reached {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(BrokerError::Connection(format!(
                    "no answer from {}: {e}",
                    settings.bootstrap()
                )))
            }
            Err(e) => return Err(BrokerError::Connection(format!("metadata probe: {e}"))),
        }
        tracing::debug!(?settings, namespace, "kafka broker connected");
        let topics = Topics::new(admin, config.partitions, config.replication_factor);
        let shared = Arc::new(Shared {
            settings,
            names: Names::new(namespace, config.bands),
            topics,
            buffer_records: config.buffer_records,
            producer,
            readers: Mutex::default(),
            instances: membership::Instances::default(),
            closed: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        Ok(Self { shared })
    }
}

impl fmt::Debug for KafkaBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaBroker")
            .field("settings", &self.shared.settings)
            .field("names", &self.shared.names)
            .finish()
    }
}

#[async_trait]
impl Broker for KafkaBroker {
    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn declare(&self, queues: &[String]) -> Result<(), BrokerError> {
        let topics: Vec<String> = routes(queues)
            .iter()
            .flat_map(|r| self.shared.names.topics(r))
            .collect();
        self.shared.topics.create(&topics, true).await
    }

    async fn publish(&self, batch: Vec<Message>) -> Result<(), BrokerError> {
        if batch.is_empty() {
            return Ok(());
        }
        let routes: BTreeSet<&Route> = batch.iter().map(|m| &m.route).collect();
        let topics: Vec<String> = routes
            .iter()
            .flat_map(|r| self.shared.names.topics(r))
            .collect();
        self.shared.topics.create(&topics, false).await?;
        let records: Vec<Record> = batch
            .into_iter()
            .map(|m| Record {
                topic: self.shared.names.topic(&m.route, m.priority),
                key: m.key.map(String::into_bytes),
                body: m.body,
                content_type: m.content_type,
                reason: m.reason,
            })
            .collect();
        self.shared.send(&records).await
    }

    async fn consume(&self, route: &Route, prefetch: u16) -> Result<Consumer, BrokerError> {
        consume::consume(self.shared.clone(), route, prefetch).await
    }

    /// The route's consumer-group lag: for every partition, the high watermark minus the
    /// committed offset (the low watermark where nothing is committed), summed over the
    /// route's topics. Finished jobs count until their offsets are committed (every
    /// second); running ones count as ready, so `unacked` is `None`.
    async fn depth(&self, route: &Route) -> Result<Option<Depth>, BrokerError> {
        let ready = depth::lag(&self.shared, route).await?;
        Ok(Some(Depth {
            ready,
            unacked: None,
        }))
    }

    /// Ends every consumer stream, waits until their consumers have committed and left
    /// their groups and every give-back is published, then flushes the producer.
    async fn close(&self) {
        self.shared.closed.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
        let producer = self.shared.producer.clone();
        let readers: Vec<_> = lock(&self.shared.readers).drain().collect();
        let flushed = tokio::task::spawn_blocking(move || {
            drop(readers);
            producer.flush(REQUEST_TIMEOUT)
        })
        .await;
        if let Ok(Err(e)) = flushed {
            tracing::warn!(error = %e, "kafka producer flush on close");
        }
    }

    /// Deletes the topics of `queues`' ready routes and of the shared routes, e.g. when
    /// a test or an operator removes a namespace. Consumers of them should be stopped.
    async fn delete_routes(&self, queues: &[String]) -> Result<(), BrokerError> {
        let topics: BTreeSet<String> = routes(queues)
            .iter()
            .flat_map(|r| self.shared.names.topics(r))
            .collect();
        let topics: Vec<String> = topics.into_iter().collect();
        self.shared.topics.delete(&topics).await
    }
}

impl Shared {
    /// Produces `records` and waits for every delivery report; a topic the cluster no
    /// longer knows is forgotten, so the next publish creates it again.
    async fn send(&self, records: &[Record]) -> Result<(), BrokerError> {
        if self.closed.is_cancelled() {
            return Err(BrokerError::Closed);
        }
        publish::send(&self.producer, records).await
    }
}

/// The ready routes of `queues` and the shared routes.
fn routes(queues: &[String]) -> Vec<Route> {
    let shared = [Route::Delayed, Route::Failed, Route::Dead];
    queues
        .iter()
        .map(|q| Route::Ready(q.clone()))
        .chain(shared)
        .collect()
}

/// Maps a client error to whether retrying can help: refused credentials, permissions
/// and configuration will be refused again; everything else is the connection.
fn kafka_error(context: &str, e: &KafkaError) -> BrokerError {
    let text = format!("{context}: {e}");
    match e {
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) => {
            return BrokerError::Invalid(text)
        }
        KafkaError::Canceled => return BrokerError::Closed,
        _ => {}
    }
    match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::InvalidArgument
            | RDKafkaErrorCode::InvalidConfig
            | RDKafkaErrorCode::PolicyViolation
            | RDKafkaErrorCode::InvalidReplicationFactor
            | RDKafkaErrorCode::InvalidPartitions,
        ) => BrokerError::Invalid(text),
        _ => BrokerError::Connection(text),
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every critical
/// section here leaves the data whole).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

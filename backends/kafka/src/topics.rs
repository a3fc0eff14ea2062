//! Topic and consumer-group names, priority bands, and creating topics.
//!
//! | route | topics | consumer group |
//! | --- | --- | --- |
//! | `Ready(q)` | `ns.q.{q}.b0` … `ns.q.{q}.b{bands-1}` | `ns.g.q.{q}` |
//! | `Delayed` | `ns.delayed` | `ns.g.delayed` |
//! | `Failed` | `ns.failed` | `ns.g.failed` |
//! | `Dead` | `ns.dead` | `ns.g.dead` |
//!
//! Topic names allow only `[a-zA-Z0-9._-]`; a queue name with `:` (allowed by jobfleet)
//! has each `:` written as `.` and a hash of the original name appended, so two queue
//! names never share a topic.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use super::client::Logged;
use super::{kafka_error, lock, REQUEST_TIMEOUT};
use jobfleet_common::broker::{BrokerError, Route};
use jobfleet_common::job::Priority;

/// How long the cluster may take to create or delete topics.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a new topic's metadata is asked for until every partition has a leader.
const LEADER_POLL: Duration = Duration::from_millis(20);

/// The band a priority falls in with `bands` bands: `level × bands / 10`, rounded down
/// (levels above 9 count as 9). With 3 bands: 0–3 → 0, 4–6 → 1, 7–9 → 2; with 10 each
/// level is its own band; with 1 there is no priority.
pub fn band_of(priority: Priority, bands: u8) -> u8 {
    let bands = bands.clamp(1, Priority::MAX + 1);
    let level = priority.level().min(Priority::MAX);
    level * bands / (Priority::MAX + 1)
}

/// The names of one namespace's topics and groups.
#[derive(Clone, Debug)]
pub(super) struct Names {
    namespace: String,
    bands: u8,
}

impl Names {
    pub fn new(namespace: &str, bands: u8) -> Self {
        Self {
            namespace: namespace.to_string(),
            bands: bands.clamp(1, Priority::MAX + 1),
        }
    }

    /// Bands per ready route.
    pub fn bands(&self) -> u8 {
        self.bands
    }

    /// Every topic of `route`, lowest band first.
    pub fn topics(&self, route: &Route) -> Vec<String> {
        let ns = &self.namespace;
        match route {
            Route::Ready(q) => {
                let q = queue_part(q);
                (0..self.bands)
                    .map(|b| format!("{ns}.q.{q}.b{b}"))
                    .collect()
            }
            Route::Delayed => vec![format!("{ns}.delayed")],
            Route::Failed => vec![format!("{ns}.failed")],
            Route::Dead => vec![format!("{ns}.dead")],
        }
    }

    /// The topic a message with `priority` goes to on `route`.
    pub fn topic(&self, route: &Route, priority: Priority) -> String {
        let mut topics = self.topics(route);
        let band = match route {
            Route::Ready(_) => usize::from(band_of(priority, self.bands)),
            _ => 0,
        };
        topics.swap_remove(band.min(topics.len() - 1))
    }

    /// The band of one of `route`'s topics (0 for the shared routes).
    pub fn band_of_topic(&self, route: &Route, topic: &str) -> u8 {
        let position = self.topics(route).iter().position(|t| t == topic);
        position.and_then(|b| u8::try_from(b).ok()).unwrap_or(0)
    }

    /// The consumer group every consumer of `route` joins.
    pub fn group(&self, route: &Route) -> String {
        let ns = &self.namespace;
        match route {
            Route::Ready(q) => format!("{ns}.g.q.{}", queue_part(q)),
            Route::Delayed => format!("{ns}.g.delayed"),
            Route::Failed => format!("{ns}.g.failed"),
            Route::Dead => format!("{ns}.g.dead"),
        }
    }
}

/// A queue name as it may appear in a topic name.
fn queue_part(queue: &str) -> String {
    if !queue.contains(':') {
        return queue.to_string();
    }
    // FNV-1a: stable across builds and platforms, unlike `DefaultHasher`.
    let hash = queue.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{}.h{hash:08x}", queue.replace(':', "."))
}

/// Topics created through this broker, so a publish creates each one at most once.
pub(super) struct Topics {
    admin: Arc<AdminClient<Logged>>,
    partitions: i32,
    replication: i32,
    created: Mutex<HashSet<String>>,
}

impl Topics {
    pub fn new(admin: AdminClient<Logged>, partitions: i32, replication: i32) -> Self {
        Self {
            admin: Arc::new(admin),
            partitions,
            replication,
            created: Mutex::default(),
        }
    }

    /// Creates those of `topics` not known to exist (all of them when `force`), and
    /// returns once every partition of them has a leader. A topic that already exists
    /// is fine, whatever its partition count.
    pub async fn create(&self, topics: &[String], force: bool) -> Result<(), BrokerError> {
        let missing: Vec<&String> = {
            let created = lock(&self.created);
            topics
                .iter()
                .filter(|t| force || !created.contains(*t))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let new: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|t| {
                let replication = TopicReplication::Fixed(self.replication);
                NewTopic::new(t, self.partitions, replication)
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        let results = self
            .admin
            .create_topics(&new, &options)
            .await
            .map_err(|e| kafka_error("create topics", &e))?;
        let mut made = Vec::with_capacity(results.len());
        for result in results {
            match result {
                Ok(topic) | Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => made.push(topic),
                Err((topic, code)) => return Err(admin_error(&topic, code)),
            }
        }
        let admin = self.admin.clone();
        let led = made.clone();
        tokio::task::spawn_blocking(move || await_leaders(&admin, &led))
            .await
            .map_err(|e| BrokerError::Connection(format!("topic metadata: {e}")))??;
        lock(&self.created).extend(made);
        Ok(())
    }

    /// Deletes `topics`; ones that do not exist are fine.
    pub async fn delete(&self, topics: &[String]) -> Result<(), BrokerError> {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        let results = self
            .admin
            .delete_topics(&names, &options)
            .await
            .map_err(|e| kafka_error("delete topics", &e))?;
        for result in results {
            match result {
                Ok(topic) | Err((topic, RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                    lock(&self.created).remove(&topic);
                }
                Err((topic, code)) => return Err(admin_error(&topic, code)),
            }
        }
        Ok(())
    }
}

/// Waits until every partition of `topics` has a leader. Kafka answers `CreateTopics`
/// once the controller has recorded a topic; for a moment after, the brokers answer
/// metadata and watermark queries on it with `NotLeaderForPartition`, and a client that
/// asked then backs off before asking again (Apache Kafka 4.1: a new consumer's first
/// backlog query failed, and its next answered 1.7 s later; the bench's bare-rdkafka
/// consumer subscribed then failed with `UnknownTopicOrPartition`). Blocking.
pub fn await_leaders<C: ClientContext>(
    admin: &AdminClient<C>,
    topics: &[String],
) -> Result<(), BrokerError> {
    let deadline = Instant::now() + ADMIN_TIMEOUT;
    for topic in topics {
        loop {
            let metadata = admin
                .inner()
                .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
                .map_err(|e| kafka_error(&format!("metadata of topic {topic}"), &e))?;
            let led = metadata.topics().iter().all(|t| {
                t.error().is_none()
                    && !t.partitions().is_empty()
                    && t.partitions()
                        .iter()
                        .all(|p| p.error().is_none() && p.leader() >= 0)
            });
            if led {
                break;
            }
            if Instant::now() >= deadline {
                return Err(BrokerError::Connection(format!(
                    "topic {topic}: partitions without a leader {ADMIN_TIMEOUT:?} after creating it"
                )));
            }
            std::thread::sleep(LEADER_POLL);
        }
    }
    Ok(())
}

/// A refused topic operation: the request itself is wrong unless the cluster is busy.
fn admin_error(topic: &str, code: RDKafkaErrorCode) -> BrokerError {
    let text = format!("topic {topic}: {code}");
    match code {
        RDKafkaErrorCode::RequestTimedOut
        | RDKafkaErrorCode::NotController
        | RDKafkaErrorCode::BrokerNotAvailable
        | RDKafkaErrorCode::LeaderNotAvailable
        | RDKafkaErrorCode::OperationTimedOut => BrokerError::Connection(text),
        _ => BrokerError::Invalid(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(level: u8) -> Priority {
        Priority::new(level).expect("0-9")
    }

    #[test]
    fn bands_split_levels_evenly() {
        let three: Vec<u8> = (0..=9).map(|l| band_of(p(l), 3)).collect();
        assert_eq!(three, [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]);
        let two: Vec<u8> = (0..=9).map(|l| band_of(p(l), 2)).collect();
        assert_eq!(two, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
        let ten: Vec<u8> = (0..=9).map(|l| band_of(p(l), 10)).collect();
        assert_eq!(ten, (0..=9).collect::<Vec<u8>>());
        assert!((0..=9).all(|l| band_of(p(l), 1) == 0));
        assert_eq!(band_of(p(9), 0), 0, "no bands is one band");
        assert_eq!(
            band_of(p(9), 200),
            9,
            "more bands than levels is one per level"
        );
        assert_eq!(band_of(Priority::out_of_range(42), 3), 2);
    }

    #[test]
    fn names_per_route() {
        let names = Names::new("ns", 3);
        let ready = Route::Ready("mail".into());
        assert_eq!(
            names.topics(&ready),
            ["ns.q.mail.b0", "ns.q.mail.b1", "ns.q.mail.b2"]
        );
        assert_eq!(names.topic(&ready, p(8)), "ns.q.mail.b2");
        assert_eq!(names.topic(&Route::Dead, p(8)), "ns.dead");
        assert_eq!(names.band_of_topic(&ready, "ns.q.mail.b1"), 1);
        assert_eq!(names.group(&ready), "ns.g.q.mail");
        assert_eq!(names.group(&Route::Delayed), "ns.g.delayed");
        assert_ne!(
            names.group(&Route::Ready("delayed".into())),
            names.group(&Route::Delayed)
        );
    }

    #[test]
    fn colons_make_distinct_legal_topic_names() {
        let names = Names::new("ns", 1);
        let a = names.topics(&Route::Ready("a:b".into())).remove(0);
        let b = names.topics(&Route::Ready("a.b".into())).remove(0);
        assert_ne!(a, b);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
    }
}

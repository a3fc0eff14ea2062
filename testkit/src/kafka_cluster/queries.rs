//! What a [`KafkaCluster`] reports, asked of its running nodes through rdkafka: the
//! registered brokers, each partition's leader and replicas, high watermarks, a group's
//! committed offsets, a topic's configuration.

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::metadata::Metadata;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{KafkaCluster, QUERY_TIMEOUT};

impl KafkaCluster {
    /// The ids of the brokers the cluster reports as registered (not fenced).
    pub fn brokers(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = self
            .metadata(None)
            .map(|m| m.brokers().iter().map(|b| b.id()).collect())
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    /// Each partition of `topic` with its leader (`-1`: none) and its replicas.
    pub fn partitions(&self, topic: &str) -> Vec<(i32, i32, Vec<i32>)> {
        let Some(metadata) = self.metadata(Some(topic)) else {
            return Vec::new();
        };
        let mut partitions: Vec<(i32, i32, Vec<i32>)> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .flat_map(|t| t.partitions())
            .map(|p| (p.id(), p.leader(), p.replicas().to_vec()))
            .collect();
        partitions.sort_unstable_by_key(|p| p.0);
        partitions
    }

    /// The leader of one partition, if it has one.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        self.partitions(topic)
            .into_iter()
            .find(|p| p.0 == partition)
            .map(|p| p.1)
            .filter(|&l| l >= 0)
    }

    /// The high watermark (records written) of one partition.
    pub fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        let client = self.client(None);
        client
            .fetch_watermarks(topic, partition, QUERY_TIMEOUT)
            .ok()
            .map(|w| w.1)
    }

    /// The value of the topic configuration `key` (e.g. `min.insync.replicas`) of `topic`.
    pub async fn topic_config(&self, topic: &str, key: &str) -> Option<String> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.live_bootstrap())
            .create()
            .expect("an admin client from a valid configuration");
        let options = AdminOptions::new().request_timeout(Some(QUERY_TIMEOUT));
        let described = admin
            .describe_configs(&[ResourceSpecifier::Topic(topic)], &options)
            .await
            .ok()?;
        described
            .into_iter()
            .filter_map(Result::ok)
            .find_map(|r| r.get(key).and_then(|e| e.value.clone()))
    }

    /// The offset `group` committed on one partition, if any.
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        let client = self.client(Some(group));
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, partition);
        let committed = client.committed_offsets(list, QUERY_TIMEOUT).ok()?;
        match committed.find_partition(topic, partition)?.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }

    pub(super) fn metadata(&self, topic: Option<&str>) -> Option<Metadata> {
        self.client(None).fetch_metadata(topic, QUERY_TIMEOUT).ok()
    }

    /// A client of the live nodes (a group's, to read its offsets, never joining it).
    fn client(&self, group: Option<&str>) -> BaseConsumer {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.live_bootstrap())
            .set("enable.auto.commit", "false")
            .set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg);
        if let Some(group) = group {
            config.set("group.id", group);
        }
        config
            .create()
            .expect("a Kafka client from a valid configuration")
    }

    /// The running nodes' client listeners, `host:port,…`.
    pub(super) fn live_bootstrap(&self) -> String {
        let live: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        live.join(",")
    }
}

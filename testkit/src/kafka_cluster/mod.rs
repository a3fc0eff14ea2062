//! [`KafkaCluster`]: three Apache Kafka nodes of a test's own, in KRaft mode, each broker
//! and controller in one process, the three controllers one quorum of three voters. It is
//! the one-node setup of `scripts/services.sh` (the same cached jars, the same
//! `scripts/kafka/server.properties`), three times: each node gets a client and a
//! controller port on loopback and a data directory under one temporary directory, all
//! three are formatted with one cluster id, and the internal topics (committed offsets,
//! transactions) get three replicas, so a lost broker loses no committed offset. Nodes
//! are `kill -9`ed and restarted by id; all are killed and their files removed when the
//! cluster is dropped, whether the test passed or panicked. The shared Kafka
//! (`TEST_KAFKA_BROKERS`) is never touched.
//!
//! Starting takes ~25 s on a 2-core machine (three JVMs at once); each JVM's heap is
//! kept at 512 MiB.
//!
//! # Layout
//!
//! - this file: [`KafkaCluster`]: starting, killing and restarting nodes, waiting for
//!   the brokers, the backends on it.
//! - `node`: one node's files and process: its properties, `kafka-storage format`, its
//!   JVM, the cached jars.
//! - `queries`: what the cluster reports: brokers, leaders, replicas, watermarks,
//!   committed offsets, topic configuration.

mod node;
mod queries;

use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jobfleet_common::{Backends, Config, Priority};
use jobfleet_connect::kafka::band_of;

use crate::backends::{purge_store, BackendFactory, KafkaRedis};
use node::{cluster_id, free_ports, kafka_libs, Node};

/// Nodes in the cluster.
pub const NODES: i32 = 3;
/// Longest a node may take to start, or the cluster to see a change of brokers.
pub(super) const START_LIMIT: Duration = Duration::from_secs(120);
/// How long one metadata or offset query may take.
pub(super) const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// What to tell someone whose machine lacks Kafka's jars or Java.
pub const HOW_TO_INSTALL_KAFKA: &str = "this test starts its own three-node Apache Kafka \
    from the jars scripts/services.sh caches: run `scripts/services.sh up kafka` once (it \
    needs Java 17+ and Maven, and fetches the jars from Maven Central into \
    ~/.cache/jobfleet/kafka-VERSION/libs)";

/// Three test-owned Kafka nodes, ids 1, 2 and 3.
pub struct KafkaCluster {
    /// How long [`KafkaCluster::start`] took, formatting included.
    pub started_in: Duration,
    dir: PathBuf,
    nodes: Vec<Node>,
}

impl KafkaCluster {
    /// Formats and starts three nodes and waits until all three brokers are registered.
    /// Panics with how to install Kafka if its jars or Java are missing.
    pub fn start() -> Self {
        let started = Instant::now();
        let libs = kafka_libs();
        let dir = std::env::temp_dir().join(format!("jobfleet-kafka-{}", uuid::Uuid::now_v7()));
        let ports = free_ports(2 * NODES as usize);
        let nodes: Vec<Node> = (1..=NODES)
            .zip(ports.chunks(2))
            .map(|(id, p)| Node {
                id,
                port: p[0],
                controller_port: p[1],
                dir: dir.join(format!("node{id}")),
                child: None,
            })
            .collect();
        let mut cluster = Self {
            started_in: Duration::ZERO,
            dir,
            nodes,
        };
        let voters = cluster.voters();
        let id = cluster_id();
        let formats: Vec<(i32, Child)> = cluster
            .nodes
            .iter()
            .map(|node| {
                node.write_properties(&voters);
                (node.id, node.format(&libs, &id))
            })
            .collect();
        for (node, mut format) in formats {
            let status = format.wait().expect("wait for kafka-storage format");
            let log = cluster.node(node).dir.join("format.log");
            assert!(
                status.success(),
                "formatting Kafka node {node} failed: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        for id in 1..=NODES {
            cluster.node_mut(id).spawn(&libs);
        }
        cluster.wait_brokers(&(1..=NODES).collect::<Vec<_>>());
        cluster.started_in = started.elapsed();
        cluster
    }

    /// The bootstrap servers, `host:port,…`.
    pub fn bootstrap(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        hosts.join(",")
    }

    /// The broker URL jobfleet connects with: every node.
    pub fn url(&self) -> String {
        format!("kafka://{}", self.bootstrap())
    }

    /// Backends on this cluster and the shared Redis, for [`Ctx`](crate::Ctx).
    pub fn factory(&self) -> crate::Factory {
        Arc::new(ClusterRedis { url: self.url() })
    }

    /// `kill -9` of node `id`: no controlled shutdown, no leadership handed over.
    pub fn kill(&mut self, id: i32) {
        let node = self.node_mut(id);
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `id` again on its ports and data, and waits until it answers and all
    /// brokers are registered again. (Right after a kill the cluster still lists the
    /// dead broker until the controller fences it, so the list alone proves nothing.)
    pub fn restart(&mut self, id: i32) {
        let libs = kafka_libs();
        self.node_mut(id).spawn(&libs);
        let deadline = Instant::now() + START_LIMIT;
        while !self.node(id).serves() {
            self.node_mut(id).assert_alive();
            assert!(
                Instant::now() < deadline,
                "Kafka node {id} did not answer within {START_LIMIT:?} of its restart"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        self.wait_brokers(&(1..=NODES).collect::<Vec<_>>());
    }

    /// Waits until exactly the brokers `ids` are registered; panics with the nodes' logs'
    /// tails after [`START_LIMIT`].
    pub fn wait_brokers(&mut self, ids: &[i32]) {
        let deadline = Instant::now() + START_LIMIT;
        while Instant::now() < deadline {
            if self.brokers() == ids {
                return;
            }
            for node in &mut self.nodes {
                node.assert_alive();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "the Kafka cluster did not come to brokers {ids:?} within {START_LIMIT:?} (it \
             reports {:?}); logs under {}",
            self.brokers(),
            self.dir.display()
        );
    }

    /// The `controller.quorum.voters` line's value: every node's controller listener.
    fn voters(&self) -> String {
        let voters: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
            .collect();
        voters.join(",")
    }

    fn node(&self, id: i32) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .expect("a node id of the cluster")
    }

    fn node_mut(&mut self, id: i32) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no Kafka node {id}: ids are 1 to {NODES}"))
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        for id in 1..=NODES {
            self.kill(id);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kafka on a [`KafkaCluster`], Redis (the shared one) as the store: [`KafkaRedis`] with
/// the cluster's URL.
struct ClusterRedis {
    url: String,
}

#[async_trait]
impl BackendFactory for ClusterRedis {
    fn name(&self) -> &'static str {
        "kafka-cluster+redis"
    }

    fn configure(&self, config: &mut Config) {
        KafkaRedis.configure(config);
        config.broker = self.url.parse().expect("a kafka:// URL");
    }

    async fn backends(&self, config: &Config) -> Backends {
        match jobfleet_connect::connect(config).await {
            Ok(b) => b,
            Err(e) => panic!(
                "{e}\nThe Kafka cluster checks need the test Redis: {}",
                crate::HOW_TO_START
            ),
        }
    }

    fn priority_band(&self, config: &Config, priority: u8) -> u8 {
        let priority = Priority::new(priority).expect("a level 0-9");
        band_of(priority, config.kafka.bands)
    }

    async fn cleanup(&self, config: &Config, _queues: &[String]) {
        purge_store(config).await;
    }
}

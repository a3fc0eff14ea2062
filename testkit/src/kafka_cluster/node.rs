//! One node of a [`KafkaCluster`](super::KafkaCluster): its ports, its directory (the
//! properties, the data, `server.log`) and its JVM, run from the jars `scripts/services.sh`
//! caches with the shared `scripts/kafka/server.properties` and what makes the node one of
//! three.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use super::HOW_TO_INSTALL_KAFKA;

/// One node: its ports, its directory (properties, data, `server.log`) and its process.
pub(super) struct Node {
    pub(super) id: i32,
    pub(super) port: u16,
    pub(super) controller_port: u16,
    pub(super) dir: PathBuf,
    pub(super) child: Option<Child>,
}

impl Node {
    /// The shared one-node properties, then what makes this node one of three: its id
    /// and ports, the quorum, three replicas of the internal topics.
    pub(super) fn write_properties(&self, voters: &str) {
        std::fs::create_dir_all(self.dir.join("data")).expect("create a Kafka node's directory");
        let shared = std::fs::read_to_string(repo_root().join("scripts/kafka/server.properties"))
            .expect("read scripts/kafka/server.properties");
        let (id, port, controller) = (self.id, self.port, self.controller_port);
        let own = format!(
            "\n# One of three nodes (testkit/src/kafka_cluster.rs); later lines win.\n\
             node.id={id}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             controller.quorum.voters={voters}\n\
             log.dirs={}\n\
             offsets.topic.replication.factor=3\n\
             offsets.topic.num.partitions=10\n\
             transaction.state.log.replication.factor=3\n\
             transaction.state.log.min.isr=2\n\
             share.coordinator.state.topic.replication.factor=3\n\
             share.coordinator.state.topic.min.isr=2\n",
            self.dir.join("data").display()
        );
        std::fs::write(self.properties(), shared + &own).expect("write server.properties");
    }

    fn properties(&self) -> PathBuf {
        self.dir.join("server.properties")
    }

    /// `kafka-storage format` with the cluster's id (a static quorum needs no
    /// `--standalone`), started in the background.
    pub(super) fn format(&self, libs: &Path, cluster_id: &str) -> Child {
        let log = std::fs::File::create(self.dir.join("format.log")).expect("format.log");
        java(libs, &self.dir)
            .args([
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                cluster_id,
            ])
            .arg("--config")
            .arg(self.properties())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run java ({e}): {HOW_TO_INSTALL_KAFKA}"))
    }

    /// Starts the node's JVM (heap 512 MiB).
    pub(super) fn spawn(&mut self, libs: &Path) {
        assert!(
            self.child.is_none(),
            "Kafka node {} is already running",
            self.id
        );
        let out = std::fs::File::create(self.dir.join("stdout.log")).expect("stdout.log");
        let child = java(libs, &self.dir)
            .args([
                "-Xms128m",
                "-Xmx512m",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
            ])
            .arg("-Djava.awt.headless=true")
            .arg("kafka.Kafka")
            .arg(self.properties())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run java ({e}): {HOW_TO_INSTALL_KAFKA}"));
        self.child = Some(child);
    }

    /// Whether the node itself answers a metadata request that lists it as a broker.
    pub(super) fn serves(&self) -> bool {
        let client: Result<BaseConsumer, _> = ClientConfig::new()
            .set("bootstrap.servers", format!("127.0.0.1:{}", self.port))
            .set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg)
            .create();
        client
            .ok()
            .and_then(|c| c.fetch_metadata(None, Duration::from_secs(2)).ok())
            .is_some_and(|m| m.brokers().iter().any(|b| b.id() == self.id))
    }

    /// Panics with the tail of the node's log if its process ended by itself.
    pub(super) fn assert_alive(&mut self) {
        let Some(child) = &mut self.child else { return };
        if !matches!(child.try_wait(), Ok(None)) {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            let tail: String = log.lines().rev().take(30).collect::<Vec<_>>().join("\n");
            panic!(
                "Kafka node {} exited; its log's last lines (newest first):\n{tail}",
                self.id
            );
        }
    }
}

/// A `java` command on Kafka's jars, logging to `dir/server.log`.
fn java(libs: &Path, dir: &Path) -> Command {
    let mut command = Command::new("java");
    command
        .arg("-cp")
        .arg(libs.join("*"))
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            repo_root()
                .join("scripts/kafka/log4j2.properties")
                .display()
        ))
        .arg(format!("-Dkafka.logs.dir={}", dir.display()))
        .stdin(Stdio::null());
    command
}

/// The jars `scripts/services.sh` caches, for the version `scripts/kafka/pom.xml` names.
pub(super) fn kafka_libs() -> PathBuf {
    let pom = std::fs::read_to_string(repo_root().join("scripts/kafka/pom.xml"))
        .expect("read scripts/kafka/pom.xml");
    let version = pom
        .split("<kafka.version>")
        .nth(1)
        .and_then(|rest| rest.split("</kafka.version>").next())
        .expect("scripts/kafka/pom.xml names <kafka.version>");
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set");
    let libs = cache.join(format!("jobfleet/kafka-{version}/libs"));
    assert!(
        libs.join(".complete").exists(),
        "Apache Kafka {version}'s jars are not in {}: {HOW_TO_INSTALL_KAFKA}",
        libs.display()
    );
    libs
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A Kafka cluster id: 16 bytes (a UUID v7: time and random bits) in URL-safe base64 without padding, not starting
/// with `-` (the tools would read it as a flag).
pub(super) fn cluster_id() -> String {
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(uuid::Uuid::now_v7().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// `count` distinct free loopback ports (all bound at once, so none repeats).
pub(super) fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

//! The settings every Kafka client of one broker shares: bootstrap servers from the
//! `kafka://` URL, the configured extra properties (SASL, TLS), and librdkafka's log
//! routed to `tracing`.

use std::collections::BTreeMap;
use std::fmt;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::ClientConfig;

use jobfleet_common::broker::BrokerError;
use jobfleet_common::config::KafkaConfig;
use jobfleet_common::redact::redact;

/// How long a delivery report may take before a publish fails with a connection error.
pub(super) const MESSAGE_TIMEOUT_MS: &str = "30000";
/// Longest a fetch waits for records when none are ready. Kafka answers as soon as a
/// record is there, so this only paces empty polls; some Kafka-compatible servers hold
/// every fetch this long, and then it is the delivery latency (librdkafka's default is
/// 500 ms).
const FETCH_WAIT_MAX_MS: &str = "100";
/// How often stored offsets are committed. Short, so a crash redelivers little and
/// `depth` soon reflects what was acknowledged.
const AUTO_COMMIT_INTERVAL_MS: &str = "1000";

/// Bootstrap servers and extra properties, and the client configurations jobfleet's
/// producer, consumers and admin client are made from (public as
/// [`ClientSettings`](super::ClientSettings), so a bare-client baseline can be set up
/// exactly like them).
#[derive(Clone)]
pub struct Settings {
    bootstrap: String,
    properties: BTreeMap<String, String>,
    instance_id: Option<String>,
}

impl Settings {
    /// Parses `kafka://host:port[,host:port]` (a trailing `/` is allowed).
    pub fn new(url: &str, config: &KafkaConfig) -> Result<Self, BrokerError> {
        let invalid = || {
            BrokerError::Invalid(format!(
                "{:?} is not a kafka://host:port[,host:port] URL (credentials go in \
                 [kafka.properties]: sasl.username, sasl.password)",
                redact(url)
            ))
        };
        let rest = url.strip_prefix("kafka://").ok_or_else(invalid)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let hosts: Vec<&str> = rest.split(',').collect();
        let valid = |h: &&str| {
            h.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && !host.contains(['/', '@']) && port.parse::<u16>().is_ok()
            })
        };
        if !hosts.iter().all(valid) {
            return Err(invalid());
        }
        Ok(Self {
            bootstrap: hosts.join(","),
            properties: config.properties.clone(),
            instance_id: config.instance_id.clone(),
        })
    }

    /// This process's static-membership name (`kafka.instance_id`), if any.
    pub fn instance_id(&self) -> Option<&str> {
        self.instance_id.as_deref()
    }

    /// The bootstrap servers, for logs.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The configuration every client starts from: servers, then the extra properties
    /// (which may override anything but the settings jobfleet's guarantees rest on,
    /// set after them by the specific builders).
    fn base(&self) -> ClientConfig {
        // librdkafka's debug contexts (`kafka.properties.debug = "cgrp,fetch"`) log at
        // debug level: let them through when asked for.
        let level = if self.properties.contains_key("debug") {
            RDKafkaLogLevel::Debug
        } else {
            RDKafkaLogLevel::Warning
        };
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("client.id", "jobfleet")
            .set_log_level(level);
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// An idempotent producer: every message acknowledged by all in-sync replicas,
    /// retried without duplicates or reordering within a partition.
    pub fn producer(&self) -> ClientConfig {
        let mut config = self.base();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", MESSAGE_TIMEOUT_MS);
        config
    }

    /// A group member that stores offsets only for finished jobs and commits them in
    /// the background; new groups start at the beginning of the topics. Partitions are
    /// assigned by librdkafka's default (`range,roundrobin`), which splits every band's
    /// topic over the members (docs/kafka.md, "Rebalances").
    pub fn consumer(&self, group: &str) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", AUTO_COMMIT_INTERVAL_MS)
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS)
            .set("enable.partition.eof", "false");
        config
    }

    /// A client for committed offsets of `group` that never joins it.
    pub fn group_reader(&self, group: &str) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false");
        config
    }

    /// An admin client (topics) or a metadata client.
    pub fn admin(&self) -> ClientConfig {
        self.base()
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), shown(k, v)))
            .collect();
        f.debug_struct("Settings")
            .field("bootstrap", &self.bootstrap)
            .field("properties", &properties)
            .field("instance_id", &self.instance_id)
            .finish()
    }
}

/// A property's value as it may be logged.
fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    if key.to_ascii_lowercase().contains("password") {
        "***"
    } else {
        value
    }
}

/// Routes librdkafka's log lines and client errors to `tracing`.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Logged;

impl ClientContext for Logged {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_line(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        client_error(&error, reason);
    }
}

/// Offset readers use the default rebalance handling: they never join their group.
impl ConsumerContext for Logged {}

/// One librdkafka log line as a `tracing` event.
pub(super) fn log_line(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(facility, "librdkafka: {message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(facility, "librdkafka: {message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(facility, "librdkafka: {message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(facility, "librdkafka: {message}"),
    }
}

/// A client error librdkafka recovers from by itself (a lost broker connection is
/// re-made), so it is a warning, not a failure of any call.
pub(super) fn client_error(error: &KafkaError, reason: &str) {
    tracing::warn!(error = %error, reason, "kafka client error");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> Result<Settings, BrokerError> {
        Settings::new(url, &KafkaConfig::default())
    }

    #[test]
    fn parses_one_or_more_servers() {
        assert_eq!(
            settings("kafka://127.0.0.1:9092").map(|s| s.bootstrap).ok(),
            Some("127.0.0.1:9092".to_string())
        );
        assert_eq!(
            settings("kafka://a:1,b:2/").map(|s| s.bootstrap).ok(),
            Some("a:1,b:2".to_string())
        );
        for bad in [
            "amqp://a:1",
            "kafka://",
            "kafka://a",
            "kafka://a:x",
            "kafka://u:p@a:1",
        ] {
            assert!(
                matches!(settings(bad), Err(BrokerError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn passwords_are_never_shown() {
        let mut config = KafkaConfig::default();
        config
            .properties
            .insert("sasl.password".into(), "hunter2".into());
        config
            .properties
            .insert("sasl.username".into(), "jobs".into());
        let shown = format!(
            "{:?}",
            Settings::new("kafka://h:1", &config).expect("valid")
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("jobs"), "{shown}");
        // A password put in the URL (not supported) is refused without being echoed.
        let refused = settings("kafka://u:S3cret@127.0.0.1:1").expect_err("userinfo refused");
        assert!(!refused.to_string().contains("S3cret"), "{refused}");
        assert!(refused.to_string().contains("sasl.password"), "{refused}");
    }
}

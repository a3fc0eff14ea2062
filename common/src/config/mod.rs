//! One typed configuration for every role: the settings, their defaults, and the checks
//! that refuse values which parse but make no sense. Every error names the key and the
//! reason. How the layers (file, environment, flags) are read is in [`load`].

mod load;
mod redis;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::address::{BrokerAddr, StoreAddr};
use crate::limits::{humantime_serde_compat as hs, Limits};
use crate::retry::RetryPolicy;
pub use load::FILE_VAR;
pub use redis::{RedisConfig, MIN_RETENTION};

/// A configuration problem: the key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {reason}")]
pub struct ConfigError {
    /// The dotted key, e.g. `worker.concurrency`; `<file>` for the file as a whole.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl ConfigError {
    /// Schedule `name` of `[schedules]` is invalid: the key is `schedules.<name>`, or
    /// `schedules.<name>.<field>` for one of its fields.
    pub fn schedule(name: &str, e: crate::cron::InvalidSchedule) -> Self {
        let key = match e.field {
            "name" => format!("schedules.{name}"),
            field => format!("schedules.{name}.{field}"),
        };
        err(key, e.reason)
    }
}

fn err(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `embedded`, `amqp://…`/`amqps://…`, or `kafka://host:port[,host:port]`.
    pub broker: BrokerAddr,
    /// `embedded`, or `redis://…`/`rediss://…`.
    pub store: StoreAddr,
    /// Prefix of every broker route and store key, so fleets can share services.
    pub namespace: String,
    /// Bounds on jobs.
    pub limits: Limits,
    /// Worker settings.
    pub worker: WorkerConfig,
    /// Scheduler settings.
    pub scheduler: SchedulerConfig,
    /// Per-queue settings; queues not named here use `[queue_defaults]`.
    pub queues: BTreeMap<String, QueueConfig>,
    /// Settings for queues not named in `[queues]`.
    pub queue_defaults: QueueConfig,
    /// Kafka settings, used when `broker` is `kafka://…`.
    pub kafka: KafkaConfig,
    /// Redis settings, used when `store` is `redis://…`: persistence and retention.
    pub redis: RedisConfig,
    /// Logging.
    pub log: LogConfig,
    /// Cron schedules, `[schedules.<name>]`: written into the store by each scheduler at
    /// start-up (see docs/schedules.md).
    pub schedules: BTreeMap<String, crate::cron::ScheduleSpec>,
    /// Where the data kinds (`ingest`, `train`, `predict`) keep datasets, models and
    /// outputs (see docs/data-jobs.md).
    pub data: DataConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            broker: BrokerAddr::Embedded,
            store: StoreAddr::Embedded,
            namespace: "jobfleet".into(),
            limits: Limits::default(),
            worker: WorkerConfig::default(),
            scheduler: SchedulerConfig::default(),
            queues: BTreeMap::new(),
            queue_defaults: QueueConfig::default(),
            kafka: KafkaConfig::default(),
            redis: RedisConfig::default(),
            log: LogConfig::default(),
            schedules: BTreeMap::new(),
            data: DataConfig::default(),
        }
    }
}

/// Storage and bounds of the data kinds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// A directory (`./jobfleet-data`, `/srv/data`, `file:///srv/data`), or a bucket:
    /// `s3://bucket[/prefix]` or `gs://bucket[/prefix]`, credentials from the usual
    /// `AWS_*` / `GOOGLE_*` environment variables. Every worker of a fleet must see the
    /// same data (a shared volume or a bucket).
    pub url: String,
    /// The fraction of an ingest's rows that may be rejected (quarantined) before the job
    /// fails; a job's payload can lower or raise it.
    pub max_rejected_fraction: f64,
    /// Rows per chunk: ingest writes and predict reads, predicts and checkpoints this many
    /// at a time, so memory stays bounded whatever the input's size.
    pub chunk_rows: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            url: "./jobfleet-data".into(),
            max_rejected_fraction: 0.05,
            chunk_rows: 65_536,
        }
    }
}

/// Worker settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Queues to consume.
    pub queues: Vec<String>,
    /// Jobs run at once, at most.
    pub concurrency: usize,
    /// Unsettled deliveries per queue; defaults to `concurrency` so priority order holds.
    pub prefetch: Option<u16>,
    /// How long a draining worker lets running jobs finish before handing them back.
    #[serde(with = "hs")]
    pub grace_period: Duration,
    /// A job lock's TTL; renewed every third of it while the job runs.
    #[serde(with = "hs")]
    pub lock_ttl: Duration,
    /// How long a running job's execution lease lives without renewal; renewed every
    /// third of it. A worker that cannot renew stops the job before the lease runs out,
    /// and a job whose worker died waits this long before it runs elsewhere. See
    /// docs/architecture.md, "Execution leases".
    #[serde(with = "hs")]
    pub lease_ttl: Duration,
    /// How long a job whose lock is taken waits before it is tried again.
    #[serde(with = "hs")]
    pub lock_conflict_delay: Duration,
    /// How often the worker reports itself alive.
    #[serde(with = "hs")]
    pub heartbeat: Duration,
    /// How often running jobs are checked for cancel requests.
    #[serde(with = "hs")]
    pub cancel_poll: Duration,
    /// Jobs whose timeout is longer than this are held in the store and acknowledged
    /// early, so a broker's delivery timeout (RabbitMQ's `consumer_timeout`) cannot kill
    /// them; see docs/architecture.md, "Long jobs".
    #[serde(with = "hs")]
    pub ack_early_after: Duration,
    /// How long a held job survives its worker's silence before the scheduler runs it
    /// again elsewhere.
    #[serde(with = "hs")]
    pub hold_lease: Duration,
    /// Address of the worker's HTTP endpoint (`/healthz`, `/readyz`, `/metrics`); none
    /// when unset.
    pub http: Option<String>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            queues: vec!["default".into()],
            concurrency: 16,
            prefetch: None,
            grace_period: Duration::from_secs(30),
            lock_ttl: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(15),
            lock_conflict_delay: Duration::from_secs(1),
            heartbeat: Duration::from_secs(5),
            cancel_poll: Duration::from_millis(500),
            ack_early_after: Duration::from_secs(15 * 60),
            hold_lease: Duration::from_secs(120),
            http: None,
        }
    }
}

impl WorkerConfig {
    /// The prefetch to ask the broker for.
    pub fn effective_prefetch(&self) -> u16 {
        self.prefetch
            .unwrap_or_else(|| self.concurrency.clamp(1, u16::MAX as usize) as u16)
    }
}

/// Scheduler settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Longest sleep between looks at the delayed set.
    #[serde(with = "hs")]
    pub tick: Duration,
    /// Jobs claimed per release round.
    pub release_batch: usize,
    /// How long claimed jobs stay leased before another scheduler may release them: what
    /// a scheduler that dies mid-release costs its jobs in delay. It must outlast one
    /// round's publish (a batch of `release_batch` with confirms: milliseconds on a
    /// healthy broker); a round that outlasts it only publishes some jobs twice.
    #[serde(with = "hs")]
    pub release_lease: Duration,
    /// Address of the HTTP endpoint (health, metrics, the JSON API and the dashboard);
    /// none when unset.
    pub http: Option<String>,
    /// The access token the JSON API and the dashboard require. Optional while `http`
    /// is a loopback address; required (checked at load) for any other.
    pub http_token: Option<AccessToken>,
    /// How long the leader's lease on firing schedules lasts without renewal (renewed
    /// every third of it): a standby scheduler takes over within about 4/3 of this
    /// after the leader dies.
    #[serde(with = "hs")]
    pub leader_lease: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(200),
            release_batch: 500,
            release_lease: Duration::from_secs(5),
            http: None,
            http_token: None,
            leader_lease: Duration::from_secs(3),
        }
    }
}

/// An HTTP endpoint's `host:port`, parsed, or the error naming `key`.
fn check_http_addr(key: &str, addr: &str) -> Result<std::net::SocketAddr, ConfigError> {
    addr.parse().map_err(|_| {
        err(
            key,
            format!("{addr:?} is not an IP address and port (host:port)"),
        )
    })
}

/// An OTLP/HTTP collector's base URL: `http://HOST[:PORT][/PATH]`, nothing after it.
/// Plain HTTP only: the exporter is built without TLS (run a collector or agent beside
/// the worker, as collectors are usually deployed).
fn check_otlp_endpoint(endpoint: &str) -> Result<(), String> {
    // Never echo what might hold a password: any `@` refuses the URL unseen.
    if endpoint.contains('@') {
        return Err(
            "the URL carries credentials (an `@`): run the collector beside the worker \
             without them"
                .into(),
        );
    }
    // A secret in the query (`?token=…`) is masked.
    let shown = crate::redact::redact(endpoint);
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return Err(format!(
            "{shown:?} is not an http:// URL (e.g. http://127.0.0.1:4318; TLS is not built in: \
             export to a collector beside the worker)"
        ));
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(format!(
            "{shown:?} needs a host, and no query or fragment (`/v1/traces` is appended)"
        ));
    }
    Ok(())
}

/// A secret the HTTP API checks requests against. It never shows in `Debug` output, so a
/// logged configuration cannot leak it; it serialises whole (a config written for a
/// child process must keep it).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccessToken(String);

impl AccessToken {
    /// The shortest token accepted.
    pub const MIN_LEN: usize = 16;

    /// A token from its text; [`Config::validate`] checks its length.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token's text, to compare a request's against.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn validate(&self) -> Result<(), String> {
        if self.0.chars().count() < Self::MIN_LEN {
            return Err(format!("must be at least {} characters", Self::MIN_LEN));
        }
        if !self.0.chars().all(|c| c.is_ascii_graphic()) {
            return Err("must be printable ASCII without spaces".into());
        }
        Ok(())
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

/// Per-queue settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Retry timing for jobs that do not carry their own.
    pub retry: RetryPolicy,
}

/// Kafka settings. Kafka has no per-message priority: each queue is `bands` topics, one
/// per priority band, polled highest first (see docs/kafka.md).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Priority bands per queue, 1–10: priorities 0–9 are split evenly over them.
    pub bands: u8,
    /// Partitions of each topic jobfleet creates.
    pub partitions: i32,
    /// Replication factor of each topic jobfleet creates.
    pub replication_factor: i32,
    /// Extra librdkafka properties for every client, e.g. `"security.protocol" = "SASL_SSL"`,
    /// `"sasl.mechanisms" = "PLAIN"`, `"sasl.username"`, `"sasl.password"`,
    /// `"ssl.ca.location"`. Values of keys containing `password` are never logged.
    pub properties: BTreeMap<String, String>,
    /// This process's stable name for static group membership (Kafka's KIP-345), e.g. a
    /// StatefulSet pod name: each consumer joins its group as
    /// `group.instance.id = {instance_id}.{group}.{n}`, so a process restarted with the
    /// same name takes its partitions back without a rebalance. No two live processes may
    /// share one (Kafka fences the older). Unset: dynamic members.
    pub instance_id: Option<String>,
    /// Fetched records a consumer stream buffers per partition before it pauses the
    /// partition; it resumes at half. Larger keeps a busy partition fed across the refetch
    /// that follows a resume; smaller bounds memory (a backlogged partition holds this many
    /// records).
    pub buffer_records: usize,
}

/// Values of properties whose key contains `password` or `secret` print as `***`, so a
/// configuration can be logged.
impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let secret = k.contains("password") || k.contains("secret");
                (k.as_str(), if secret { "***" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bands", &self.bands)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("properties", &properties)
            .field("instance_id", &self.instance_id)
            .field("buffer_records", &self.buffer_records)
            .finish()
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bands: 3,
            partitions: 6,
            replication_factor: 1,
            properties: BTreeMap::new(),
            instance_id: None,
            buffer_records: 2048,
        }
    }
}

/// Log output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` for people, `json` for log pipelines.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `jobfleet_worker=debug,info`.
    pub level: String,
    /// Where `worker`s export their job spans over OTLP/HTTP: a collector's base URL,
    /// `http://HOST:PORT` (`/v1/traces` is appended). Unset: nothing is exported. Needs
    /// the `otel` feature (on in the `jobfleet` binary).
    pub otlp_endpoint: Option<String>,
    /// The OTLP/HTTP encoding: `http/protobuf` (collectors' default) or `http/json`.
    pub otlp_protocol: OtlpProtocol,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::default(),
        }
    }
}

/// How spans are encoded for an OTLP/HTTP collector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// Protobuf, the collectors' default.
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// JSON.
    #[serde(rename = "http/json")]
    HttpJson,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human text.
    Text,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.broker.is_embedded() != self.store.is_embedded() {
            return Err(err(
                "store",
                "the embedded broker and store live in one process and go together: set both to \
                 `embedded`, or neither",
            ));
        }
        if self.namespace.is_empty()
            || !self
                .namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(err(
                "namespace",
                "use letters, digits and - _ . only, not empty",
            ));
        }
        if self.limits.max_payload_bytes == 0 {
            return Err(err("limits.max_payload_bytes", "must be greater than 0"));
        }
        if self.limits.max_attempts == 0 {
            return Err(err("limits.max_attempts", "must be greater than 0"));
        }
        if let Some(endpoint) = &self.log.otlp_endpoint {
            check_otlp_endpoint(endpoint).map_err(|reason| err("log.otlp_endpoint", reason))?;
        }
        if self.data.url.trim().is_empty() {
            return Err(err("data.url", "name a directory or an object store URL"));
        }
        if !(0.0..=1.0).contains(&self.data.max_rejected_fraction) {
            return Err(err("data.max_rejected_fraction", "must be between 0 and 1"));
        }
        if self.data.chunk_rows == 0 {
            return Err(err("data.chunk_rows", "must be at least 1"));
        }
        let w = &self.worker;
        if w.queues.is_empty() {
            return Err(err("worker.queues", "name at least one queue"));
        }
        if let Some(q) = w.queues.iter().find(|q| q.is_empty()) {
            return Err(err("worker.queues", format!("{q:?} is not a queue name")));
        }
        if w.concurrency == 0 {
            return Err(err("worker.concurrency", "must be at least 1"));
        }
        if w.prefetch == Some(0) {
            return Err(err("worker.prefetch", "must be at least 1"));
        }
        if w.lock_ttl < Duration::from_millis(30) {
            return Err(err("worker.lock_ttl", "must be at least 30ms"));
        }
        if w.lease_ttl < Duration::from_millis(300) {
            return Err(err("worker.lease_ttl", "must be at least 300ms"));
        }
        if w.hold_lease < Duration::from_millis(300) {
            return Err(err("worker.hold_lease", "must be at least 300ms"));
        }
        for (key, d) in [
            ("worker.heartbeat", w.heartbeat),
            ("worker.cancel_poll", w.cancel_poll),
        ] {
            if d.is_zero() {
                return Err(err(key, "must be greater than 0"));
            }
        }
        if self.scheduler.leader_lease < Duration::from_millis(300) {
            return Err(err("scheduler.leader_lease", "must be at least 300ms"));
        }
        for (name, spec) in &self.schedules {
            // The expression and the time zone need a cron parser, which this crate
            // leaves out: `jobfleet_cron::check_config` reads them where a process starts.
            spec.check(name)
                .map_err(|e| ConfigError::schedule(name, e))?;
            // Its jobs must pass the producer's checks (name lengths, payload size,
            // attempts, timeout).
            let job = spec.instant_job(name, 0, 0);
            self.limits
                .validate(&job, 0)
                .map_err(|e| err(format!("schedules.{name}.{}", e.field), e.reason))?;
        }
        let k = &self.kafka;
        if !(1..=10).contains(&k.bands) {
            return Err(err("kafka.bands", "must be between 1 and 10"));
        }
        if k.partitions < 1 {
            return Err(err("kafka.partitions", "must be at least 1"));
        }
        if k.replication_factor < 1 {
            return Err(err("kafka.replication_factor", "must be at least 1"));
        }
        if k.buffer_records < 2 {
            return Err(err("kafka.buffer_records", "must be at least 2"));
        }
        if let Some(id) = &k.instance_id {
            let legal = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
            if id.is_empty() || id.len() > 100 || !id.chars().all(legal) {
                return Err(err(
                    "kafka.instance_id",
                    "must be 1 to 100 letters, digits, `.`, `_` or `-`",
                ));
            }
        }
        self.redis.validate()?;
        let s = &self.scheduler;
        if s.tick.is_zero() {
            return Err(err("scheduler.tick", "must be greater than 0"));
        }
        if s.release_batch == 0 {
            return Err(err("scheduler.release_batch", "must be at least 1"));
        }
        if s.release_lease < Duration::from_secs(1) {
            return Err(err("scheduler.release_lease", "must be at least 1s"));
        }
        if let Some(addr) = &self.worker.http {
            check_http_addr("worker.http", addr)?;
        }
        if let Some(token) = &s.http_token {
            token
                .validate()
                .map_err(|reason| err("scheduler.http_token", reason))?;
        }
        if let Some(addr) = &s.http {
            let addr = check_http_addr("scheduler.http", addr)?;
            if !addr.ip().is_loopback() && s.http_token.is_none() {
                return Err(err(
                    "scheduler.http_token",
                    format!(
                        "scheduler.http {addr} is not a loopback address: set an access token \
                         (at least 16 characters) so the API and dashboard are not open to \
                         the network"
                    ),
                ));
            }
        }
        let queues = self
            .queues
            .iter()
            .map(|(n, q)| (format!("queues.{n}.retry"), q));
        for (key, q) in queues.chain([("queue_defaults.retry".to_string(), &self.queue_defaults)]) {
            if q.retry.base.is_zero() || q.retry.cap < q.retry.base {
                return Err(err(key, "need 0 < base <= cap"));
            }
        }
        Ok(())
    }

    /// The retry policy of `queue`.
    pub fn retry_policy(&self, queue: &str) -> RetryPolicy {
        self.queues.get(queue).unwrap_or(&self.queue_defaults).retry
    }
}

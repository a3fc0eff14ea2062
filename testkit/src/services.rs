//! Where the real services are, said once, and names no other test uses. A test that
//! cannot reach a service fails with [`HOW_TO_START`]; none is skipped.
//!
//! | variable | default | service |
//! | --- | --- | --- |
//! | `TEST_AMQP_URL` | `amqp://guest:guest@127.0.0.1:5672/%2f` | RabbitMQ |
//! | `TEST_REDIS_URL` | `redis://127.0.0.1:6379/` | Redis (persisting or not) |
//! | `TEST_KAFKA_BROKERS` | none: `scripts/test.sh` starts one and sets it | Apache Kafka |

use jobfleet_common::{Config, JobId};

/// The variable naming the RabbitMQ URL.
pub const AMQP_VAR: &str = "TEST_AMQP_URL";
/// The variable naming the Redis URL.
pub const REDIS_VAR: &str = "TEST_REDIS_URL";
/// The variable naming the Kafka bootstrap servers (`host:port[,host:port]`).
pub const KAFKA_VAR: &str = "TEST_KAFKA_BROKERS";

/// How to start the services, for failure messages.
pub const HOW_TO_START: &str = "start them with `scripts/test.sh` (which starts whatever is \
    missing), or for a shell of your own: `eval \"$(scripts/services.sh up redis rabbitmq)\"`";

/// How to start Kafka, for failure messages.
pub const HOW_TO_START_KAFKA: &str = "run the suite through `scripts/test.sh`, which starts an \
    Apache Kafka of its own and exports TEST_KAFKA_BROKERS, or start one for your shell: \
    `eval \"$(scripts/services.sh up)\"` (Kafka, Redis, RabbitMQ; `scripts/services.sh \
    status` shows their addresses)";

/// The AMQP URL tests use.
pub fn amqp_url() -> String {
    std::env::var(AMQP_VAR).unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The Redis URL tests use.
pub fn redis_url() -> String {
    std::env::var(REDIS_VAR).unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// The Kafka broker URL (`kafka://…`) tests use, if `TEST_KAFKA_BROKERS` is set.
pub fn kafka_url() -> Option<String> {
    std::env::var(KAFKA_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| format!("kafka://{}", v.trim()))
}

/// The Kafka broker URL, or a panic that says how to start Kafka.
pub fn require_kafka_url() -> String {
    kafka_url().unwrap_or_else(|| panic!("{KAFKA_VAR} is not set: {HOW_TO_START_KAFKA}"))
}

/// A configuration on the test RabbitMQ and Redis under a fresh namespace
/// (`{prefix}-{random}`). `redis.require_persistence` is off, so the test Redis is
/// accepted whether it keeps anything on disk or not (scripts/test.sh starts one that does
/// not, and runs the persistence tests again on one that does).
pub fn shared_config(prefix: &str) -> Config {
    let mut config = Config {
        namespace: unique_namespace(prefix),
        broker: amqp_url().parse().expect("TEST_AMQP_URL is an amqp:// URL"),
        store: redis_url()
            .parse()
            .expect("TEST_REDIS_URL is a redis:// URL"),
        ..Config::default()
    };
    config.redis.require_persistence = false;
    config
}

/// A namespace no other test (or earlier run) uses: `{prefix}-{random}`.
pub fn unique_namespace(prefix: &str) -> String {
    format!("{prefix}-{}", random_tail(16))
}

/// A name no other test uses: `prefix` and 12 random hex digits.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", random_tail(12))
}

/// The last `digits` hex digits of a fresh v7 UUID: its random part.
fn random_tail(digits: usize) -> String {
    let id = JobId::new().0.simple().to_string();
    id[id.len() - digits..].to_string()
}

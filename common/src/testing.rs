//! Test support shared by every crate's tests (the `testing` feature): where the real
//! services are, said once. A test that cannot reach one fails with [`HOW_TO_START`];
//! none is skipped.
//!
//! | variable | default | service |
//! | --- | --- | --- |
//! | `TEST_AMQP_URL` | `amqp://guest:guest@127.0.0.1:5672/%2f` | RabbitMQ |
//! | `TEST_REDIS_URL` | `redis://127.0.0.1:6379/` | Redis (keeps nothing on disk) |
//! | `TEST_KAFKA_BROKERS` | none: `scripts/test.sh` starts one and sets it | Kafka (tansu) |

use crate::job::JobId;

/// The variable naming the RabbitMQ URL.
pub const AMQP_VAR: &str = "TEST_AMQP_URL";
/// The variable naming the Redis URL.
pub const REDIS_VAR: &str = "TEST_REDIS_URL";
/// The variable naming the Kafka bootstrap servers (`host:port[,host:port]`).
pub const KAFKA_VAR: &str = "TEST_KAFKA_BROKERS";

/// How to start the services, for failure messages.
pub const HOW_TO_START: &str = "start them with `scripts/test.sh` (which starts whatever is \
    missing), or by hand: `rabbitmq-server -detached` and `redis-server --daemonize yes \
    --port 6379 --save \"\" --appendonly no`";

/// How to start Kafka, for failure messages.
pub const HOW_TO_START_KAFKA: &str = "run the suite through `scripts/test.sh`, which starts a \
    Kafka-compatible server (tansu) and exports TEST_KAFKA_BROKERS, or start one by hand: \
    `tansu broker --listener-url tcp://127.0.0.1:9092 --advertised-listener-url \
    tcp://127.0.0.1:9092 --storage-engine memory://tansu/` (or `docker compose up -d kafka`) \
    and `export TEST_KAFKA_BROKERS=127.0.0.1:9092`";

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

/// A namespace no other test (or earlier run) uses: `{prefix}-{random}`.
pub fn unique_namespace(prefix: &str) -> String {
    let id = JobId::new().0.simple().to_string();
    // The tail of a v7 UUID is its random part.
    format!("{prefix}-{}", &id[id.len() - 16..])
}

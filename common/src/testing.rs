//! The test kit every crate's tests share (the `testing` feature): where the real
//! services are, said once, fresh namespaces, and the waits and route helpers the
//! harnesses are built on (the conformance suite's `Ctx`, the worker's and the
//! scheduler's in-crate harnesses, the crash tests' `World`). A test that cannot reach a
//! service fails with [`HOW_TO_START`]; none is skipped.
//!
//! | variable | default | service |
//! | --- | --- | --- |
//! | `TEST_AMQP_URL` | `amqp://guest:guest@127.0.0.1:5672/%2f` | RabbitMQ |
//! | `TEST_REDIS_URL` | `redis://127.0.0.1:6379/` | Redis (persisting or not) |
//! | `TEST_KAFKA_BROKERS` | none: `scripts/test.sh` starts one and sets it | Apache Kafka |

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;

use crate::broker::{Broker, Consumer, Message, Route};
use crate::codec::{self, Format};
use crate::config::Config;
use crate::job::{Job, JobId};
use crate::store::{JobRecord, JobState, JobStates};

/// How often the waits below look again.
const POLL: Duration = Duration::from_millis(10);

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
    let id = JobId::new().0.simple().to_string();
    // The tail of a v7 UUID is its random part.
    format!("{prefix}-{}", &id[id.len() - 16..])
}

/// Polls `check` every 10 ms until it is true (returns true) or `within` passes (false).
pub async fn wait_for<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the job's state record is in `state` and returns it; panics after
/// `within` with the last record seen (`context` says where, e.g. the backend's name).
pub async fn wait_state(
    store: &dyn JobStates,
    id: JobId,
    state: JobState,
    within: Duration,
    context: &str,
) -> JobRecord {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last = store.record(id).await.expect("the store answers");
        match last {
            Some(r) if r.state == state => return r,
            _ if tokio::time::Instant::now() >= deadline => {
                panic!("job {id} not {state} within {within:?} ({context}): last record {last:?}")
            }
            _ => tokio::time::sleep(POLL).await,
        }
    }
}

/// Publishes `job` in the binary form to `route`, at its priority.
pub async fn publish_job(broker: &dyn Broker, route: Route, job: &Job) {
    let body = codec::encode(job, Format::Binary);
    let message = Message::new(route, job.priority, body, Format::Binary.content_type());
    broker.publish(vec![message]).await.expect("publish");
}

/// The next job on `consumer` within `within`, decoded and acked; `None` if none came.
pub async fn recv_job(consumer: &mut Consumer, within: Duration) -> Option<Job> {
    let delivery = tokio::time::timeout(within, consumer.next()).await.ok()?;
    let delivery = delivery.expect("stream open").expect("a delivery");
    let job = codec::decode(&delivery.body, delivery.content_type.as_deref()).expect("a job");
    delivery.ack().await.expect("ack");
    Some(job)
}

/// A loopback address (`127.0.0.1:PORT`) nothing listens on right now.
pub fn free_addr() -> String {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    probe.local_addr().expect("its address").to_string()
}

/// `GET path` over plain HTTP/1.1 with `Connection: close`: the status code (0 when the
/// status line does not parse) and the body. The connect is retried for up to 2 s, for an
/// endpoint whose task has not started listening yet.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = None;
    for _ in 0..100 {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let mut stream = stream.unwrap_or_else(|| panic!("nothing listens on {addr} after 2 s"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_string())
}

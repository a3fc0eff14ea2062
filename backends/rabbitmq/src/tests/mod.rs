//! Tests against the RabbitMQ server on this machine (or `TEST_AMQP_URL`). Each test
//! uses a fresh namespace and deletes its queues when it ends, even by panicking.

mod delivery;
mod publishing;
mod recovery;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::reconnect::Patience;
use super::*;
use jobfleet_common::broker::{Broker, Consumer, Delivery, Message, Route};
use jobfleet_common::job::Priority;

/// How long a test waits for a delivery that should come.
const PATIENCE: Duration = Duration::from_secs(15);
/// How long a test waits to be sure a delivery does not come.
const QUIET: Duration = Duration::from_millis(700);

fn url() -> String {
    jobfleet_testkit::amqp_url()
}

/// A broker under a namespace no other test uses; its queues go when it is dropped.
struct TestBroker {
    broker: RabbitBroker,
    queues: Vec<String>,
}

impl TestBroker {
    /// Connects, or fails the test saying how to start RabbitMQ.
    async fn new(queues: &[&str]) -> Self {
        let namespace = format!("jf-test-{}", uuid::Uuid::now_v7().simple());
        let broker = match RabbitBroker::connect(&url(), &namespace).await {
            Ok(broker) => broker,
            Err(e) => panic!(
                "these tests need RabbitMQ at {} ({e}); start it with: rabbitmq-server -detached",
                redact(&url())
            ),
        };
        let queues: Vec<String> = queues.iter().map(|q| q.to_string()).collect();
        broker.declare(&queues).await.expect("declare");
        Self { broker, queues }
    }

    fn namespace(&self) -> &str {
        &self.broker.shared.namespace
    }

    async fn publish(&self, route: &Route, bodies: &[&str], priority: u8) {
        let batch = bodies.iter().map(|b| message(route, b, priority)).collect();
        self.broker.publish(batch).await.expect("publish");
    }

    async fn ready(&self, route: &Route) -> u64 {
        let depth = self
            .broker
            .depth(route)
            .await
            .expect("depth")
            .expect("rabbitmq has depth");
        assert_eq!(depth.unacked, None);
        depth.ready
    }

    /// Asks the server to close this broker's connection, as an operator or a failover
    /// would (only this one: other tests share the server).
    async fn force_close_connection(&self) {
        let name = format!("jobfleet/{}", self.namespace());
        tokio::task::spawn_blocking(move || close_connection_named(&name))
            .await
            .expect("rabbitmqctl task");
    }
}

impl std::ops::Deref for TestBroker {
    type Target = RabbitBroker;

    fn deref(&self) -> &RabbitBroker {
        &self.broker
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        // On a thread of its own, so it also runs while the test's runtime unwinds.
        let namespace = self.namespace().to_string();
        let queues = std::mem::take(&mut self.queues);
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(delete_queues(&namespace, &queues));
            }
        });
        let _ = cleanup.join();
    }
}

async fn delete_queues(namespace: &str, queues: &[String]) {
    let properties = lapin::ConnectionProperties::default();
    let Ok(connection) = lapin::Connection::connect(&url(), properties).await else {
        return;
    };
    let names = queues
        .iter()
        .map(|q| format!("{namespace}.q.{q}"))
        .chain(["delayed", "failed", "dead"].map(|r| format!("{namespace}.{r}")));
    for name in names {
        // A failed delete closes the channel: one channel per queue.
        if let Ok(channel) = connection.create_channel().await {
            let options = lapin::options::QueueDeleteOptions::default();
            let _ = channel.queue_delete(name.as_str().into(), options).await;
        }
    }
    let _ = connection.close(200, "test cleanup".into()).await;
}

/// `rabbitmqctl close_connection` for the connection whose client properties name it
/// `name`.
fn close_connection_named(name: &str) {
    let listing = std::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "--no-table-headers",
            "pid",
            "client_properties",
        ])
        .output()
        .expect("run rabbitmqctl (it must be on PATH)");
    let listing = String::from_utf8_lossy(&listing.stdout);
    let needle = format!("\"{name}\"");
    let pid = listing
        .lines()
        .find(|line| line.contains(&needle))
        .and_then(|line| line.split_whitespace().next())
        .unwrap_or_else(|| panic!("no connection named {name} in:\n{listing}"));
    let closed = std::process::Command::new("rabbitmqctl")
        .args(["close_connection", pid, "test"])
        .output()
        .expect("run rabbitmqctl close_connection");
    assert!(
        closed.status.success(),
        "rabbitmqctl close_connection {pid}"
    );
}

fn message(route: &Route, body: &str, priority: u8) -> Message {
    let priority = Priority::new(priority).expect("priority in range");
    Message::new(
        route.clone(),
        priority,
        Bytes::from(body.to_string()),
        "text/plain",
    )
}

fn ready(queue: &str) -> Route {
    Route::Ready(queue.to_string())
}

async fn next(consumer: &mut Consumer) -> Delivery {
    match tokio::time::timeout(PATIENCE, consumer.next()).await {
        Ok(Some(Ok(delivery))) => delivery,
        Ok(Some(Err(e))) => panic!("consumer error: {e}"),
        Ok(None) => panic!("consumer ended"),
        Err(_) => panic!("no delivery within {PATIENCE:?}"),
    }
}

/// The next delivery, skipping the error items a lost connection yields.
async fn next_after_loss(consumer: &mut Consumer) -> (Delivery, usize) {
    let mut errors = 0;
    loop {
        match tokio::time::timeout(PATIENCE, consumer.next()).await {
            Ok(Some(Ok(delivery))) => return (delivery, errors),
            Ok(Some(Err(e))) => {
                assert!(matches!(e, BrokerError::Connection(_)), "{e:?}");
                errors += 1;
            }
            Ok(None) => panic!("consumer ended"),
            Err(_) => panic!("no delivery within {PATIENCE:?}"),
        }
    }
}

async fn assert_quiet(consumer: &mut Consumer) {
    if let Ok(item) = tokio::time::timeout(QUIET, consumer.next()).await {
        panic!(
            "expected nothing, got {:?}",
            item.map(|r| r.map(|d| d.body))
        );
    }
}

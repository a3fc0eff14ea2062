//! Tests against the RabbitMQ server on this machine (or `JOBFLEET_TEST_AMQP`). Each test
//! uses a fresh namespace and deletes its queues when it ends, even by panicking.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::reconnect::Patience;
use super::*;
use crate::broker::{Broker, Consumer, Delivery, Message, Route};
use crate::job::Priority;

/// How long a test waits for a delivery that should come.
const PATIENCE: Duration = Duration::from_secs(15);
/// How long a test waits to be sure a delivery does not come.
const QUIET: Duration = Duration::from_millis(700);

fn url() -> String {
    std::env::var("JOBFLEET_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string())
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
        let depth = self.broker.depth(route).await.expect("depth").expect("rabbitmq has depth");
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
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
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
        .args(["list_connections", "--no-table-headers", "pid", "client_properties"])
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
    assert!(closed.status.success(), "rabbitmqctl close_connection {pid}");
}

fn message(route: &Route, body: &str, priority: u8) -> Message {
    let priority = Priority::new(priority).expect("priority in range");
    Message::new(route.clone(), priority, Bytes::from(body.to_string()), "text/plain")
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
        panic!("expected nothing, got {:?}", item.map(|r| r.map(|d| d.body)));
    }
}

#[tokio::test]
async fn round_trip_keeps_body_content_type_and_reason() {
    let t = TestBroker::new(&["work"]).await;
    assert_eq!(t.name(), "rabbitmq");
    let mut dead = message(&Route::Dead, "garbage", 0);
    dead.content_type = Some("application/octet-stream".into());
    dead.reason = Some("undecodable: not a jobfleet envelope".into());
    t.publish(&ready("work"), &["hello"], 3).await;
    t.broker.publish(vec![dead]).await.expect("publish dead");
    assert_eq!(t.ready(&ready("work")).await, 1);

    let mut work = t.consume(&ready("work"), 10).await.expect("consume work");
    let d = next(&mut work).await;
    assert_eq!(d.body, Bytes::from("hello"));
    assert_eq!(d.content_type.as_deref(), Some("text/plain"));
    assert_eq!(d.reason, None);
    assert!(!d.redelivered);
    d.ack().await.expect("ack");

    let mut dead = t.consume(&Route::Dead, 10).await.expect("consume dead");
    let d = next(&mut dead).await;
    assert_eq!(d.body, Bytes::from("garbage"));
    assert_eq!(d.content_type.as_deref(), Some("application/octet-stream"));
    assert_eq!(d.reason.as_deref(), Some("undecodable: not a jobfleet envelope"));
    d.ack().await.expect("ack");
    assert_quiet(&mut work).await;
    assert_eq!(t.ready(&ready("work")).await, 0);
}

#[tokio::test]
async fn publish_declares_a_route_nobody_declared() {
    let t = TestBroker::new(&["later"]).await;
    // `later` was declared by TestBroker::new; drop it from the cache by deleting it.
    let queue = t.shared.topology.queue(&ready("later")).expect("name");
    let session = t.shared.session(Patience::Call).await.expect("session");
    let channel = session.channel().await.expect("channel");
    let options = lapin::options::QueueDeleteOptions::default();
    channel.queue_delete(queue.name.clone(), options).await.expect("delete");
    t.shared.topology.forget(queue.name.as_str());

    t.publish(&ready("later"), &["a", "b"], 0).await;
    assert_eq!(t.ready(&ready("later")).await, 2);
}

#[tokio::test]
async fn a_deleted_queue_is_not_accepted_then_declared_again() {
    let t = TestBroker::new(&["gone"]).await;
    let queue = t.shared.topology.queue(&ready("gone")).expect("name");
    let channel = t.shared.session(Patience::Call).await.expect("session").channel().await;
    let options = lapin::options::QueueDeleteOptions::default();
    channel.expect("channel").queue_delete(queue.name.clone(), options).await.expect("delete");

    // The cache still says declared: the mandatory publish comes back unroutable.
    let err = t.broker.publish(vec![message(&ready("gone"), "x", 0)]).await;
    assert!(matches!(err, Err(BrokerError::NotAccepted(_))), "{err:?}");
    t.publish(&ready("gone"), &["y"], 0).await;
    assert_eq!(t.ready(&ready("gone")).await, 1);
}

#[tokio::test]
async fn highest_priority_is_delivered_first_fifo_within_a_level() {
    let t = TestBroker::new(&["prio"]).await;
    let levels = [0, 9, 3, 6, 3, 0, 9, 1, 6, 3];
    let batch = levels
        .iter()
        .enumerate()
        .map(|(i, &p)| message(&ready("prio"), &format!("{p}-{i}"), p))
        .collect();
    t.broker.publish(batch).await.expect("publish");

    let mut consumer = t.consume(&ready("prio"), 1).await.expect("consume");
    let mut got = Vec::new();
    for _ in 0..levels.len() {
        let d = next(&mut consumer).await;
        got.push(String::from_utf8_lossy(&d.body).into_owned());
        d.ack().await.expect("ack");
    }
    let expected = ["9-1", "9-6", "6-3", "6-8", "3-2", "3-4", "3-9", "1-7", "0-0", "0-5"];
    assert_eq!(got, expected);
}

#[tokio::test]
async fn prefetch_limits_unsettled_deliveries() {
    let t = TestBroker::new(&["pf"]).await;
    t.publish(&ready("pf"), &["1", "2", "3", "4", "5"], 0).await;
    let mut consumer = t.consume(&ready("pf"), 3).await.expect("consume");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(next(&mut consumer).await);
    }
    assert_quiet(&mut consumer).await;
    held.remove(0).ack().await.expect("ack");
    held.push(next(&mut consumer).await);
    assert_quiet(&mut consumer).await;
    assert_eq!(t.ready(&ready("pf")).await, 1);
}

#[tokio::test]
async fn requeued_and_dropped_deliveries_come_back_redelivered() {
    let t = TestBroker::new(&["rq"]).await;
    t.publish(&ready("rq"), &["once"], 0).await;
    let mut consumer = t.consume(&ready("rq"), 1).await.expect("consume");

    let d = next(&mut consumer).await;
    assert!(!d.redelivered);
    d.requeue().await.expect("requeue");
    let d = next(&mut consumer).await;
    assert_eq!(d.body, Bytes::from("once"));
    assert!(d.redelivered);

    drop(d);
    let d = next(&mut consumer).await;
    assert_eq!(d.body, Bytes::from("once"));
    assert!(d.redelivered);
    d.ack().await.expect("ack");
    assert_quiet(&mut consumer).await;
}

#[tokio::test]
async fn competing_consumers_share_a_queue() {
    let t = TestBroker::new(&["share"]).await;
    let bodies: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    t.publish(&ready("share"), &refs, 0).await;
    let mut a = t.consume(&ready("share"), 1).await.expect("consume a");
    let mut b = t.consume(&ready("share"), 1).await.expect("consume b");

    // Each holds one unsettled: both got work while the other was busy.
    let (da, db) = (next(&mut a).await, next(&mut b).await);
    assert_ne!(da.body, db.body);
    let mut seen = vec![da.body.clone(), db.body.clone()];
    let mut counts = [1, 1];
    da.ack().await.expect("ack");
    db.ack().await.expect("ack");
    while seen.len() < bodies.len() {
        let (d, i) = tokio::select! {
            d = next(&mut a) => (d, 0),
            d = next(&mut b) => (d, 1),
        };
        seen.push(d.body.clone());
        counts[i] += 1;
        d.ack().await.expect("ack");
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), bodies.len(), "every message exactly once");
    assert!(counts.iter().all(|&c| c >= 1), "{counts:?}");
}

#[tokio::test]
async fn a_dropped_stream_keeps_handed_out_deliveries_ackable() {
    let t = TestBroker::new(&["drain"]).await;
    t.publish(&ready("drain"), &["1", "2", "3", "4"], 0).await;
    let mut consumer = t.consume(&ready("drain"), 4).await.expect("consume");
    let held = next(&mut consumer).await;
    let mut bodies = vec![held.body.clone()];
    // The other three were sent to the client too; dropping the stream gives them back.
    drop(consumer);
    tokio::time::sleep(QUIET).await;
    held.ack().await.expect("ack after the stream is gone");

    let mut again = t.consume(&ready("drain"), 4).await.expect("consume again");
    for _ in 0..3 {
        let d = next(&mut again).await;
        bodies.push(d.body.clone());
        d.ack().await.expect("ack");
    }
    bodies.sort();
    assert_eq!(bodies, ["1", "2", "3", "4"].map(Bytes::from));
    assert_quiet(&mut again).await;
    assert_eq!(t.ready(&ready("drain")).await, 0);
}

#[tokio::test]
async fn a_batch_of_5000_is_confirmed() {
    let t = TestBroker::new(&["bulk"]).await;
    let batch: Vec<Message> =
        (0..5000).map(|i| message(&ready("bulk"), &format!("m{i}"), (i % 10) as u8)).collect();
    let started = std::time::Instant::now();
    t.broker.publish(batch).await.expect("publish 5000");
    eprintln!("5000 confirmed in {:?}", started.elapsed());
    assert_eq!(t.ready(&ready("bulk")).await, 5000);
}

#[tokio::test]
async fn concurrent_publishers_all_land() {
    let t = TestBroker::new(&["many"]).await;
    let publishers = (0..8).map(|p| {
        let broker = t.broker.clone();
        tokio::spawn(async move {
            let batch: Vec<Message> =
                (0..300).map(|i| message(&ready("many"), &format!("{p}-{i}"), 0)).collect();
            broker.publish(batch).await
        })
    });
    for result in futures::future::join_all(publishers).await {
        result.expect("task").expect("publish");
    }
    assert_eq!(t.ready(&ready("many")).await, 8 * 300);
}

#[tokio::test]
async fn publish_and_consume_resume_after_the_connection_is_closed() {
    let t = TestBroker::new(&["survive"]).await;
    t.publish(&ready("survive"), &["before"], 0).await;
    let mut consumer = t.consume(&ready("survive"), 5).await.expect("consume");
    let held = next(&mut consumer).await;
    assert_eq!(held.body, Bytes::from("before"));

    t.force_close_connection().await;
    // The stream notices the loss first: one error item, then it resumes.
    match tokio::time::timeout(PATIENCE, consumer.next()).await {
        Ok(Some(Err(BrokerError::Connection(_)))) => {}
        other => panic!("expected a connection error item, got {:?}", other.map(|o| o.is_some())),
    }
    // The lost channel's delivery cannot be settled; the server requeued it.
    let ack = held.ack().await;
    assert!(matches!(ack, Err(BrokerError::Connection(_))), "{ack:?}");

    t.publish(&ready("survive"), &["after"], 0).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let (d, _) = next_after_loss(&mut consumer).await;
        got.push((String::from_utf8_lossy(&d.body).into_owned(), d.redelivered));
        d.ack().await.expect("ack on the new channel");
    }
    got.sort();
    assert_eq!(got, [("after".to_string(), false), ("before".to_string(), true)]);
    assert_eq!(t.ready(&ready("survive")).await, 0);
}

#[tokio::test]
async fn a_publish_right_after_a_loss_reconnects() {
    let t = TestBroker::new(&["again"]).await;
    t.publish(&ready("again"), &["1"], 0).await;
    t.force_close_connection().await;
    // Whether or not the client has seen the close yet, a retry after an error succeeds
    // and Ok means confirmed.
    let first = t.broker.publish(vec![message(&ready("again"), "2", 0)]).await;
    if let Err(e) = &first {
        assert!(matches!(e, BrokerError::Connection(_)), "{e:?}");
        t.publish(&ready("again"), &["2"], 0).await;
    }
    t.publish(&ready("again"), &["3"], 0).await;
    assert_eq!(t.ready(&ready("again")).await, 3);
}

/// Runs Erlang `code` on the server; its printed result.
fn rabbit_eval(code: &str) -> String {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["eval", code])
        .output()
        .expect("run rabbitmqctl eval");
    assert!(out.status.success(), "rabbitmqctl eval {code}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
#[ignore = "sets the server's global consumer_timeout to 1 s for about a second and takes a \
            minute: run it on a server nobody else uses, with `-- --ignored`"]
async fn a_channel_closed_for_consumer_timeout_is_resumed() {
    let t = TestBroker::new(&["slow"]).await;
    t.publish(&ready("slow"), &["long job"], 0).await;
    // 3.10 reads the setting when a channel opens: only channels opened between the two
    // evals get the short timeout.
    let saved = rabbit_eval("application:get_env(rabbit, consumer_timeout).");
    let shorten = "application:set_env(rabbit, consumer_timeout, 1000).";
    tokio::task::spawn_blocking(move || rabbit_eval(shorten)).await.expect("eval");
    let consumer = t.consume(&ready("slow"), 1).await;
    let restore = format!(
        "case {saved} of {{ok, V}} -> application:set_env(rabbit, consumer_timeout, V); \
         undefined -> application:unset_env(rabbit, consumer_timeout) end."
    );
    tokio::task::spawn_blocking(move || rabbit_eval(&restore)).await.expect("eval");
    let mut consumer = consumer.expect("consume");

    let held = next(&mut consumer).await;
    // The server checks on the channel's tick (`channel_tick_interval`, 60 s).
    let item = tokio::time::timeout(Duration::from_secs(90), consumer.next()).await;
    match item {
        Ok(Some(Err(BrokerError::Connection(e)))) => assert!(e.contains("timed out"), "{e}"),
        other => panic!("expected the timeout's close, got {:?}", other.map(|o| o.is_some())),
    }
    let ack = held.ack().await;
    assert!(matches!(ack, Err(BrokerError::Connection(_))), "{ack:?}");
    let d = next(&mut consumer).await;
    assert_eq!(d.body, Bytes::from("long job"));
    assert!(d.redelivered);
    d.ack().await.expect("ack on the new channel");
}

#[tokio::test]
async fn closing_ends_streams_and_refuses_calls() {
    let t = TestBroker::new(&["end"]).await;
    let mut consumer = t.consume(&ready("end"), 1).await.expect("consume");
    t.close().await;
    let item = tokio::time::timeout(PATIENCE, consumer.next()).await.expect("stream ends");
    assert!(item.is_none());
    let err = t.broker.publish(vec![message(&ready("end"), "x", 0)]).await;
    assert!(matches!(err, Err(BrokerError::Closed)), "{err:?}");
}

#[tokio::test]
async fn connect_refuses_bad_urls_and_hides_the_password() {
    let err = RabbitBroker::connect("redis://127.0.0.1:6379", "ns").await.expect_err("scheme");
    assert!(matches!(err, BrokerError::Invalid(_)), "{err:?}");
    let err = RabbitBroker::connect(&url(), "").await.expect_err("namespace");
    assert!(matches!(err, BrokerError::Invalid(_)), "{err:?}");
    // Port 1 never has a server: the connection is refused.
    let err = RabbitBroker::connect("amqp://user:hunter2@127.0.0.1:1/%2f", "ns")
        .await
        .expect_err("refused");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(err.is_retryable(), "{err:?}");
}

#[test]
fn queue_names_follow_the_namespace() {
    let topology = topology::Topology::new("ns");
    let name = |r: &Route| topology.queue(r).expect("name");
    assert_eq!(name(&ready("email")).name.as_str(), "ns.q.email");
    assert!(name(&ready("email")).prioritised);
    assert_eq!(name(&Route::Delayed).name.as_str(), "ns.delayed");
    assert_eq!(name(&Route::Failed).name.as_str(), "ns.failed");
    assert!(!name(&Route::Dead).prioritised);
    assert!(topology.queue(&ready(&"x".repeat(300))).is_err());
}

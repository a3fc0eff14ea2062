//! The Kafka-only check: per-key order on a Kafka-compatible server wherever
//! `TEST_KAFKA_BROKERS` points (`host:port`; `scripts/test.sh` starts one). The Kafka +
//! Redis factory the conformance suite runs on is `jobfleet_testkit::KafkaRedis`.
//!
//! A check that cannot reach Kafka fails with how to start it; none is skipped.

use jobfleet_common::Priority;
use jobfleet_connect::kafka::KafkaBroker;
use jobfleet_testkit::{kafka_url, HOW_TO_START_KAFKA, KAFKA_VAR};

/// Jobs with one ordering key never run at the same time and start in publish order,
/// while jobs with other keys run beside them (the broker alone: a stream with room for
/// eight deliveries, each settled after a random pause).
pub async fn per_key_deliveries_never_overlap_and_keep_order() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use futures::StreamExt;
    use jobfleet_common::broker::{Broker, Message, Route};
    use rand::Rng;

    const KEYS: usize = 4;
    const PER_KEY: usize = 15;
    let Some(url) = kafka_url() else {
        panic!("{KAFKA_VAR} is not set: {HOW_TO_START_KAFKA}");
    };
    let namespace = jobfleet_testkit::unique("t");
    let config = jobfleet_common::config::KafkaConfig::default();
    let broker = KafkaBroker::connect(&url, &namespace, &config)
        .await
        .unwrap_or_else(|e| panic!("{e}: {HOW_TO_START_KAFKA}"));
    let route = Route::Ready("ordered".into());
    let batch = (0..PER_KEY)
        .flat_map(|seq| (0..KEYS).map(move |key| (key, seq)))
        .map(|(key, seq)| {
            let body = format!("{key}:{seq}");
            let mut m = Message::new(route.clone(), Priority::NORMAL, body.into(), "text/plain");
            m.key = Some(format!("k{key}"));
            m
        })
        .collect();
    broker.publish(batch).await.expect("published");

    // Per key: the next sequence number expected, and whether one is running.
    let state: Arc<Mutex<HashMap<usize, (usize, bool)>>> = Arc::default();
    let overlaps: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut consumer = broker.consume(&route, 8).await.expect("consumer");
    let mut running = Vec::new();
    let mut max_concurrent = 0;
    for _ in 0..KEYS * PER_KEY {
        let delivery = tokio::time::timeout(Duration::from_secs(15), consumer.next())
            .await
            .expect("a delivery within 15s")
            .expect("stream open")
            .expect("no error");
        let text = String::from_utf8_lossy(&delivery.body).to_string();
        let (key, seq) = text.split_once(':').expect("key:seq");
        let (key, seq): (usize, usize) = (key.parse().expect("key"), seq.parse().expect("seq"));
        {
            let mut state = state.lock().expect("state");
            let entry = state.entry(key).or_insert((0, false));
            if entry.1 || entry.0 != seq {
                overlaps.lock().expect("log").push(format!(
                    "{text} started while running={} expecting seq {}",
                    entry.1, entry.0
                ));
            }
            *entry = (seq + 1, true);
            let busy = state.values().filter(|(_, r)| *r).count();
            max_concurrent = max_concurrent.max(busy);
        }
        let state = state.clone();
        running.push(tokio::spawn(async move {
            let pause = rand::rng().random_range(0..20);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            state.lock().expect("state").entry(key).or_default().1 = false;
            delivery.ack().await.expect("acked");
        }));
    }
    for task in running {
        task.await.expect("settled");
    }
    drop(consumer);
    broker.close().await;
    let overlaps = overlaps.lock().expect("log").clone();
    assert!(overlaps.is_empty(), "per-key order broken: {overlaps:?}");
    assert!(
        max_concurrent > 1,
        "different keys should run side by side (max {max_concurrent} at once)"
    );
}

//! The Kafka baseline: the bench's load on bare rdkafka, with nothing of jobfleet in
//! between.
//!
//! A temporary topic with `kafka.partitions` partitions gets `plan.jobs` records of
//! `plan.payload_bytes` bytes, without keys, from a producer configured exactly like
//! jobfleet's (idempotent, `acks=all`, the configured `kafka.properties`), at most
//! [`WINDOW`] awaiting their delivery reports. A consumer configured like a jobfleet
//! worker's (manual offset store, auto-commit of stored offsets) stores each record's
//! offset as it arrives. Before the clock starts, one warm-up record is produced and
//! consumed, so both sides are connected and the consumer holds its partitions, as the
//! jobfleet measurement's warm-up job ensures for the worker. The topic is deleted once
//! both clients are closed.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use jobfleet_common::config::KafkaConfig;
use jobfleet_connect::kafka::ClientSettings;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::report::Baseline;
use crate::Plan;

/// Records awaiting their delivery reports at most: the jobfleet measurement's
/// `--batch` × `--in-flight` by default (500 × 2).
const WINDOW: usize = 1000;
/// How long creating or deleting the topic may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Produces and consumes `plan.jobs` records concurrently; see the module docs.
pub(crate) async fn measure(
    url: &str,
    namespace: &str,
    config: &KafkaConfig,
    plan: &Plan,
) -> Result<Baseline> {
    let settings =
        ClientSettings::new(url, config).map_err(|e| Error::Task(format!("baseline: {e}")))?;
    let admin: Arc<AdminClient<DefaultClientContext>> =
        Arc::new(settings.admin().create().map_err(kafka("admin client"))?);
    let topic = format!("{namespace}.raw");
    let new = NewTopic::new(
        &topic,
        config.partitions,
        TopicReplication::Fixed(config.replication_factor),
    );
    let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    for created in admin
        .create_topics([&new], &options)
        .await
        .map_err(kafka("create topic"))?
    {
        if let Err((name, code)) = created {
            return Err(Error::Task(format!(
                "baseline cannot create topic {name}: {code}"
            )));
        }
    }
    // Subscribed before its partitions have leaders, the consumer fails with
    // `UnknownTopicOrPartition` (as jobfleet's topics do, wait for them).
    let (led, topics) = (admin.clone(), vec![topic.clone()]);
    tokio::task::spawn_blocking(move || jobfleet_connect::kafka::await_leaders(&led, &topics))
        .await
        .map_err(|e| Error::Task(format!("baseline topic metadata: {e}")))?
        .map_err(|e| Error::Task(format!("baseline: {e}")))?;
    let measured = run(&settings, namespace, &topic, plan).await;
    // Both clients are closed by now: librdkafka has crashed a process whose live client
    // still had a deleted topic in its metadata (docs/kafka.md, broker caveats).
    match admin.delete_topics(&[&topic], &options).await {
        Ok(results) => {
            for result in results {
                if let Err((name, code)) = result {
                    eprintln!("bench: cannot delete the baseline topic {name}: {code}");
                }
            }
        }
        Err(e) => eprintln!("bench: cannot delete the baseline topic {topic}: {e}"),
    }
    measured
}

async fn run(
    settings: &ClientSettings,
    namespace: &str,
    topic: &str,
    plan: &Plan,
) -> Result<Baseline> {
    let consumer: Arc<StreamConsumer> = Arc::new(
        settings
            .consumer(&format!("{namespace}.g.raw"))
            .create()
            .map_err(kafka("consumer"))?,
    );
    consumer.subscribe(&[topic]).map_err(kafka("subscribe"))?;
    let producer: FutureProducer = settings.producer().create().map_err(kafka("producer"))?;
    let body = vec![b'x'; plan.payload_bytes];

    // Warm-up: one record through, unclocked.
    let warm_up = send(&producer, topic, &body).map_err(kafka("produce"))?;
    delivered(warm_up.await)?;
    tokio::time::timeout(plan.timeout, drain(consumer.clone(), 1))
        .await
        .map_err(|_| {
            Error::Task(format!(
                "baseline warm-up record not consumed within {:?}",
                plan.timeout
            ))
        })??;

    let drained = tokio::spawn(drain(consumer.clone(), plan.jobs));
    let began = Instant::now();
    publish(&producer, topic, &body, plan.jobs).await?;
    let published = began.elapsed();
    let baseline = Baseline::from_drain(plan, began, published, drained).await;

    // Closing blocks (the consumer commits and leaves its group).
    let closed = tokio::task::spawn_blocking(move || {
        drop(consumer);
        drop(producer);
    })
    .await;
    if let Err(e) = closed {
        eprintln!("bench: closing the baseline clients: {e}");
    }
    baseline
}

/// Consumes `n` records, storing each one's offset as it arrives; returns how many and
/// when the last one came.
async fn drain(consumer: Arc<StreamConsumer>, n: usize) -> Result<(usize, Instant)> {
    let mut stored = 0;
    while stored < n {
        let message = consumer.recv().await.map_err(kafka("consume"))?;
        consumer
            .store_offset_from_message(&message)
            .map_err(kafka("store offset"))?;
        stored += 1;
    }
    Ok((stored, Instant::now()))
}

/// Produces `n` copies of `body`, at most [`WINDOW`] awaiting reports, until all are
/// reported stored.
async fn publish(producer: &FutureProducer, topic: &str, body: &[u8], n: usize) -> Result<()> {
    let mut reports = FuturesUnordered::new();
    for _ in 0..n {
        if reports.len() >= WINDOW {
            if let Some(report) = reports.next().await {
                delivered(report)?;
            }
        }
        loop {
            match send(producer, topic, body) {
                Ok(report) => {
                    reports.push(report);
                    break;
                }
                // librdkafka's own queue is full: wait for a report, then try again.
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    match reports.next().await {
                        Some(report) => delivered(report)?,
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err(e) => return Err(kafka("produce")(e)),
            }
        }
    }
    while let Some(report) = reports.next().await {
        delivered(report)?;
    }
    Ok(())
}

fn send(
    producer: &FutureProducer,
    topic: &str,
    body: &[u8],
) -> std::result::Result<DeliveryFuture, KafkaError> {
    let record = FutureRecord::<[u8], [u8]>::to(topic).payload(body);
    producer.send_result(record).map_err(|(e, _)| e)
}

/// Whether a delivery report says the record is stored.
fn delivered(report: <DeliveryFuture as std::future::Future>::Output) -> Result<()> {
    match report {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(Error::Task(format!("baseline record not stored: {e}"))),
        Err(_) => Err(Error::Task("baseline producer went away".into())),
    }
}

/// Turns an rdkafka error into the bench's, naming the step.
fn kafka(step: &'static str) -> impl Fn(KafkaError) -> Error {
    move |e| Error::Task(format!("baseline {step}: {e}"))
}

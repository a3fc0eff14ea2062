//! The RabbitMQ baseline: the bench's load on bare lapin, with nothing of jobfleet in
//! between.
//!
//! A temporary queue declared like a ready route (durable, `x-max-priority` 9) gets
//! `plan.jobs` persistent messages of `plan.payload_bytes` bytes at normal priority,
//! published with at most [`WINDOW`] unconfirmed (the pipelining `RabbitBroker` does),
//! while a consumer on its own connection with prefetch `plan.prefetch` acks each
//! delivery as it arrives. The queue is deleted afterwards, whatever happened.

use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::report::Baseline;
use crate::Plan;

/// Unconfirmed publishes at most, as in `RabbitBroker`.
const WINDOW: usize = 1000;
/// AMQP delivery mode 2: written to disk on a durable queue.
const PERSISTENT: u8 = 2;
/// `Priority::NORMAL`, what the bench's jobs carry.
const NORMAL_PRIORITY: u8 = 3;

/// Publishes and consumes `plan.jobs` messages concurrently; see the module docs.
pub(crate) async fn measure(url: &str, namespace: &str, plan: &Plan) -> Result<Baseline> {
    let publisher = connect(url).await?;
    let consumer = connect(url).await?;
    let queue = ShortString::from(format!("{namespace}.raw"));
    let admin = publisher.create_channel().await.map_err(amqp("channel"))?;
    declare(&admin, &queue).await?;
    let measured = run(&publisher, &consumer, &queue, plan).await;
    if let Err(e) = admin
        .queue_delete(queue.clone(), QueueDeleteOptions::default())
        .await
    {
        eprintln!("bench: cannot delete the baseline queue {queue}: {e}");
    }
    for connection in [&publisher, &consumer] {
        if let Err(e) = connection.close(200, "bench done".into()).await {
            tracing::debug!(error = %e, "closing a baseline connection");
        }
    }
    measured
}

async fn run(
    publisher: &Connection,
    consumer: &Connection,
    queue: &ShortString,
    plan: &Plan,
) -> Result<Baseline> {
    let consuming = consumer.create_channel().await.map_err(amqp("channel"))?;
    consuming
        .basic_qos(plan.prefetch, BasicQosOptions::default())
        .await
        .map_err(amqp("basic.qos"))?;
    let mut deliveries = consuming
        .basic_consume(
            queue.clone(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(amqp("basic.consume"))?;
    let expected = plan.jobs;
    let drain = tokio::spawn(async move {
        let mut acked = 0;
        while acked < expected {
            let Some(delivery) = deliveries.next().await else {
                break;
            };
            let delivery = delivery.map_err(amqp("consume"))?;
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(amqp("basic.ack"))?;
            acked += 1;
        }
        Ok::<_, Error>((acked, Instant::now()))
    });

    let publishing = publisher.create_channel().await.map_err(amqp("channel"))?;
    publishing
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(amqp("confirm.select"))?;
    let body = vec![b'x'; plan.payload_bytes];
    let began = Instant::now();
    publish(&publishing, queue, &body, plan.jobs).await?;
    let published = began.elapsed();

    Baseline::from_drain(plan, began, published, drain).await
}

/// Publishes `n` copies of `body`, at most [`WINDOW`] unconfirmed, until all are confirmed.
async fn publish(channel: &Channel, queue: &ShortString, body: &[u8], n: usize) -> Result<()> {
    let properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_priority(NORMAL_PRIORITY);
    let options = BasicPublishOptions {
        mandatory: true,
        immediate: false,
    };
    let mut confirms = FuturesUnordered::new();
    for _ in 0..n {
        if confirms.len() >= WINDOW {
            if let Some(confirmation) = confirms.next().await {
                confirmed(confirmation)?;
            }
        }
        let confirm = channel
            .basic_publish("".into(), queue.clone(), options, body, properties.clone())
            .await
            .map_err(amqp("basic.publish"))?;
        confirms.push(confirm);
    }
    while let Some(confirmation) = confirms.next().await {
        confirmed(confirmation)?;
    }
    Ok(())
}

fn confirmed(confirmation: lapin::Result<Confirmation>) -> Result<()> {
    match confirmation.map_err(amqp("confirm"))? {
        Confirmation::Ack(None) => Ok(()),
        other => Err(Error::Task(format!(
            "baseline publish not accepted: {other:?}"
        ))),
    }
}

/// Declares the baseline queue exactly as a ready route is declared.
async fn declare(channel: &Channel, queue: &ShortString) -> Result<()> {
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-priority".into(), AMQPValue::LongInt(9));
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.clone(), options, arguments)
        .await
        .map_err(amqp("queue.declare"))?;
    Ok(())
}

pub(crate) async fn connect(url: &str) -> Result<Connection> {
    let connect = Connection::connect(url, ConnectionProperties::default());
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(Error::Task(format!("baseline cannot connect: {e}"))),
        Err(_) => Err(Error::Task(
            "baseline cannot connect: no answer in 10 s".into(),
        )),
    }
}

/// Turns a lapin error into the bench's, naming the step.
pub(crate) fn amqp(step: &'static str) -> impl Fn(lapin::Error) -> Error {
    move |e| Error::Task(format!("baseline {step}: {e}"))
}

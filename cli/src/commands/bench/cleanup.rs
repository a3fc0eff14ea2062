//! Deleting what the jobfleet half of the bench left on the shared services: its
//! RabbitMQ queues or Kafka topics, and every Redis key under its namespace.
//!
//! Best effort: a failure is reported on stderr and the bench carries on, since the
//! namespace is unique to the run and nothing else reads it. The baseline deletes its
//! own queue.

use jobfleet_common::broker::Route;
use jobfleet_common::kafka::KafkaBroker;
use jobfleet_common::Config;
use lapin::options::QueueDeleteOptions;

use super::fleet::QUEUE;
use super::raw_amqp::{amqp, connect};
use crate::error::{Error, Result};

/// Keys deleted per `DEL`.
const DELETE_CHUNK: usize = 1000;

/// Deletes the run's queues and keys, reporting failures on stderr.
pub(crate) async fn fleet(config: &Config) {
    if let Err(e) = queues(config).await {
        eprintln!("bench: cleanup of the queues: {e}");
    }
    match keys(config).await {
        Ok(n) => eprintln!("bench: deleted {n} store keys under {}", config.namespace),
        Err(e) => eprintln!("bench: cleanup of the store keys: {e}"),
    }
}

/// The queues behind the run's routes, named as the RabbitMQ broker names them.
fn queue_names(namespace: &str) -> Vec<String> {
    [
        Route::Ready(QUEUE.into()),
        Route::Delayed,
        Route::Failed,
        Route::Dead,
    ]
    .iter()
    .map(|route| match route {
        Route::Ready(q) => format!("{namespace}.q.{q}"),
        Route::Delayed => format!("{namespace}.delayed"),
        Route::Failed => format!("{namespace}.failed"),
        Route::Dead => format!("{namespace}.dead"),
    })
    .collect()
}

async fn queues(config: &Config) -> Result<()> {
    if config.broker.starts_with("kafka://") {
        return topics(config).await;
    }
    let connection = connect(&config.broker).await?;
    let channel = connection.create_channel().await.map_err(amqp("channel"))?;
    for name in queue_names(&config.namespace) {
        channel
            .queue_delete(name.into(), QueueDeleteOptions::default())
            .await
            .map_err(amqp("queue.delete"))?;
    }
    if let Err(e) = connection.close(200, "bench cleanup".into()).await {
        tracing::debug!(error = %e, "closing the cleanup connection");
    }
    Ok(())
}

/// Deletes the run's topics (the worker and the producer are closed by now).
async fn topics(config: &Config) -> Result<()> {
    let kafka_error = |e| Error::Task(format!("topic cleanup: {e}"));
    let broker = KafkaBroker::connect(&config.broker, &config.namespace, &config.kafka)
        .await
        .map_err(kafka_error)?;
    let deleted = broker.delete_routes(&[QUEUE.to_string()]).await;
    broker.close().await;
    deleted.map_err(kafka_error)
}

/// Deletes every key under `namespace:`; returns how many there were.
async fn keys(config: &Config) -> Result<usize> {
    let redis_error = |e: redis::RedisError| Error::Task(format!("store cleanup: {e}"));
    let client = redis::Client::open(config.store.as_str()).map_err(redis_error)?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(redis_error)?;
    let pattern = format!("{}:*", config.namespace);
    let mut found: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(DELETE_CHUNK)
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        found.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    found.sort();
    found.dedup();
    for chunk in found.chunks(DELETE_CHUNK) {
        let _: i64 = redis::cmd("DEL")
            .arg(chunk)
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
    }
    Ok(found.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_follow_the_rabbitmq_layout() {
        assert_eq!(
            queue_names("bench-1"),
            [
                "bench-1.q.bench",
                "bench-1.delayed",
                "bench-1.failed",
                "bench-1.dead"
            ]
        );
    }
}

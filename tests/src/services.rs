//! The real services the suite runs against: RabbitMQ and Redis on this machine (or
//! wherever `TEST_AMQP_URL` / `TEST_REDIS_URL` point).
//!
//! A check that cannot reach a service fails with how to start it; none is skipped. The
//! test Redis keeps nothing on disk, so every configuration pointed at it sets
//! `redis.require_persistence = false`.

use async_trait::async_trait;
use jobfleet_common::{Backends, Config};
use redis::AsyncCommands;

use crate::harness::BackendFactory;

/// How to start the services, for failure messages.
pub const HOW_TO_START: &str = "start them with `scripts/test.sh` (which starts whatever is \
    missing), or by hand: `rabbitmq-server -detached` and `redis-server --daemonize yes \
    --port 6379 --save \"\" --appendonly no`";

/// The AMQP URL tests use.
pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string())
}

/// The Redis URL tests use.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_string())
}

/// RabbitMQ as the broker, Redis as the store.
#[derive(Debug, Clone, Copy, Default)]
pub struct RabbitRedis;

#[async_trait]
impl BackendFactory for RabbitRedis {
    fn name(&self) -> &'static str {
        "rabbitmq+redis"
    }

    fn configure(&self, config: &mut Config) {
        config.broker = amqp_url();
        config.store = redis_url();
        // The test Redis keeps nothing on disk (scripts/test.sh starts it so).
        config.redis.require_persistence = false;
    }

    async fn backends(&self, config: &Config) -> Backends {
        match Backends::connect(config).await {
            Ok(b) => b,
            Err(e) => panic!("{e}\nThe rabbitmq+redis checks need both services: {HOW_TO_START}"),
        }
    }

    async fn cleanup(&self, config: &Config, queues: &[String]) {
        delete_rabbit_queues(config, queues).await;
        delete_redis_keys(&config.namespace).await;
    }
}

/// Deletes the ready queues of `queues` and the shared routes of the namespace.
pub async fn delete_rabbit_queues(config: &Config, queues: &[String]) {
    let props = lapin::ConnectionProperties::default();
    let Ok(conn) = lapin::Connection::connect(&amqp_url(), props).await else {
        return;
    };
    let Ok(channel) = conn.create_channel().await else {
        return;
    };
    let ns = &config.namespace;
    let names = queues.iter().map(|q| format!("{ns}.q.{q}")).chain(
        ["delayed", "failed", "dead"]
            .iter()
            .map(|r| format!("{ns}.{r}")),
    );
    for name in names {
        let _ = channel
            .queue_delete(
                name.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await;
    }
    let _ = conn.close(200, "cleanup".into()).await;
}

/// Deletes every Redis key of the namespace.
pub async fn delete_redis_keys(namespace: &str) {
    let Ok(client) = redis::Client::open(redis_url()) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = match conn.scan_match::<_, String>(format!("{namespace}:*")).await {
        Ok(iter) => {
            use futures::StreamExt;
            iter.filter_map(|k| async move { k.ok() }).collect().await
        }
        Err(_) => return,
    };
    for chunk in keys.chunks(500) {
        let _: Result<(), _> = conn.del(chunk).await;
    }
}

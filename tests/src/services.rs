//! The real services the suite runs against: RabbitMQ and Redis on this machine (or
//! wherever `TEST_AMQP_URL` / `TEST_REDIS_URL` point).
//!
//! A check that cannot reach a service fails with how to start it; none is skipped. The
//! test Redis may or may not keep an append-only file, so every configuration pointed at
//! it sets `redis.require_persistence = false`; a check that needs a Redis configured just
//! so starts its own (`jobfleet_redis::testkit::RedisServer`).

use async_trait::async_trait;
use jobfleet_common::{Backends, Config};

use crate::harness::BackendFactory;
pub use jobfleet_common::testing::{amqp_url, redis_url, HOW_TO_START};

/// RabbitMQ as the broker, Redis as the store.
#[derive(Debug, Clone, Copy, Default)]
pub struct RabbitRedis;

#[async_trait]
impl BackendFactory for RabbitRedis {
    fn name(&self) -> &'static str {
        "rabbitmq+redis"
    }

    fn configure(&self, config: &mut Config) {
        config.broker = amqp_url().parse().expect("an AMQP URL");
        config.store = redis_url().parse().expect("a Redis URL");
        // Accepted whatever the test Redis keeps on disk.
        config.redis.require_persistence = false;
    }

    async fn backends(&self, config: &Config) -> Backends {
        match jobfleet_connect::connect(config).await {
            Ok(b) => b,
            Err(e) => panic!("{e}\nThe rabbitmq+redis checks need both services: {HOW_TO_START}"),
        }
    }

    async fn cleanup(&self, config: &Config, queues: &[String]) {
        let Ok(backends) = jobfleet_connect::connect(config).await else {
            return;
        };
        let _ = backends.broker.delete_routes(queues).await;
        let _ = backends.store.purge().await;
        backends.broker.close().await;
    }
}

/// Deletes every store key of the namespace `config` names (best effort: a cleanup).
pub async fn purge_store(config: &Config) {
    let Ok(store) = jobfleet_connect::connect_store(config, jobfleet_common::clock::system()).await
    else {
        return;
    };
    let _ = store.purge().await;
}

/// Deletes the routes of `queues` and the shared routes on the broker `config` names (best
/// effort: a cleanup).
pub async fn delete_routes(config: &Config, queues: &[String]) {
    let Ok(broker) = jobfleet_connect::connect_broker(config).await else {
        return;
    };
    let _ = broker.delete_routes(queues).await;
    broker.close().await;
}

//! The backends a check runs on, made by a [`BackendFactory`]: [`Embedded`] in-process,
//! [`RabbitRedis`] and [`KafkaRedis`] on the real services, and the clean-up of what a
//! check leaves on those.
//!
//! A backend that cannot be reached fails the check with how to start it; none is
//! skipped. The test Redis may or may not keep an append-only file, so every
//! configuration pointed at it sets `redis.require_persistence = false`; a check that
//! needs a Redis configured just so starts its own ([`RedisServer`](crate::RedisServer)).

use std::sync::Arc;

use async_trait::async_trait;
use jobfleet_common::clock::{self, TokioClock};
use jobfleet_common::embedded::EmbeddedStore;
use jobfleet_common::Store;
use jobfleet_common::{Backends, BrokerAddr, Config, Priority, StoreAddr};
use jobfleet_connect::kafka::band_of;

use crate::services::{
    amqp_url, kafka_url, redis_url, HOW_TO_START, HOW_TO_START_KAFKA, KAFKA_VAR,
};

/// Makes the backends one conformance check runs on: the broker conformance suite
/// (`jobfleet-tests`) takes all of them, the [store conformance
/// suite](mod@crate::store_conformance) the store alone.
#[async_trait]
pub trait BackendFactory: Send + Sync {
    /// The backend pair's name, for messages.
    fn name(&self) -> &'static str;
    /// Points `config` at the backends (broker and store URLs); the namespace is already
    /// unique to the test.
    fn configure(&self, config: &mut Config);
    /// Fresh backends for `config`. A backend that cannot be reached panics with how to
    /// start it: a conformance check never passes without its service.
    async fn backends(&self, config: &Config) -> Backends;
    /// A fresh store alone for `config`, without connecting the broker.
    async fn store(&self, config: &Config) -> Arc<dyn Store> {
        self.backends(config).await.store
    }
    /// The band a priority falls in on this broker: brokers with native priorities (the
    /// default) order all ten levels; a banded one (Kafka) orders only between bands.
    fn priority_band(&self, config: &Config, priority: u8) -> u8 {
        let _ = config;
        priority
    }
    /// Removes what a check left in shared services (queues, keys) under its namespace.
    async fn cleanup(&self, config: &Config, queues: &[String]) {
        let _ = (config, queues);
    }
}

/// How checks receive their backend factory.
pub type Factory = Arc<dyn BackendFactory>;

/// The in-process embedded broker and store.
#[derive(Debug, Clone, Copy, Default)]
pub struct Embedded;

#[async_trait]
impl BackendFactory for Embedded {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn configure(&self, config: &mut Config) {
        config.broker = BrokerAddr::Embedded;
        config.store = StoreAddr::Embedded;
    }

    async fn backends(&self, _config: &Config) -> Backends {
        Backends::embedded()
    }

    /// On tokio's clock, so a store check with paused time (`start_paused`) moves every
    /// expiry at once instead of waiting for it.
    async fn store(&self, _config: &Config) -> Arc<dyn Store> {
        Arc::new(EmbeddedStore::new(Arc::new(TokioClock::new())))
    }
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

    async fn store(&self, config: &Config) -> Arc<dyn Store> {
        connect_store(config).await
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

/// Kafka as the broker, Redis as the store: a Kafka-compatible server wherever
/// `TEST_KAFKA_BROKERS` points (`host:port`; `scripts/test.sh` starts one).
#[derive(Debug, Clone, Copy, Default)]
pub struct KafkaRedis;

#[async_trait]
impl BackendFactory for KafkaRedis {
    fn name(&self) -> &'static str {
        "kafka+redis"
    }

    fn configure(&self, config: &mut Config) {
        // Unset, the URL stays invalid and `backends` fails with how to set it.
        config.broker = kafka_url()
            .unwrap_or_else(|| "kafka://".into())
            .parse()
            .expect("a kafka:// URL");
        config.store = redis_url().parse().expect("a Redis URL");
        // The test Redis keeps nothing on disk (scripts/test.sh starts it so).
        config.redis.require_persistence = false;
        // librdkafka's own batching, as in production. Members learn of a rebalance from
        // their heartbeat; the default 3 s makes a join or leave slower than a whole check.
        let props = &mut config.kafka.properties;
        props.insert("heartbeat.interval.ms".into(), "100".into());
    }

    async fn backends(&self, config: &Config) -> Backends {
        if kafka_url().is_none() {
            panic!(
                "{KAFKA_VAR} is not set. The kafka+redis checks need Kafka: {HOW_TO_START_KAFKA}"
            );
        }
        match jobfleet_connect::connect(config).await {
            Ok(b) => b,
            Err(e) => {
                panic!("{e}\nThe kafka+redis checks need both services: {HOW_TO_START_KAFKA}")
            }
        }
    }

    async fn store(&self, config: &Config) -> Arc<dyn Store> {
        connect_store(config).await
    }

    fn priority_band(&self, config: &Config, priority: u8) -> u8 {
        let priority = Priority::new(priority).expect("a level 0-9");
        band_of(priority, config.kafka.bands)
    }

    /// Deletes the check's Redis keys. Its topics are left to the server: librdkafka
    /// can crash (librdkafka issue #5093) when a topic is deleted while a client of the
    /// same process still has it in its metadata, and the check's clients (consumers
    /// closing in the background, the producer) are still alive at cleanup. Every check
    /// uses its own namespace, and `scripts/test.sh` starts a Kafka of the run's own.
    async fn cleanup(&self, config: &Config, _queues: &[String]) {
        purge_store(config).await;
    }
}

/// The store `config` names, or a panic that says how to start Redis.
async fn connect_store(config: &Config) -> Arc<dyn Store> {
    match jobfleet_connect::connect_store(config, clock::system()).await {
        Ok(store) => store,
        Err(e) => panic!("{e}\nThe store checks need Redis: {HOW_TO_START}"),
    }
}

/// Deletes every store key of the namespace `config` names (best effort: a cleanup).
pub async fn purge_store(config: &Config) {
    let Ok(store) = jobfleet_connect::connect_store(config, clock::system()).await else {
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

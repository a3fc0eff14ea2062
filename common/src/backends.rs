//! Picking the broker and store a configuration names.

use std::sync::Arc;

use crate::broker::Broker;
use crate::clock::{self, SharedClock};
use crate::config::{redact, Config};
use crate::embedded::{EmbeddedBroker, EmbeddedStore};
use crate::kafka::KafkaBroker;
use crate::rabbitmq::RabbitBroker;
use crate::redis::{RedisConnectError, RedisStore};
use crate::store::Store;

/// The broker, store and clock every role is started with.
#[derive(Clone)]
pub struct Backends {
    /// Where jobs travel.
    pub broker: Arc<dyn Broker>,
    /// Where shared state lives.
    pub store: Arc<dyn Store>,
    /// "Now" for every role.
    pub clock: SharedClock,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("broker", &self.broker.name())
            .field("store", &self.store.name())
            .finish()
    }
}

/// Why the configured backends could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL's scheme has no backend in this build.
    #[error("config key `{key}`: {url} is not supported by this build")]
    Unsupported {
        /// `broker` or `store`.
        key: &'static str,
        /// The URL, password redacted.
        url: String,
    },
    /// The service did not answer.
    #[error("cannot connect to the {key} at {url}: {reason}")]
    Unreachable {
        /// `broker` or `store`.
        key: &'static str,
        /// The URL, password redacted.
        url: String,
        /// What the client said.
        reason: String,
    },
    /// The store keeps no append-only file and `redis.require_persistence` is on; the
    /// message names the key, what the server has and both fixes. Retrying will not help.
    #[error("{0}")]
    NotDurable(String),
}

impl Backends {
    /// A fresh embedded broker and store on the system clock.
    pub fn embedded() -> Self {
        Self::embedded_with_clock(clock::system())
    }

    /// A fresh embedded broker and store on `clock` (e.g. a
    /// [`TokioClock`](crate::clock::TokioClock) in tests with paused time).
    pub fn embedded_with_clock(clock: SharedClock) -> Self {
        Self {
            broker: Arc::new(EmbeddedBroker::new()),
            store: Arc::new(EmbeddedStore::new(clock.clone())),
            clock,
        }
    }

    /// Connects to the backends `config` names.
    pub async fn connect(config: &Config) -> Result<Self, ConnectError> {
        if config.broker == "embedded" && config.store == "embedded" {
            return Ok(Self::embedded());
        }
        let clock = clock::system();
        let unreachable = |key, url: &str, reason: String| ConnectError::Unreachable {
            key,
            url: redact(url),
            reason,
        };
        let store: Arc<dyn Store> = if is_scheme(&config.store, &["redis", "rediss"]) {
            let store = RedisStore::connect(
                &config.store,
                &config.namespace,
                &config.redis,
                clock.clone(),
            )
            .await
            .map_err(|e| match e {
                RedisConnectError::NotDurable(_) => ConnectError::NotDurable(e.to_string()),
                RedisConnectError::Store(e) => unreachable("store", &config.store, e.to_string()),
            })?;
            Arc::new(store)
        } else {
            return Err(ConnectError::Unsupported {
                key: "store",
                url: redact(&config.store),
            });
        };
        let broker: Arc<dyn Broker> = if is_scheme(&config.broker, &["amqp", "amqps"]) {
            let broker = RabbitBroker::connect(&config.broker, &config.namespace)
                .await
                .map_err(|e| unreachable("broker", &config.broker, e.to_string()))?;
            Arc::new(broker)
        } else if is_scheme(&config.broker, &["kafka"]) {
            let broker = KafkaBroker::connect(&config.broker, &config.namespace, &config.kafka)
                .await
                .map_err(|e| unreachable("broker", &config.broker, e.to_string()))?;
            Arc::new(broker)
        } else {
            return Err(ConnectError::Unsupported {
                key: "broker",
                url: redact(&config.broker),
            });
        };
        Ok(Self {
            broker,
            store,
            clock,
        })
    }
}

fn is_scheme(url: &str, schemes: &[&str]) -> bool {
    url.split_once("://")
        .is_some_and(|(scheme, _)| schemes.contains(&scheme))
}

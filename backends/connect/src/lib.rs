//! Connecting to the broker and store a configuration names: the one place where an
//! address ([`BrokerAddr`], [`StoreAddr`]) becomes a backend.
//!
//! Each backend is a crate of its own, compiled in by a cargo feature of this crate:
//!
//! | feature | addresses | crate |
//! | --- | --- | --- |
//! | `rabbitmq` | `amqp://…`, `amqps://…` | `jobfleet-rabbitmq` (lapin) |
//! | `kafka` | `kafka://host:port[,…]` | `jobfleet-kafka` (librdkafka) |
//! | `redis` | `redis://…`, `rediss://…` | `jobfleet-redis` |
//!
//! All three are on by default, and in the `jobfleet` binary. The crates that connect
//! by URL (`jobfleet-producer`, `jobfleet-worker`) forward the same features, so a service that only publishes to RabbitMQ builds with
//! `default-features = false, features = ["rabbitmq", "redis"]` and never compiles
//! librdkafka. An address whose feature was left out is refused with
//! [`ConnectError::NotBuilt`], which names the feature. The embedded backend is always
//! there.

use std::sync::Arc;

use jobfleet_common::broker::Broker;
use jobfleet_common::clock::{self, SharedClock};
use jobfleet_common::store::Store;
use jobfleet_common::{Backends, BrokerAddr, Config, StoreAddr};

#[cfg(feature = "kafka")]
pub use jobfleet_kafka as kafka;
#[cfg(feature = "rabbitmq")]
pub use jobfleet_rabbitmq as rabbitmq;
#[cfg(feature = "redis")]
pub use jobfleet_redis as redis;

/// Why the configured backends could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The address names a backend this build left out.
    #[error(
        "config key `{key}`: {addr} needs the `{feature}` backend, which this build leaves out \
         (rebuild with the cargo feature `{feature}`; the `jobfleet` binary has every backend)"
    )]
    NotBuilt {
        /// `broker` or `store`.
        key: &'static str,
        /// The address, password redacted.
        addr: String,
        /// The cargo feature that builds the backend.
        feature: &'static str,
    },
    /// The configuration names the embedded backend for a role that runs as a process of
    /// its own, which would share nothing with any other process.
    #[error(
        "the {role} cannot use the embedded backend: it lives inside one process, so no other \
         process would see its jobs; set `broker` and `store` to shared services (the \
         embedded backend is for `jobfleet dev` and tests)"
    )]
    EmbeddedAlone {
        /// `worker`, `producer`, …
        role: &'static str,
    },
    /// One of broker and store is embedded and the other is not.
    #[error(
        "config key `store`: the embedded broker and store live in one process and go \
         together: set both to `embedded`, or neither"
    )]
    Mixed,
    /// The service did not answer.
    #[error("cannot connect to the {key} at {addr}: {reason}")]
    Unreachable {
        /// `broker` or `store`.
        key: &'static str,
        /// The address, password redacted.
        addr: String,
        /// What the client said.
        reason: String,
    },
    /// The service answered and refused (bad credentials, a URL its client does not
    /// accept, a vhost that does not exist): retrying will not help until the
    /// configuration or the server changes.
    #[error("the {key} at {addr} refused the connection: {reason}")]
    Refused {
        /// `broker` or `store`.
        key: &'static str,
        /// The address, password redacted.
        addr: String,
        /// What the client said.
        reason: String,
    },
    /// The store keeps no append-only file and `redis.require_persistence` is on; the
    /// message names the key, what the server has and both fixes. Retrying will not help.
    #[error("{0}")]
    NotDurable(String),
}

impl ConnectError {
    /// Whether trying again later can succeed (the service may come up).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

/// Connects to the broker and store `config` names, on the system clock. Both
/// `embedded` gives a fresh in-process pair. An address whose backend this build left
/// out is refused before anything connects.
pub async fn connect(config: &Config) -> Result<Backends, ConnectError> {
    match (&config.broker, &config.store) {
        (BrokerAddr::Embedded, StoreAddr::Embedded) => return Ok(Backends::embedded()),
        (BrokerAddr::Embedded, _) | (_, StoreAddr::Embedded) => return Err(ConnectError::Mixed),
        _ => {}
    }
    require_built(
        "broker",
        &config.broker.to_string(),
        config.broker.backend(),
    )?;
    require_built("store", &config.store.to_string(), config.store.backend())?;
    let clock = clock::system();
    let store = connect_store(config, clock.clone()).await?;
    let broker = connect_broker(config).await?;
    Ok(Backends {
        broker,
        store,
        clock,
    })
}

/// Connects to the shared services `config` names for `role`, refusing the embedded
/// backend ([`ConnectError::EmbeddedAlone`]).
pub async fn connect_shared(config: &Config, role: &'static str) -> Result<Backends, ConnectError> {
    if config.broker.is_embedded() || config.store.is_embedded() {
        return Err(ConnectError::EmbeddedAlone { role });
    }
    connect(config).await
}

/// [`ConnectError::NotBuilt`] unless this build has the backend `feature`.
fn require_built(key: &'static str, addr: &str, feature: &'static str) -> Result<(), ConnectError> {
    if built().contains(&feature) {
        Ok(())
    } else {
        Err(ConnectError::NotBuilt {
            key,
            addr: addr.to_string(),
            feature,
        })
    }
}

/// A client's refusal or silence, as the error for `key` at `addr`: what retrying can
/// fix is [`ConnectError::Unreachable`], the rest [`ConnectError::Refused`].
#[cfg(any(feature = "rabbitmq", feature = "kafka", feature = "redis"))]
fn failed(key: &'static str, addr: String, retryable: bool, reason: String) -> ConnectError {
    if retryable {
        ConnectError::Unreachable { key, addr, reason }
    } else {
        ConnectError::Refused { key, addr, reason }
    }
}

/// Connects to the (shared) broker `config` names.
pub async fn connect_broker(config: &Config) -> Result<Arc<dyn Broker>, ConnectError> {
    let addr = &config.broker;
    #[cfg(any(feature = "rabbitmq", feature = "kafka"))]
    let failed = |e: jobfleet_common::BrokerError| {
        failed("broker", addr.to_string(), e.is_retryable(), e.to_string())
    };
    match addr {
        BrokerAddr::Embedded => Err(ConnectError::Mixed),
        #[cfg(feature = "rabbitmq")]
        BrokerAddr::Amqp(url) => {
            let broker = rabbitmq::RabbitBroker::connect(url, &config.namespace)
                .await
                .map_err(failed)?;
            Ok(Arc::new(broker))
        }
        #[cfg(feature = "kafka")]
        BrokerAddr::Kafka(url) => {
            let broker = kafka::KafkaBroker::connect(url, &config.namespace, &config.kafka)
                .await
                .map_err(failed)?;
            Ok(Arc::new(broker))
        }
        #[allow(unreachable_patterns)]
        _ => Err(ConnectError::NotBuilt {
            key: "broker",
            addr: addr.to_string(),
            feature: addr.backend(),
        }),
    }
}

/// Connects to the (shared) store `config` names, on `clock`.
pub async fn connect_store(
    config: &Config,
    clock: SharedClock,
) -> Result<Arc<dyn Store>, ConnectError> {
    let addr = &config.store;
    match addr {
        StoreAddr::Embedded => Err(ConnectError::Mixed),
        #[cfg(feature = "redis")]
        StoreAddr::Redis(url) => {
            let store = redis::RedisStore::connect(url, &config.namespace, &config.redis, clock)
                .await
                .map_err(|e| match e {
                    redis::RedisConnectError::NotDurable(_) => {
                        ConnectError::NotDurable(e.to_string())
                    }
                    redis::RedisConnectError::Store(e) => {
                        failed("store", addr.to_string(), e.is_retryable(), e.to_string())
                    }
                })?;
            Ok(Arc::new(store))
        }
        #[allow(unreachable_patterns)]
        _ => {
            let _ = clock;
            Err(ConnectError::NotBuilt {
                key: "store",
                addr: addr.to_string(),
                feature: addr.backend(),
            })
        }
    }
}

/// The backends this build has, by feature name (`embedded` always).
pub fn built() -> Vec<&'static str> {
    let mut names = vec!["embedded"];
    if cfg!(feature = "rabbitmq") {
        names.push("rabbitmq");
    }
    if cfg!(feature = "kafka") {
        names.push("kafka");
    }
    if cfg!(feature = "redis") {
        names.push("redis");
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(broker: &str, store: &str) -> Config {
        Config {
            broker: broker.parse().expect("a broker address"),
            store: store.parse().expect("a store address"),
            ..Config::default()
        }
    }

    #[tokio::test]
    async fn embedded_needs_no_feature_and_must_not_be_mixed() {
        let backends = connect(&Config::default()).await.expect("embedded");
        assert_eq!(backends.broker.name(), "embedded");
        let e = connect(&config("embedded", "redis://127.0.0.1:1/"))
            .await
            .expect_err("mixed");
        assert!(matches!(e, ConnectError::Mixed), "{e}");
    }

    /// Run by `scripts/test.sh` with `--no-default-features`: a build without a backend
    /// refuses its address, naming the feature and hiding the password, before any
    /// connection is tried.
    #[tokio::test]
    async fn an_address_whose_backend_is_not_built_is_refused_by_feature_name() {
        let cases = [
            (
                "amqp://u:S3cret@127.0.0.1:1/%2f",
                "redis://127.0.0.1:1/",
                "rabbitmq",
            ),
            (
                "kafka://u:S3cret@127.0.0.1:1",
                "redis://127.0.0.1:1/",
                "kafka",
            ),
        ];
        for (broker, store, feature) in cases {
            let c = config(broker, store);
            let built = built().contains(&feature);
            match connect_broker(&c).await {
                Err(ConnectError::NotBuilt {
                    key,
                    addr,
                    feature: f,
                }) => {
                    assert!(!built, "{feature} is built but was refused");
                    assert_eq!((key, f), ("broker", feature));
                    assert!(!addr.contains("S3cret"), "{addr}");
                }
                Err(
                    ConnectError::Unreachable { addr, .. } | ConnectError::Refused { addr, .. },
                ) => {
                    assert!(built, "{feature} is not built but was tried");
                    assert!(!addr.contains("S3cret"), "{addr}");
                }
                Err(e) => panic!("unexpected error for {broker}: {e}"),
                Ok(_) => panic!("connected to port 1 at {broker}"),
            }
        }
        let c = config("amqp://127.0.0.1:1/", "redis://u:S3cret@127.0.0.1:1/");
        let redis_built = built().contains(&"redis");
        match connect_store(&c, clock::system()).await {
            Err(e @ ConnectError::NotBuilt { .. }) => {
                assert!(!redis_built, "redis is built but was refused");
                let text = e.to_string();
                assert!(
                    text.contains("`redis`") && text.contains("`store`"),
                    "{text}"
                );
                assert!(!text.contains("S3cret"), "{text}");
            }
            Err(e @ (ConnectError::Unreachable { .. } | ConnectError::Refused { .. })) => {
                assert!(redis_built, "redis is not built but was tried");
                assert!(!e.to_string().contains("S3cret"), "{e}");
            }
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => panic!("connected to port 1"),
        }
        // A broker this build lacks is named before the store is tried (the store here
        // is unreachable, so trying it first would report that instead).
        let c = config("kafka://127.0.0.1:1", "redis://127.0.0.1:1/");
        match connect(&c).await {
            Err(ConnectError::NotBuilt { key, feature, .. }) => {
                assert!(
                    !built().contains(&"kafka"),
                    "kafka is built but was refused"
                );
                assert_eq!((key, feature), ("broker", "kafka"));
            }
            Err(e) => assert!(
                built().contains(&"kafka") && !matches!(e, ConnectError::NotBuilt { .. }),
                "unexpected error: {e}"
            ),
            Ok(_) => panic!("connected to port 1"),
        }
    }
}

//! The broker and store a configuration names, parsed once into an enum.
//!
//! Every place that cares which backend a URL means matches on [`BrokerAddr`] or
//! [`StoreAddr`]; nothing else looks at schemes. Both print with the password replaced
//! (`Display` and `Debug` alike), so a configuration can be logged; [`BrokerAddr::url`]
//! gives the URL itself, for the client that connects.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::redact::redact;

/// An address that names no backend jobfleet has.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not one of: {expected}")]
pub struct AddrError {
    /// The value, password redacted.
    pub value: String,
    /// The forms accepted.
    pub expected: &'static str,
}

/// Where jobs travel: the `broker` key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum BrokerAddr {
    /// The in-process broker (`embedded`), for `jobfleet dev` and tests.
    Embedded,
    /// A RabbitMQ server: `amqp://…` or `amqps://…` (the whole URL).
    Amqp(String),
    /// Kafka bootstrap servers: `kafka://host:port[,host:port]` (the whole URL).
    Kafka(String),
}

/// Where shared state lives: the `store` key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StoreAddr {
    /// The in-process store (`embedded`), for `jobfleet dev` and tests.
    Embedded,
    /// A Redis server: `redis://…` or `rediss://…` (the whole URL).
    Redis(String),
}

const EMBEDDED: &str = "embedded";

fn scheme(value: &str) -> Option<&str> {
    value.split_once("://").map(|(scheme, _)| scheme)
}

impl BrokerAddr {
    /// The forms the `broker` key accepts.
    pub const EXPECTED: &'static str = "embedded, amqp://…, amqps://…, kafka://host:port";

    /// Parses a `broker` value.
    pub fn parse(value: &str) -> Result<Self, AddrError> {
        match (value, scheme(value)) {
            (EMBEDDED, _) => Ok(Self::Embedded),
            (_, Some("amqp" | "amqps")) => Ok(Self::Amqp(value.to_string())),
            (_, Some("kafka")) => Ok(Self::Kafka(value.to_string())),
            _ => Err(AddrError {
                value: redact(value),
                expected: Self::EXPECTED,
            }),
        }
    }

    /// The URL as configured, password included: for the client that connects only.
    pub fn url(&self) -> &str {
        match self {
            Self::Embedded => EMBEDDED,
            Self::Amqp(url) | Self::Kafka(url) => url,
        }
    }

    /// Whether this is the in-process broker.
    pub fn is_embedded(&self) -> bool {
        matches!(self, Self::Embedded)
    }

    /// The backend's name: `embedded`, `rabbitmq` or `kafka`; also the name of the cargo
    /// feature that builds it.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Embedded => EMBEDDED,
            Self::Amqp(_) => "rabbitmq",
            Self::Kafka(_) => "kafka",
        }
    }
}

impl StoreAddr {
    /// The forms the `store` key accepts.
    pub const EXPECTED: &'static str = "embedded, redis://…, rediss://…";

    /// Parses a `store` value.
    pub fn parse(value: &str) -> Result<Self, AddrError> {
        match (value, scheme(value)) {
            (EMBEDDED, _) => Ok(Self::Embedded),
            (_, Some("redis" | "rediss")) => Ok(Self::Redis(value.to_string())),
            _ => Err(AddrError {
                value: redact(value),
                expected: Self::EXPECTED,
            }),
        }
    }

    /// The URL as configured, password included: for the client that connects only.
    pub fn url(&self) -> &str {
        match self {
            Self::Embedded => EMBEDDED,
            Self::Redis(url) => url,
        }
    }

    /// Whether this is the in-process store.
    pub fn is_embedded(&self) -> bool {
        matches!(self, Self::Embedded)
    }

    /// The backend's name: `embedded` or `redis`; also the name of the cargo feature that
    /// builds it.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Embedded => EMBEDDED,
            Self::Redis(_) => "redis",
        }
    }
}

macro_rules! string_forms {
    ($ty:ty) => {
        impl FromStr for $ty {
            type Err = AddrError;
            fn from_str(value: &str) -> Result<Self, AddrError> {
                Self::parse(value)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = AddrError;
            fn try_from(value: String) -> Result<Self, AddrError> {
                Self::parse(&value)
            }
        }

        impl From<$ty> for String {
            fn from(addr: $ty) -> String {
                addr.url().to_string()
            }
        }

        /// The URL with its password replaced by `***`.
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&redact(self.url()))
            }
        }

        /// The URL with its password replaced by `***`.
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", redact(self.url()))
            }
        }
    };
}

string_forms!(BrokerAddr);
string_forms!(StoreAddr);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_configuration_shows_no_secret() {
        let mut config = crate::Config {
            broker: BrokerAddr::parse("amqp://u:S3cret@h/").expect("amqp"),
            store: StoreAddr::parse("redis://:S3cret@h/").expect("redis"),
            ..crate::Config::default()
        };
        let props = &mut config.kafka.properties;
        props.insert("sasl.password".into(), "S3cret".into());
        props.insert("sasl.oauthbearer.client.secret".into(), "S3cret".into());
        props.insert("sasl.username".into(), "jobs".into());
        let shown = format!("{config:?}");
        assert!(!shown.contains("S3cret"), "{shown}");
        assert!(shown.contains("jobs"), "{shown}");
    }

    #[test]
    fn every_form_parses_to_its_variant() {
        assert_eq!(BrokerAddr::parse("embedded"), Ok(BrokerAddr::Embedded));
        let amqp = "amqp://guest:guest@127.0.0.1:5672/%2f";
        assert_eq!(BrokerAddr::parse(amqp), Ok(BrokerAddr::Amqp(amqp.into())));
        assert_eq!(
            BrokerAddr::parse("amqps://h/"),
            Ok(BrokerAddr::Amqp("amqps://h/".into()))
        );
        assert_eq!(
            BrokerAddr::parse("kafka://a:9092,b:9092"),
            Ok(BrokerAddr::Kafka("kafka://a:9092,b:9092".into()))
        );
        assert_eq!(StoreAddr::parse("embedded"), Ok(StoreAddr::Embedded));
        assert_eq!(
            StoreAddr::parse("rediss://h:6380/1"),
            Ok(StoreAddr::Redis("rediss://h:6380/1".into()))
        );
    }

    #[test]
    fn unknown_forms_are_refused_without_their_password() {
        let e = BrokerAddr::parse("nats://u:S3cret@h").expect_err("no nats backend");
        assert_eq!(e.value, "nats://u:***@h");
        assert!(!e.to_string().contains("S3cret"), "{e}");
        assert!(StoreAddr::parse("amqp://h").is_err());
        assert!(StoreAddr::parse("Embedded").is_err());
        assert!(BrokerAddr::parse("").is_err());
    }

    #[test]
    fn printing_hides_the_password_and_url_keeps_it() {
        let addr = BrokerAddr::parse("kafka://u:S3cret@h:9092").expect("kafka");
        assert_eq!(addr.to_string(), "kafka://u:***@h:9092");
        assert!(!format!("{addr:?}").contains("S3cret"));
        assert_eq!(addr.url(), "kafka://u:S3cret@h:9092");
        assert_eq!(addr.backend(), "kafka");
        assert_eq!(String::from(addr.clone()), addr.url());
    }
}

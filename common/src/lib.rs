//! jobfleet's shared core: the job model and wire format, configuration, errors, the
//! [`Broker`](broker::Broker) and [`Store`](store::Store) traits and their backends, and
//! the names of every metric.
//!
//! # Layout
//!
//! - [`job`]: the job model (id, queue, kind, priority, payload, attempts, lock, …).
//! - [`codec`]: the versioned envelope (postcard binary, JSON), encode and decode.
//! - [`limits`]: bounds on a job and the validation producers and workers run.
//! - [`retry`]: retry timing (exponential backoff, full jitter, cap), a pure function.
//! - [`clock`]: "now" as the roles see it, pausable in tests.
//! - [`broker`]: the `Broker` trait: routes, publish with confirms, consume, ack.
//! - [`store`]: the `Store` traits: delayed set, locks, job states, dead letters, heartbeats,
//!   integrity (detecting a store that lost its data).
//! - [`embedded`]: the in-process broker and store, for `jobfleet dev` and fast tests.
//! - [`rabbitmq`]: the RabbitMQ broker (lapin): priority queues, pipelined confirms, reconnects.
//! - [`kafka`]: the Kafka broker (librdkafka): priority bands, consumer groups, per-key order.
//! - [`redis`]: the Redis store: Lua-scripted delayed set, fenced locks, states, dead letters,
//!   the persistence check at connect and the data-loss sentinel.
//! - [`backends`]: picking backends from the configuration's URLs.
//! - [`dead`]: the dead route's reason header and dead letters made from messages.
//! - [`config`]: the typed configuration (file, `JOBFLEET_*` environment, flags).
//! - [`telemetry`]: metric names and the events that log and count together.

pub mod backends;
pub mod broker;
pub mod clock;
pub mod codec;
pub mod config;
pub mod dead;
pub mod embedded;
pub mod job;
pub mod kafka;
pub mod limits;
pub mod rabbitmq;
pub mod redis;
pub mod retry;
pub mod store;
pub mod telemetry;

pub use backends::Backends;
pub use broker::{Broker, BrokerError, Delivery, Message, Route};
pub use clock::{Clock, SharedClock};
pub use config::Config;
pub use job::{ErrorKind, ErrorRecord, Job, JobId, LockMode, LockSpec, Priority};
pub use store::{Store, StoreError};

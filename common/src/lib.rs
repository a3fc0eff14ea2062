//! jobfleet's shared core: the job model and wire format, configuration, errors, the
//! [`Broker`](broker::Broker) and [`Store`](store::Store) traits, the embedded backend, and
//! the names of every metric. It depends on no broker or store client: the RabbitMQ, Kafka
//! and Redis backends are crates of their own (`jobfleet-rabbitmq`, `jobfleet-kafka`,
//! `jobfleet-redis`), and `jobfleet-connect` picks one by URL, behind cargo features.
//! Nor does it build an HTTP server or a cron parser: the probes and metrics endpoint
//! every role serves is `jobfleet-http`, and `jobfleet-cron` reads cron expressions.
//!
//! # Layout
//!
//! - [`job`]: the job model (id, queue, kind, priority, payload, attempts, lock, …).
//! - [`codec`]: the versioned envelope (postcard binary, JSON), encode and decode.
//! - [`limits`]: bounds on a job and the validation producers and workers run.
//! - [`retry`]: retry timing (exponential backoff, full jitter, cap), a pure function.
//! - [`clock`]: "now" as the roles see it, pausable in tests.
//! - [`broker`]: the `Broker` trait: routes, publish with confirms, consume, ack.
//! - [`store`]: the `Store` traits: delayed set, locks, job states, execution leases, dead
//!   letters, heartbeats, schedules, pipelines, integrity (detecting a store that lost its
//!   data), the store's clock; and each role's bundle of them (`WorkerStore`,
//!   `SchedulerStore`, `OperatorStore`).
//! - [`embedded`]: the in-process broker and store, for `jobfleet dev` and fast tests.
//! - [`address`]: the broker and store addresses a configuration names, parsed once.
//! - [`backends`]: the broker, store and clock a role is started with.
//! - [`shutdown`]: SIGTERM and Ctrl-C as a cancellation token.
//! - [`dead`]: the dead route's reason header and dead letters made from messages.
//! - [`config`]: the typed configuration (file, `JOBFLEET_*` environment, flags).
//! - [`telemetry`]: metric names and the events that log and count together.
//! - [`cron`]: cron schedules as data: the spec and its policies, the checks that need no
//!   cron parser, each instant's job (`jobfleet-cron` reads the expressions).
//! - [`pipeline`]: multi-step job pipelines (steps in turn, fan-out steps whose results
//!   the next step receives together).
//! - [`trace`]: W3C trace context carried on a job, so its spans join the caller's trace.
//! - [`redact`]: secrets out of URLs before they reach a log line or an error.

pub mod address;
pub mod backends;
pub mod broker;
pub mod clock;
pub mod codec;
pub mod config;
pub mod cron;
pub mod dead;
pub mod embedded;
pub mod job;
pub mod limits;
pub mod pipeline;
pub mod redact;
pub mod retry;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod trace;

pub use address::{BrokerAddr, StoreAddr};
pub use backends::{Backends, OperatorBackends};
pub use broker::{Broker, BrokerError, Delivery, Message, Route};
pub use clock::{Clock, SharedClock};
pub use config::Config;
pub use job::{ErrorKind, ErrorRecord, Job, JobId, LockMode, LockSpec, Priority};
pub use store::{OperatorStore, SchedulerStore, Store, StoreError, WorkerStore};

//! The one test-support crate: whatever a jobfleet test needs besides the code it tests.
//!
//! - where the real services are and how to start them, fresh names
//!   ([`services`]: [`amqp_url`], [`HOW_TO_START`], [`unique_namespace`], …), a
//!   `redis-server` of a test's own ([`RedisServer`]);
//! - the backends a check runs on ([`BackendFactory`]: [`Embedded`], [`RabbitRedis`],
//!   [`KafkaRedis`]) and clearing what it leaves there ([`purge_store`],
//!   [`delete_routes`]);
//! - fleets: [`Fleet`], roles started in-process through the launcher `jobfleet dev`,
//!   `run` and the bench use (`jobfleet-fleet`), stopped together, on [`fast_config`];
//!   [`Ctx`], one conformance check's world (a fleet on a factory's backends, a queue, a
//!   producer);
//! - waits ([`wait_for`], [`wait_state`]), playing one side of a route ([`publish_job`],
//!   [`recv_job`]), an HTTP endpoint's answers ([`http_get`]), [`Probe`] and
//!   [`init_tracing`];
//! - the store conformance suite ([`store_conformance`](mod@store_conformance),
//!   [`store_conformance!`]) and the records it is made of ([`fixtures`]), which the
//!   backends' own tests use too.
//!
//! The other harnesses are thin layers on it: the broker conformance suite
//! (`tests/src/conformance`, on [`Ctx`]), the worker's (`worker/tests/behaviour/main.rs`:
//! one worker whose result a check reads), the scheduler's
//! (`scheduler/tests/support/mod.rs`: schedulers on a paused clock), the crash tests'
//! `World` (`tests/src/processes/world.rs`: roles as processes, on the same URLs and
//! waits).
//!
//! **One copy of each crate.** This crate depends on the roles and the backends. A crate
//! below it (common, a backend) may still use it in its own unit tests, for anything not
//! typed with that crate's own types (URLs, waits, [`RedisServer`], the records of
//! [`fixtures`], which are `jobfleet-common`'s): its unit tests are a second copy of the
//! crate, whose types are not the ones this crate sees. That is why the store checks run
//! as integration tests here (`tests/stores.rs`), on the stores as other crates see them.
//!
//! # Layout
//!
//! - [`services`]: the service URLs, how to start the services, unique names.
//! - `redis_server`: [`RedisServer`].
//! - `backends`: [`BackendFactory`] and its three implementations, the clean-ups.
//! - `fleet`: [`Fleet`] and [`fast_config`].
//! - `ctx`: [`Ctx`].
//! - `waits`, `routes`, `http`, `probe`: the waits, route helpers, HTTP `GET`, [`Probe`]
//!   and [`init_tracing`].
//! - [`store_conformance`](mod@store_conformance): the store checks, their macro and
//!   [`fixtures`].

mod backends;
mod ctx;
mod fleet;
mod http;
mod probe;
mod redis_server;
mod routes;
pub mod services;
pub mod store_conformance;
mod waits;

pub use backends::{
    delete_routes, purge_store, BackendFactory, Embedded, Factory, KafkaRedis, RabbitRedis,
};
pub use ctx::Ctx;
pub use fleet::{fast_config, Fleet};
pub use http::{free_addr, http_get};
pub use probe::{init_tracing, Probe};
pub use redis_server::{RedisServer, HOW_TO_INSTALL, VOLATILE};
pub use routes::{publish_job, recv_job};
pub use services::{
    amqp_url, kafka_url, redis_url, require_kafka_url, shared_config, unique, unique_namespace,
    AMQP_VAR, HOW_TO_START, HOW_TO_START_KAFKA, KAFKA_VAR, REDIS_VAR,
};
pub use store_conformance::fixtures;
pub use waits::{wait_for, wait_state};

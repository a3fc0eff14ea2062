//! Test support, for this crate's tests and (with the `testing` feature) every other
//! crate's: [`RedisServer`], a `redis-server` of a test's own with exactly the
//! configuration the test needs. A test that depends on how a Redis is configured (no
//! persistence, an append-only file, CONFIG disabled, TLS) starts one of these; none
//! relies on how the shared test Redis (`TEST_REDIS_URL`) happens to be configured.
//!
//! This crate's own tests also get a [`RedisStore`](crate::RedisStore) on the shared
//! Redis under a fresh namespace (`TestStore`) and the settings that accept any server
//! (`volatile`).

mod server;
#[cfg(test)]
mod store;

pub use server::{RedisServer, HOW_TO_INSTALL, VOLATILE};
#[cfg(test)]
pub(crate) use store::{volatile, TestStore};

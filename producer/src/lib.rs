//! jobfleet's producer: the library every enqueue goes through.
//!
//! A [`Producer`] validates jobs against the configured limits, stamps them, claims their
//! uniqueness keys, writes their first state records and publishes them to their ready
//! route (or the delayed route when they are due later) with one pipelined publish per
//! batch. The `jobfleet enqueue` command and any Rust service embedding jobfleet use it.
//!
//! # Layout
//!
//! - [`producer`]: [`Producer`], [`Enqueued`] and the enqueue path.
//! - [`uniqueness`]: claiming and releasing the uniqueness keys of a batch.
//! - [`error`]: [`ProduceError`], which says whether retrying can help.

mod error;
mod producer;
mod uniqueness;

pub use error::ProduceError;
pub use producer::{Enqueued, Producer};

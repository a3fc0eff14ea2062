//! The embedded backend: an in-process broker and store for `jobfleet dev` and fast tests.
//!
//! Both follow the real backends' semantics (priority ready routes, prefetch, redelivery
//! of unsettled messages; leased delayed claims, fenced locks, expiring keys) so the
//! conformance suite runs the same checks against them. Nothing outlives the process.
//!
//! # Layout
//!
//! - [`broker`]: [`EmbeddedBroker`], routes and consumers.
//! - `queue`: one route's priority bands and the acker that settles a delivery.
//! - [`store`]: [`EmbeddedStore`], the clock and the tables below behind mutexes.
//! - `delayed`, `locks`, `states`, `dead`, `heartbeats`, `schedules`, `pipelines`: one table per store capability,
//!   plain synchronous code that takes "now" as an argument.

pub mod broker;
mod dead;
mod delayed;
mod heartbeats;
mod locks;
mod pipelines;
mod queue;
mod schedules;
mod states;
pub mod store;

use std::sync::{Mutex, MutexGuard, PoisonError};

pub use broker::EmbeddedBroker;
pub use store::EmbeddedStore;

/// Locks a table. A panic while it was held cannot leave a table half-updated in a way
/// later calls trip over (each update is a few map operations), so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

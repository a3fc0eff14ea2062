//! One way to start jobfleet's roles in this process, for everything that does:
//! `jobfleet dev`, `jobfleet run`, `jobfleet bench` and the tests (through
//! `jobfleet-testkit`'s `Fleet`).
//!
//! A [`Fleet`] starts schedulers and workers through their public entry points
//! ([`jobfleet_scheduler::run`], [`jobfleet_worker::run`]) on one `CancellationToken`
//! and one `TaskTracker`. [`Fleet::ended`] tells when a role ends on its own (an error,
//! a panic, or returning before it was asked to), and [`Fleet::stop`] stops them
//! together: cancel, wait until every role has drained, then report the first that
//! failed. Closing connections is the caller's, once the roles are gone: it knows which
//! backends it opened.
//!
//! ```no_run
//! # async fn demo(registry: jobfleet_worker::Registry) -> Result<(), jobfleet_fleet::RoleFailure> {
//! use std::sync::Arc;
//! use jobfleet_common::{Backends, Config};
//! use tokio_util::sync::CancellationToken;
//!
//! let backends = Backends::embedded();
//! let fleet = jobfleet_fleet::Fleet::new(Arc::new(Config::default()), CancellationToken::new());
//! fleet.start_scheduler(backends.clone());
//! fleet.start_worker(backends, Arc::new(registry));
//! // … enqueue and watch …
//! fleet.stop().await
//! # }
//! ```
//!
//! # Layout
//!
//! - `fleet`: [`Fleet`]: starting roles, hearing of one that ended, stopping them all.
//! - `role`: [`Role`] (which one), [`RoleExit`] and [`RoleError`] (how it ended),
//!   [`RoleFailure`], [`RoleHandle`] (a role started apart); the task body that runs a
//!   role and reports its end, a panic included.

mod fleet;
mod role;

pub use fleet::Fleet;
pub use role::{Role, RoleError, RoleExit, RoleFailure, RoleHandle};

#[cfg(test)]
mod tests;

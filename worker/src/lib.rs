//! jobfleet's worker: the stateless executor. It consumes its queues' ready routes, and
//! for each delivery checks, locks, runs the job's handler, records the outcome and acks,
//! exactly as `docs/architecture.md` ("Life of a job", step 3) describes. All state lives
//! in the broker and the store, so any number of workers can run side by side and any
//! one can die mid-job: its deliveries come back and run again.
//!
//! ```no_run
//! # async fn example(config: std::sync::Arc<jobfleet_common::Config>) {
//! use std::sync::Arc;
//! use jobfleet_worker::{JobError, Registry};
//!
//! let mut registry = Registry::with_builtins();
//! registry.register_fn("resize", |ctx| async move {
//!     let size: u32 = ctx.payload_json()?;
//!     if size == 0 {
//!         return Err(JobError::permanent("size must be positive"));
//!     }
//!     Ok(())
//! });
//! let backends = jobfleet_common::Backends::embedded();
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! jobfleet_worker::run(config, backends, Arc::new(registry), shutdown).await.ok();
//! # }
//! ```
//!
//! # Layout
//!
//! - [`runtime`](run): the main loop, concurrency limit and graceful drain.
//! - `pipeline`: one delivery, step by step: size, decode, validate, kind, completion
//!   marker, cancel flag, lock, `running` record, attempt.
//! - `attempt`: one handler run: timeout, panic, stop from outside, lock watchdog.
//! - `settle`: publish-then-ack, giving deliveries back on backend errors, outcomes.
//! - `background`: heartbeat and cancel poll.
//! - `running`: the table of running attempts and how each is stopped.
//! - [`handler`](Handler): [`Handler`], [`Registry`], [`JobError`]; [`JobContext`] in
//!   `context`; the built-in kinds in `builtins`.
//! - `events`: log lines and metrics, together.
//! - [`WorkerError`]: why the worker could not start or had to stop.

mod attempt;
mod background;
mod builtins;
mod context;
mod error;
mod events;
mod handler;
mod pipeline;
mod runtime;
mod running;
mod settle;
mod state;

#[cfg(test)]
mod tests;

pub use context::JobContext;
pub use error::WorkerError;
pub use handler::{Handler, JobError, Registry};
pub use runtime::run;

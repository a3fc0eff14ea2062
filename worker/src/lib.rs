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
//! - `runtime`: [`run`]: consumers, the concurrency limit, the graceful drain.
//! - `pipeline`: one delivery, step by step: size, decode, validate, kind, admission,
//!   lock, `running` record, attempt.
//! - `admission`: completion marker, cancel flag and execution lease in one store call;
//!   waiting for a job that runs elsewhere; ending a job that crashes its workers.
//! - `lease`: the execution lease an attempt holds, and the watchdog that keeps it and
//!   the job's lock alive.
//! - `attempt`: one handler run: timeout, panic, stop from outside, lock watchdog.
//! - `settle`: publish-then-ack, giving deliveries back on backend errors, outcomes.
//! - `ticket`: what is settled: the delivery, or the store hold of a long job acked early.
//! - `background`: the heartbeat and the cancel poll.
//! - `running`: the table of running attempts and how each is stopped.
//! - `state`: the worker's identity and the state its tasks share.
//! - `handler`: [`Handler`], [`Registry`], [`JobError`]; `context`: [`JobContext`];
//!   `builtins`: the built-in kinds `echo`, `sleep`, `flaky`, `fail`.
//! - `events`: log lines and metrics, recorded together.
//! - `error`: [`WorkerError`], why the worker could not start or had to stop.

mod admission;
mod attempt;
mod background;
mod builtins;
mod context;
mod error;
mod events;
mod handler;
mod lease;
mod pipeline;
mod running;
mod runtime;
mod settle;
mod state;
mod ticket;

#[cfg(test)]
mod tests;

pub use context::JobContext;
pub use error::WorkerError;
pub use handler::{Handler, JobError, Registry};
pub use runtime::run;

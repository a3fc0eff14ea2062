//! jobfleet's worker: the stateless executor. It consumes its queues' ready routes, and
//! for each delivery checks, locks, runs the job's handler, records the outcome and acks,
//! exactly as `docs/architecture.md` ("Life of a job", step 3) describes. All state lives
//! in the broker and the store, so any number of workers can run side by side and any
//! one can die mid-job: its deliveries come back and run again.
//!
//! Your own job kinds run in a [`Worker`]: the configuration `jobfleet worker` reads
//! (the file `JOBFLEET_CONFIG` names and `JOBFLEET_*` variables), your handlers, and the
//! same drain on SIGTERM or Ctrl-C:
//!
//! ```no_run
//! use jobfleet_worker::{JobContext, JobError, Worker};
//!
//! async fn resize(ctx: JobContext) -> Result<(), JobError> {
//!     let width: u32 = ctx.payload_json()?;
//!     if width == 0 {
//!         return Err(JobError::permanent("width must be positive"));
//!     }
//!     Ok(())
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), jobfleet_worker::Error> {
//!     Worker::from_env()?
//!         .with_builtins()
//!         .handler_fn("resize", resize)
//!         .run_until_signal()
//!         .await
//! }
//! ```
//!
//! [`run`] is the same loop on backends and a token you bring (tests, `jobfleet dev`).
//! The backends the crate can connect to by URL are its cargo features `rabbitmq`,
//! `kafka` and `redis` (all on by default).
//!
//! # Layout
//!
//! - `runtime`: [`run`]: consumers, the concurrency limit, the graceful drain.
//! - `delivery`: one delivery, step by step: size, decode, validate, kind, admission,
//!   lock, `running` record, attempt.
//! - `admission`: completion marker, cancel flag and execution lease in one store call;
//!   waiting for a job that runs elsewhere; ending a job that crashes its workers.
//! - `lease`: the execution lease an attempt holds, and the watchdog that keeps it and
//!   the job's lock alive.
//! - `lapse`: why a lease or lock could not be kept, in the words the attempt's error
//!   keeps (below `lease`, which finds it out, and `running`, which stops on it).
//! - `attempt`: one handler run: timeout, panic, stop from outside, lock watchdog.
//! - `settle`: publish-then-ack, giving deliveries back on backend errors, outcomes.
//! - `settlement`: [`Settlement`], how a delivery was settled: the `outcome` of the log
//!   line and the attempts metric, and what [`Registry::on_settled`] is called with.
//! - `ticket`: what is settled: the delivery, or the store hold of a long job acked early.
//! - `background`: the heartbeat and the cancel poll.
//! - `running`: the table of running attempts and how each is stopped.
//! - `store_time`: the worker's clock, which follows the store's (Redis `TIME`).
//! - `ms`: durations as the saturating integer milliseconds the store and records take.
//! - `state`: the worker's identity and the state its tasks share, the store among it as
//!   a `WorkerStore`: the capabilities a worker uses, no more (docs/architecture.md).
//! - `job_error`: [`JobError`], what a failing handler returns (below `handler` and
//!   `context`, which both speak of it); `handler`: [`Handler`], [`Registry`];
//!   `context`: [`JobContext`]; `builtins`: the built-in kinds `echo`, `sleep`, `flaky`,
//!   `fail`, and [`Registry::with_builtins`].
//! - `events`: log lines and metrics, recorded together.
//! - `follow_up`: the next step of a pipeline, enqueued by the worker that completes a
//!   step's last job.
//! - `job_trace`: the span an attempt runs in, joined to the trace its job carries.
//! - [`otel`]: OpenTelemetry export of job spans over OTLP/HTTP (`log.otlp_endpoint`).
//! - `error`: [`WorkerError`], why the worker could not start or had to stop.
//! - `service`: [`Worker`], a worker process of your own: configuration, handlers,
//!   backends by URL, run until a signal; [`Error`] for everything that can stop it.

mod admission;
mod attempt;
mod background;
pub mod builtins;
mod context;
mod delivery;
mod error;
mod events;
mod follow_up;
mod handler;
mod job_error;
mod job_trace;
mod lapse;
mod lease;
mod ms;
pub mod otel;
mod running;
mod runtime;
mod service;
mod settle;
mod settlement;
mod state;
mod store_time;
mod ticket;

pub use context::JobContext;
pub use error::WorkerError;
pub use handler::{Handler, Registry};
pub use job_error::JobError;
pub use jobfleet_common::{Config, Job};
pub use jobfleet_connect::ConnectError;
pub use runtime::run;
pub use service::{init_logging, Error, Worker};
pub use settlement::Settlement;

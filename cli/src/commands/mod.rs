//! One module per `jobfleet` command. Each exposes its clap flags (`…Args`) and an async
//! `run` that takes the loaded configuration (and, for long-running commands, the
//! shutdown token); `dev` also exposes [`dev::run`] for tests to call in-process.
//!
//! # Layout
//!
//! - Roles: `worker`, `scheduler`; and `dev`, scheduler, workers and a sample workload in
//!   one process on the embedded backend.
//! - `run`: one job in this process, its result printed.
//! - Producing: `enqueue` (one job, or a JSON-lines file), `pipeline` (submit, status).
//! - Looking and acting: `status`, `queues`, `workers`, `dlq`, `cancel`, `schedule`.
//! - Measuring: `bench` (jobfleet beside the bare broker client), `bench_data` and
//!   `sample_data` (the data kinds, with the `data` feature).

pub mod bench;
#[cfg(feature = "data")]
pub mod bench_data;
pub mod cancel;
pub mod dev;
pub mod dlq;
pub mod enqueue;
pub mod pipeline;
pub mod queues;
pub mod run;
#[cfg(feature = "data")]
pub mod sample_data;
pub mod schedule;
pub mod scheduler;
pub mod status;
pub mod worker;
pub mod workers;

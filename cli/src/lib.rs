//! The `jobfleet` command as a library: every command is a function here, and the binary
//! (`src/main.rs`) only parses the command line and calls them. Tests call the same
//! functions in-process, e.g. [`commands::dev::run`].
//!
//! # Layout
//!
//! - [`app`]: the command line (`Cli`) and running one parsed command; `src/main.rs` only
//!   parses and calls it.
//! - [`global`]: the flags every command takes, loading the configuration from them, and
//!   connecting to shared services (refusing the single-process embedded backend).
//! - [`commands`]: one module per command, each with its flags and its `run` (listed in
//!   its own layout).
//! - [`kinds`]: the job kinds the command's workers run: the built-in ones and, with the
//!   `data` feature, `ingest`, `train` and `predict`; their payload checks for `run`.
//! - [`shutdown`]: SIGTERM and Ctrl-C cancel a `CancellationToken`, and nothing else.
//! - [`logging`]: `tracing` output, JSON or text, quiet in `dev`.
//! - [`progress`]: the progress bar, or plain lines when stderr is not a terminal.
//! - [`parse`]: flag values clap does not know (durations, priorities, JSON payloads).
//! - [`error`]: every failure with its exit code.
//! - [`dev_summary`]: what `jobfleet dev` reports at the end, as plain data below `error`
//!   (whose `NotIdle` carries it) and the `dev` command.

pub mod app;
pub mod commands;
pub mod dev_summary;
pub mod error;
pub mod global;
pub mod kinds;
pub mod logging;
pub mod parse;
pub mod progress;

pub use error::{Error, Result};
pub use global::GlobalArgs;
pub use jobfleet_common::shutdown;

//! jobfleet's producer: the library every enqueue goes through.
//!
//! A [`Producer`] validates jobs against the configured limits, stamps them, claims their
//! uniqueness keys, writes their first state records and publishes them to their ready
//! route (or the delayed route when they are due later) with one pipelined publish per
//! batch. The `jobfleet enqueue` command and any Rust service embedding jobfleet use it.
//!
//! A service of yours connects with [`Producer::connect`] to the broker and store the
//! configuration names (the file `JOBFLEET_CONFIG` names and `JOBFLEET_*` variables, via
//! [`Config::from_env`]):
//!
//! ```no_run
//! use jobfleet_producer::{Config, Job, Producer};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let producer = Producer::connect(&Config::from_env()?).await?;
//! let job = Job::new("files", "checksum", r#"{"path": "/tmp/a"}"#);
//! let enqueued = producer.enqueue(job).await?;
//! println!("enqueued {}", enqueued.id);
//! # Ok(()) }
//! ```
//!
//! The backends it can connect to by URL are its cargo features `rabbitmq`, `kafka` and
//! `redis` (all on by default): `default-features = false, features = ["rabbitmq",
//! "redis"]` leaves librdkafka out of your build.
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
pub use jobfleet_common::{Config, Job, JobId, Priority};
pub use jobfleet_connect::ConnectError;
pub use producer::{Enqueued, Producer};

//! Operator functions: what `jobfleet cancel`, `jobfleet dlq …` and `jobfleet queues`
//! call. Each is one short conversation with the backends; none needs a running scheduler.
//!
//! # Layout
//!
//! - [`cancel`](fn@cancel): cancel a job wherever it is.
//! - [`dlq_list`], [`dlq_replay`], [`dlq_purge`]: inspect, re-run or drop dead letters.
//! - [`queue_depths`]: how many jobs each queue holds, and where.

mod cancel;
mod depths;
mod dlq;

pub use cancel::{cancel, CancelOutcome};
pub use depths::{queue_depths, QueueDepth};
pub use dlq::{dlq_list, dlq_purge, dlq_replay, ReplayReport};

//! Operator functions: what `jobfleet cancel`, `dlq …`, `schedule …`, `pipeline …` and
//! `queues` call, and the scheduler's HTTP API with them. Each is one short conversation
//! with the backends; none needs a running scheduler.
//!
//! Each takes the store as the operators' bundle,
//! [`OperatorStore`](jobfleet_common::store::OperatorStore), or as the one capability it
//! uses (`dlq_list` reads only [`DeadLetters`](jobfleet_common::store::DeadLetters)), and
//! the broker and the clock only where it needs them, so its signature says what it may
//! touch. A caller holding a whole `Backends` passes `&*backends.store`, which upcasts.
//!
//! # Layout
//!
//! - `cancel`: [`cancel`](fn@cancel) a job wherever it is.
//! - `dlq`: [`dlq_list`], [`dlq_replay`], [`dlq_purge`]: inspect, re-run or drop dead
//!   letters.
//! - `depths`: [`queue_depths`], how many jobs each queue holds, and where; and
//!   [`count_failed`] from live workers' heartbeats.
//! - `schedules`: [`schedule_add`], [`schedule_list`], [`schedule_show`],
//!   [`schedule_pause`], [`schedule_remove`], [`schedule_trigger`]: cron schedules.
//! - `pipelines`: [`pipeline_submit`], [`pipeline_status`]: pipelines.

mod cancel;
mod depths;
mod dlq;
mod pipelines;
mod schedules;

pub use cancel::{cancel, CancelOutcome};
pub use depths::{count_failed, queue_depths, QueueDepth};
pub use dlq::{dlq_list, dlq_purge, dlq_replay, ReplayReport};
pub use pipelines::{pipeline_status, pipeline_submit, PipelineView, StepView};
pub use schedules::{
    check as check_schedule, schedule_add, schedule_list, schedule_pause, schedule_remove,
    schedule_show, schedule_trigger, ScheduleView,
};

//! The behaviour every backend pair must show, one async function per check.
//!
//! Each check builds a fresh world with [`Ctx::new`](jobfleet_testkit::Ctx::new) on random
//! queue and namespace names, starts what it needs through the roles' public entry
//! points, and waits for outcomes with bounded timeouts (real time, short timers: the same
//! checks run against brokers in other processes, where tokio's paused clock cannot reach).

mod dead;
mod executions;
mod lifecycle;
mod locks;
mod long_jobs;
mod ordering;

pub use dead::{
    dead_after_exactly_max_attempts_with_history, dlq_replay_runs_the_job_again,
    retry_with_backoff_until_success, timeout_and_panic_are_failed_attempts,
    undecodable_oversized_and_unknown_go_dead,
};
pub use executions::{
    a_lost_lease_stops_the_handler_and_the_job_runs_again, a_running_job_never_runs_twice_at_once,
    crashed_executions_end_in_worker_crashed,
};
pub use lifecycle::{
    cancel_pending_delayed_and_running, completion_marker_dedupes_redelivery,
    graceful_drain_finishes_running_and_returns_the_rest, unique_key_returns_first_id,
    unpublished_records_are_forgotten_but_moved_ones_stay,
};
pub use locks::{
    exclusive_lock_serialises_with_increasing_fences, lock_conflict_skip_ends_cancelled,
    lock_loss_cancels_the_handler, shared_locks_run_together_but_not_beside_exclusive,
};
pub use long_jobs::long_job_is_held_and_handed_back;
pub use ordering::{delayed_release_is_never_early, priority_order_within_a_queue};

use std::time::Duration;

/// How long any single outcome may take before a check fails.
pub(crate) const WITHIN: Duration = Duration::from_secs(15);

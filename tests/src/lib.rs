//! jobfleet's conformance suite, and the end-to-end tests' helpers that only they use.
//!
//! The suite is a set of async functions generic over a backend factory
//! ([`jobfleet_testkit::BackendFactory`]); the [`conformance_suite!`] macro turns them
//! into `#[tokio::test]`s for one backend, so a new backend joins with one file under
//! `tests/tests/` and one macro call. What the checks run on (the factories, the
//! in-process fleet and each check's world, `Ctx`, the service URLs and waits) is the
//! test-support crate's, `jobfleet-testkit`.
//!
//! # Layout
//!
//! - [`kafka`]: the Kafka-only per-key order check.
//! - [`faults`]: a store wrapper that injects faults (lost lock renewals) into any backend.
//! - [`proxy`]: a TCP proxy that resets or partitions one process's connection to a
//!   service.
//! - [`conformance`]: the behaviour checks every backend must pass.
//! - [`processes`]: worker and scheduler processes for the crash tests (`tests/crash_*.rs`).
//! - [`browser`]: headless Chromium through ChromeDriver, for the dashboard test.
//! - [`s3`]: an S3-compatible server of a test's own (moto).
//! - [`gcs`]: a Google Cloud Storage emulator of a test's own (fake-gcs-server).
//! - [`emulator`]: the child process, log and setup requests both of those run on.
//! - [`python`]: the test venv's python (pika, moto).

pub mod browser;
pub mod conformance;
pub mod emulator;
pub mod faults;
pub mod gcs;
pub mod kafka;
pub mod processes;
pub mod proxy;
pub mod python;
pub mod s3;

/// Expands to one `#[tokio::test]` per conformance check, each building its backends with
/// `$factory` (an expression of a type implementing
/// [`BackendFactory`](jobfleet_testkit::BackendFactory)).
/// The crate that expands it depends on `jobfleet-testkit`.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@tests $factory;
            priority_order_within_a_queue,
            delayed_release_is_never_early,
            retry_with_backoff_until_success,
            dead_after_exactly_max_attempts_with_history,
            undecodable_oversized_and_unknown_go_dead,
            exclusive_lock_serialises_with_increasing_fences,
            shared_locks_run_together_but_not_beside_exclusive,
            lock_conflict_skip_ends_cancelled,
            lock_loss_cancels_the_handler,
            completion_marker_dedupes_redelivery,
            cancel_pending_delayed_and_running,
            unique_key_returns_first_id,
            unpublished_records_are_forgotten_but_moved_ones_stay,
            timeout_and_panic_are_failed_attempts,
            graceful_drain_finishes_running_and_returns_the_rest,
            dlq_replay_runs_the_job_again,
            long_job_is_held_and_handed_back,
            a_running_job_never_runs_twice_at_once,
            a_lost_lease_stops_the_handler_and_the_job_runs_again,
            crashed_executions_end_in_worker_crashed,
        );
    };
    (@tests $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                ::jobfleet_testkit::init_tracing();
                let factory: ::jobfleet_testkit::Factory = ::std::sync::Arc::new($factory);
                $crate::conformance::$name(&factory).await;
            }
        )*
    };
}

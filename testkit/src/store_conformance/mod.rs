//! The store conformance suite: the behaviour every store backend must show, as checks
//! on a fresh `&dyn Store`, and [`store_conformance!`](crate::store_conformance!), which
//! turns them into `#[tokio::test]`s for the store a [`BackendFactory`] makes.
//! `testkit/tests/stores.rs` runs them on the embedded store (with paused time) and on
//! the Redis store; a new store joins there with one macro call.
//!
//! Every check uses the same records ([`fixtures`]), so every backend is tested on the
//! same data. What only one backend has (Redis's key layout and scripts, the embedded
//! tables' internals) stays in that backend's own tests.
//!
//! # Layout
//!
//! - [`fixtures`]: the records the checks are made of (the backends' own tests use them
//!   too).
//! - `delayed`: the delayed set: claims under a lease, rescheduling, removal.
//! - `records`: a job's state record while it waits in the delayed set.
//! - `executions`: the execution lease.
//! - `schedules`: cron schedules and the leader's fenced step.
//! - `pipelines`: pipelines and their steps' results.
//! - `dead`: dead letters.
//! - `heartbeats`: live workers.

mod dead;
mod delayed;
mod executions;
pub mod fixtures;
mod heartbeats;
mod pipelines;
mod records;
mod schedules;

use std::sync::Arc;

use jobfleet_common::{Config, Store, StoreError};

use crate::backends::BackendFactory;
use crate::services::unique_namespace;

pub use dead::{
    a_dead_letter_put_again_replaces_it_and_remove_counts,
    dead_letters_list_newest_first_through_the_filter,
};
pub use delayed::{
    an_expired_lease_returns_its_jobs, claims_due_jobs_in_order_and_counts_until_released,
    rescheduling_moves_a_job_without_double_counting, unschedule_removes_waiting_and_claimed_jobs,
};
pub use executions::execution_leases_admit_one_holder_and_count_crashes;
pub use heartbeats::heartbeats_expire_and_gone_workers_vanish;
pub use pipelines::pipeline_steps_complete_with_their_last_child;
pub use records::a_waiting_job_reads_as_scheduled_until_released;
pub use schedules::schedules_fire_once_per_instant_under_the_leader;

/// What a check returns: a store call that failed fails it as an error, a behaviour that
/// differs fails it with an assertion.
pub type Checked = Result<(), StoreError>;

/// A store from `factory` under a namespace of its own, empty.
pub async fn fresh_store<F>(factory: &F) -> Arc<dyn Store>
where
    F: BackendFactory + ?Sized,
{
    let mut config = Config {
        namespace: unique_namespace("store"),
        ..Config::default()
    };
    factory.configure(&mut config);
    factory.store(&config).await
}

/// Expands to one `#[tokio::test]` per store check, each on a fresh store from
/// `$factory` (an expression of a type implementing [`BackendFactory`]), deleted after
/// the check. With `paused`, the tests start with tokio's time paused, so a store on
/// tokio's clock (the embedded one) lets its expiries pass at once.
#[macro_export]
macro_rules! store_conformance {
    ($factory:expr) => {
        $crate::store_conformance!(@tests [tokio::test] $factory);
    };
    ($factory:expr, paused) => {
        $crate::store_conformance!(@tests [tokio::test(start_paused = true)] $factory);
    };
    (@tests [$test:meta] $factory:expr) => {
        $crate::store_conformance!(@checks [$test] $factory;
            claims_due_jobs_in_order_and_counts_until_released,
            an_expired_lease_returns_its_jobs,
            rescheduling_moves_a_job_without_double_counting,
            unschedule_removes_waiting_and_claimed_jobs,
            a_waiting_job_reads_as_scheduled_until_released,
            execution_leases_admit_one_holder_and_count_crashes,
            schedules_fire_once_per_instant_under_the_leader,
            pipeline_steps_complete_with_their_last_child,
            dead_letters_list_newest_first_through_the_filter,
            a_dead_letter_put_again_replaces_it_and_remove_counts,
            heartbeats_expire_and_gone_workers_vanish,
        );
    };
    (@checks [$test:meta] $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[$test]
            async fn $name() -> $crate::store_conformance::Checked {
                let store = $crate::store_conformance::fresh_store(&$factory).await;
                let checked = $crate::store_conformance::$name(&*store).await;
                store.purge().await?;
                checked
            }
        )*
    };
}

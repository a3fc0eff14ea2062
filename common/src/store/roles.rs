//! The store as each role sees it: one bundle trait per role, whose supertraits are
//! exactly the capabilities that role uses, so a role's handle says what it may touch and
//! the compiler refuses anything else.
//!
//! | capability | [`WorkerStore`] | [`SchedulerStore`] | [`OperatorStore`] | producer |
//! | --- | --- | --- | --- | --- |
//! | [`DelayedSet`] | yes | yes | yes | |
//! | [`Locks`] | yes | yes | | |
//! | [`JobStates`] | yes | yes | yes | yes |
//! | [`Executions`] | yes | | | |
//! | [`DeadLetters`] | | yes | yes | |
//! | [`Heartbeats`] | yes | | yes | |
//! | [`Schedules`] | | yes | yes | |
//! | [`Pipelines`] | yes | | yes | |
//! | [`Integrity`] | yes | yes | yes | |
//! | [`StoreTime`] | yes | yes | yes | |
//!
//! The producer needs one capability and holds it alone (`Arc<dyn JobStates>`).
//!
//! Each bundle has a blanket implementation for every type with its capabilities, so a
//! backend implements each capability once and never a bundle. [`Store`](super::Store)
//! requires every bundle, so an `Arc<dyn Store>` upcasts to `Arc<dyn WorkerStore>` (and
//! from there to any one capability the worker has). A role that starts to use a
//! capability its bundle lacks does not compile until the bundle (and this table) says so.

use super::{
    DeadLetters, DelayedSet, Executions, Heartbeats, Integrity, JobStates, Locks, Pipelines,
    Schedules, StoreTime,
};

/// What a worker uses: it admits jobs under an execution lease, takes their locks,
/// records their states, holds long jobs in the delayed set, enqueues pipelines' next
/// steps and children, beats its heartbeat, watches the store's integrity and keeps time
/// by the store's clock. It files no dead letters (it publishes them to the dead route)
/// and fires no schedules.
pub trait WorkerStore:
    DelayedSet + Locks + JobStates + Executions + Heartbeats + Pipelines + Integrity + StoreTime
{
}

impl<T> WorkerStore for T where
    T: ?Sized
        + DelayedSet
        + Locks
        + JobStates
        + Executions
        + Heartbeats
        + Pipelines
        + Integrity
        + StoreTime
{
}

/// What a scheduler's loops use: the delayed set they fill and release, the leader lock,
/// job states, the dead letters they file, the schedules they fire, the store's
/// integrity and its clock. Its HTTP API is operator work and takes an
/// [`OperatorStore`].
pub trait SchedulerStore:
    DelayedSet + Locks + JobStates + DeadLetters + Schedules + Integrity + StoreTime
{
}

impl<T> SchedulerStore for T where
    T: ?Sized + DelayedSet + Locks + JobStates + DeadLetters + Schedules + Integrity + StoreTime
{
}

/// What the operator commands (`jobfleet cancel`, `dlq`, `queues`, `schedule`,
/// `pipeline`, `status`, `workers`) and the scheduler's HTTP API and dashboard use: they
/// read and change job states, the delayed set, dead letters, schedules and pipelines,
/// list live workers, read and clear data-loss incidents. They take no lock and no
/// execution lease: those belong to the job running.
pub trait OperatorStore:
    DelayedSet + JobStates + DeadLetters + Heartbeats + Schedules + Pipelines + Integrity + StoreTime
{
}

impl<T> OperatorStore for T where
    T: ?Sized
        + DelayedSet
        + JobStates
        + DeadLetters
        + Heartbeats
        + Schedules
        + Pipelines
        + Integrity
        + StoreTime
{
}

#[cfg(test)]
mod tests {
    //! Compile-time guards: these fail to build when a bundle stops being satisfied by
    //! the umbrella or by a backend, or when the upcasts the roles rely on stop working.

    use std::sync::Arc;

    use super::*;
    use crate::embedded::EmbeddedStore;
    use crate::store::Store;

    fn bundles<T: WorkerStore + SchedulerStore + OperatorStore + ?Sized>() {}

    #[test]
    fn the_umbrella_and_the_embedded_store_hold_every_bundle() {
        bundles::<dyn Store>();
        bundles::<EmbeddedStore>();
    }

    #[test]
    fn an_umbrella_handle_narrows_to_each_role_and_on_to_one_capability() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::new(crate::clock::system()));
        let worker: Arc<dyn WorkerStore> = store.clone();
        let scheduler: Arc<dyn SchedulerStore> = store.clone();
        let operator: Arc<dyn OperatorStore> = store.clone();
        let lease: Arc<dyn Executions> = worker;
        let leader: Arc<dyn Locks> = scheduler;
        let dead: Arc<dyn DeadLetters> = operator;
        // Every handle is the same store: narrowing copies the pointer, nothing else.
        assert_eq!(Arc::strong_count(&store), 4);
        drop((lease, leader, dead));
        assert_eq!(Arc::strong_count(&store), 1);
    }
}

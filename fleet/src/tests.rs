//! The launcher on the embedded backend: roles stop together, a role that ends on its own
//! is heard with its error, a worker apart stops alone, a panic is a role's end too.

use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::{Backends, Config};
use jobfleet_worker::{Registry, WorkerError};
use tokio_util::sync::CancellationToken;

use crate::role::{run_role, Report};
use crate::{Fleet, Role, RoleError};

/// Far more than an embedded fleet needs to start or drain.
const PATIENCE: Duration = Duration::from_secs(20);

fn config() -> Arc<Config> {
    let mut config = Config::default();
    config.worker.queues = vec!["fleet-test".into()];
    config.worker.grace_period = Duration::from_secs(1);
    Arc::new(config)
}

fn echo() -> Arc<Registry> {
    let mut registry = Registry::new();
    registry.register_fn("echo", |_| async { Ok(()) });
    Arc::new(registry)
}

/// Waits until `n` workers heartbeat: they have started consuming.
async fn wait_for_workers(backends: &Backends, n: usize) {
    let started = async {
        while backends.store.workers().await.expect("store answers").len() < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(PATIENCE, started)
        .await
        .expect("the workers start");
}

#[tokio::test]
async fn stop_drains_every_role_and_names_no_failure() {
    let backends = Backends::embedded();
    let fleet = Fleet::new(config(), CancellationToken::new());
    assert_eq!(fleet.start_scheduler(backends.clone()), Role::Scheduler(1));
    assert_eq!(
        fleet.start_worker(backends.clone(), echo()),
        Role::Worker(1)
    );
    assert_eq!(
        fleet.start_worker(backends.clone(), echo()),
        Role::Worker(2)
    );
    assert_eq!(fleet.workers(), 2);
    wait_for_workers(&backends, 2).await;

    let stopped = tokio::time::timeout(PATIENCE, fleet.stop()).await;
    stopped.expect("stops in time").expect("no role failed");
    assert!(
        backends.store.workers().await.expect("store").is_empty(),
        "a drained worker says it is gone"
    );
}

#[tokio::test]
async fn a_role_that_ends_on_its_own_is_heard_with_its_error() {
    let backends = Backends::embedded();
    let mut fleet = Fleet::new(config(), CancellationToken::new());
    fleet.start_worker(backends.clone(), echo());
    // No handlers: the worker refuses to start.
    fleet.start_worker(backends, Arc::new(Registry::new()));

    let exit = tokio::time::timeout(PATIENCE, fleet.ended())
        .await
        .expect("heard in time")
        .expect("a role ended");
    assert_eq!(exit.role, Role::Worker(2));
    assert!(
        matches!(exit.result, Err(RoleError::Worker(WorkerError::NoHandlers))),
        "{exit:?}"
    );
    tokio::time::timeout(PATIENCE, fleet.stop())
        .await
        .expect("stops in time")
        .expect("the failure was heard already; the other drained cleanly");
}

#[tokio::test]
async fn stop_names_a_failure_nobody_heard_yet() {
    let fleet = Fleet::new(config(), CancellationToken::new());
    fleet.start_worker(Backends::embedded(), Arc::new(Registry::new()));
    let failure = tokio::time::timeout(PATIENCE, fleet.stop())
        .await
        .expect("stops in time")
        .expect_err("the worker failed");
    assert_eq!(failure.role, Role::Worker(1));
    assert!(!failure.error.is_retryable());
    assert!(
        failure.to_string().starts_with("worker 1: no handlers"),
        "{failure}"
    );
}

#[tokio::test]
async fn ended_is_none_without_roles() {
    let mut fleet = Fleet::new(config(), CancellationToken::new());
    assert!(fleet.ended().await.is_none());
    fleet.stop().await.expect("nothing to fail");
}

#[tokio::test]
async fn a_worker_apart_stops_alone_and_reports_to_its_handle() {
    let backends = Backends::embedded();
    let fleet = Fleet::new(config(), CancellationToken::new());
    fleet.start_worker(backends.clone(), echo());
    let (alone, handle) = fleet.spawn_worker(fleet.config().clone(), backends.clone(), echo());
    assert_eq!(handle.role(), Role::Worker(2));
    wait_for_workers(&backends, 2).await;

    alone.cancel();
    tokio::time::timeout(PATIENCE, handle)
        .await
        .expect("drains in time")
        .expect("ends cleanly");
    let live = backends.store.workers().await.expect("store");
    assert_eq!(live.len(), 1, "the other worker runs on: {live:?}");
    tokio::time::timeout(PATIENCE, fleet.stop())
        .await
        .expect("stops in time")
        .expect("no role failed");
}

#[tokio::test]
async fn an_aborted_role_says_so_to_its_handle() {
    let backends = Backends::embedded();
    let fleet = Fleet::new(config(), CancellationToken::new());
    let (_, handle) = fleet.spawn_worker(fleet.config().clone(), backends, echo());
    fleet.abort();
    let ended = tokio::time::timeout(PATIENCE, handle)
        .await
        .expect("ends in time");
    assert!(matches!(ended, Err(RoleError::Aborted)), "{ended:?}");
}

#[tokio::test]
async fn a_panic_is_a_role_end_with_its_message() {
    let (exits_to, mut exits) = tokio::sync::mpsc::unbounded_channel();
    let panics = async {
        if true {
            panic!("boom at {}", 42);
        }
        Ok::<(), WorkerError>(())
    };
    run_role(Role::Worker(7), panics, Report::Fleet(exits_to)).await;
    let exit = exits.recv().await.expect("reported");
    assert_eq!(exit.role, Role::Worker(7));
    match exit.result {
        Err(e @ RoleError::Panicked(_)) => assert_eq!(e.to_string(), "panicked: boom at 42"),
        other => panic!("not a panic: {other:?}"),
    }
}

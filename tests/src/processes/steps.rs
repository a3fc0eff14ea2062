//! Steps the fault tests (`tests/fault_*.rs`) share: waiting until workers consume and
//! until jobs run, reading their executions, and waiting for the end of the run.

use std::time::{Duration, Instant};

use jobfleet_common::JobId;

use super::executions::Executions;
use super::rabbitmqctl;
use super::world::World;

/// Waits until the test's ready queue has `n` consumers (each worker process has one),
/// so jobs enqueued next are spread over all of them.
pub async fn wait_consumers(world: &mut World, n: u64, within: Duration) {
    let prefix = jobfleet_connect::rabbitmq::ready_prefix(&world.config.namespace);
    let deadline = Instant::now() + within;
    loop {
        world.procs.assert_alive();
        let p = prefix.clone();
        let have = tokio::task::spawn_blocking(move || rabbitmqctl::consumers(&p))
            .await
            .expect("blocking task");
        if have >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {have} of {n} consumers on {prefix}* within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How long a settled run is left alone before its executions are read, so that a
/// copy that starts late (a redelivery running after its job completed) is counted too.
pub const QUIET: Duration = Duration::from_secs(3);

/// Every execution recorded so far.
pub async fn executions(world: &World) -> Executions {
    Executions::load(&mut world.redis(), &world.keys).await
}

/// Every execution recorded once the run has been quiet for [`QUIET`]; panics if a
/// process died by itself meanwhile.
pub async fn quiet_executions(world: &mut World) -> Executions {
    tokio::time::sleep(QUIET).await;
    world.procs.assert_alive();
    executions(world).await
}

/// Waits until every job of `ids` has an execution running (started, not ended);
/// returns the executions then.
pub async fn wait_running(world: &mut World, ids: &[JobId], within: Duration) -> Executions {
    let deadline = Instant::now() + within;
    loop {
        world.procs.assert_alive();
        let execs = executions(world).await;
        let running = ids
            .iter()
            .filter(|id| execs.of(**id).iter().any(|e| e.end_ms.is_none()))
            .count();
        if running == ids.len() {
            return execs;
        }
        assert!(
            Instant::now() < deadline,
            "only {running} of {} jobs running within {within:?}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

//! Fencing against a paused lock holder, with real processes: a worker process holding a
//! job's lock is frozen (SIGSTOP) past the lock's TTL, a second worker takes the lock and
//! writes, and when the first wakes (SIGCONT) its write, carrying the stale fencing
//! token, is refused by the store.

use std::time::{Duration, Instant};

use jobfleet_common::store::JobState;
use jobfleet_common::{ErrorKind, JobId};
use jobfleet_testkit::wait_for;
use jobfleet_tests::processes::kinds::FencedPayload;
use jobfleet_tests::processes::world::World;
use jobfleet_tests::processes::Role;
use redis::AsyncCommands;

/// The job lock's TTL; the first holder is frozen for longer.
const LOCK_TTL: Duration = Duration::from_secs(1);
/// The lock both jobs take.
const LOCK: &str = "account-42";
/// Long enough for a worker process to start and run a job.
const WITHIN: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_paused_past_its_ttl_cannot_write_over_the_next_one() {
    let began = Instant::now();
    let mut world = World::new(env!("CARGO_BIN_EXE_testfleet"), |c| {
        c.worker.lock_ttl = LOCK_TTL;
        c.worker.lock_conflict_delay = Duration::from_millis(100);
        // One job at a time and nothing prefetched: the second job cannot sit in the
        // frozen worker's buffer.
        c.worker.concurrency = 1;
        c.worker.prefetch = Some(1);
    })
    .await;
    let resource = "ledger".to_string();
    world.procs.spawn(Role::Scheduler);
    let first = world.procs.spawn(Role::Worker);

    // Its write is due while it is frozen: it happens the moment it wakes up. 800 ms gives
    // this test time to see the start and freeze the worker on a loaded machine, and stays
    // under LOCK_TTL, which the freeze must outlast.
    let payload = FencedPayload {
        resource: resource.clone(),
        value: "first".into(),
        ms: 800,
    };
    let job = payload.job(&world.queue, LOCK).with_max_attempts(1);
    let one = world.enqueue_all(vec![job]).await[0];
    let (pid, fence1) = started(&mut world, one).await;
    world.procs.pause(first);
    let paused_at = Instant::now();
    assert_eq!(pid, world.procs.pid(first), "the first worker runs it");

    world.procs.spawn(Role::Worker);
    let payload = FencedPayload {
        resource: resource.clone(),
        value: "second".into(),
        ms: 0,
    };
    let two = world
        .enqueue_all(vec![payload.job(&world.queue, LOCK)])
        .await[0];
    wait_state(&mut world, two, JobState::Completed).await;
    let (_, fence2) = started(&mut world, two).await;
    let paused_for = paused_at.elapsed();
    assert!(
        paused_for > LOCK_TTL,
        "the lock changed hands only after its TTL"
    );
    assert!(
        fence2 > fence1,
        "the new holder's token {fence2} > {fence1}"
    );
    let written = world
        .backends
        .store
        .fenced_read(&resource)
        .await
        .expect("store");
    assert_eq!(
        written,
        Some((fence2, "second".into())),
        "the new holder wrote"
    );

    world.procs.resume(first);
    let attempt = world.keys.attempt(one);
    let answered = wait_for(WITHIN, || async {
        let wrote: Option<bool> = world.redis().hget(&attempt, "wrote").await.expect("redis");
        wrote.is_some()
    });
    assert!(
        answered.await,
        "the first holder's write was answered after it woke"
    );
    let wrote: Option<bool> = world.redis().hget(&attempt, "wrote").await.expect("redis");
    assert_eq!(wrote, Some(false), "the stale token's write was refused");
    let written = world
        .backends
        .store
        .fenced_read(&resource)
        .await
        .expect("store");
    assert_eq!(
        written,
        Some((fence2, "second".into())),
        "the resource keeps the new holder's value"
    );

    let record = wait_state(&mut world, one, JobState::Dead).await;
    let error = record.last_error.expect("the failed attempt's error");
    assert!(
        error.kind == ErrorKind::LockLost
            || (error.kind == ErrorKind::Failed && error.message.contains("refused")),
        "the first attempt failed as lock lost or refused write: {error:?}"
    );
    println!(
        "crash_lock_pause: holder frozen {paused_for:?} (lock TTL {LOCK_TTL:?}) with token \
         {fence1}; the next holder wrote with token {fence2}; on waking the frozen holder's \
         write was refused and its attempt ended {} ({}); the resource holds \"second\" \
         (token {fence2}); {:?} in all",
        error.kind.as_str(),
        error.message,
        began.elapsed(),
    );
}

/// Waits for the fenced job `id` to start; returns the pid that runs it and its token.
async fn started(world: &mut World, id: JobId) -> (u32, u64) {
    let key = world.keys.attempt(id);
    let deadline = Instant::now() + WITHIN;
    loop {
        world.procs.assert_alive();
        let (pid, fence): (Option<u32>, Option<u64>) = redis::pipe()
            .hget(&key, "pid")
            .hget(&key, "fence")
            .query_async(&mut world.redis())
            .await
            .expect("redis");
        if let (Some(pid), Some(fence)) = (pid, fence) {
            return (pid, fence);
        }
        assert!(
            Instant::now() < deadline,
            "job {id} did not start within {WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits for job `id`'s record to reach `state`.
async fn wait_state(
    world: &mut World,
    id: JobId,
    state: JobState,
) -> jobfleet_common::store::JobRecord {
    let deadline = Instant::now() + WITHIN;
    loop {
        world.procs.assert_alive();
        let record = world.backends.store.record(id).await.expect("store");
        match record {
            Some(r) if r.state == state => return r,
            _ => assert!(
                Instant::now() < deadline,
                "job {id} not {state} within {WITHIN:?}: {record:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

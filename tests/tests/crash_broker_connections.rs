//! Broker connections lost mid-run, with real processes: RabbitMQ closes every
//! connection of the fleet (worker and scheduler processes, and the producer in this
//! process) twice while the producer keeps enqueuing and the workers keep consuming.
//! Everyone reconnects, and every job whose enqueue was confirmed completes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jobfleet_common::JobId;
use jobfleet_tests::processes::kinds::EffectPayload;
use jobfleet_tests::processes::world::World;
use jobfleet_tests::processes::Role;

/// Jobs per enqueue call.
const BATCH: usize = 10;
/// Pause between enqueue calls.
const EVERY: Duration = Duration::from_millis(20);
/// How many times RabbitMQ closes every connection of the fleet.
const CLOSES: usize = 2;
/// Enqueuing time before the first close, between closes (once all reconnected), and
/// after the last.
const BETWEEN: Duration = Duration::from_millis(1_000);
/// Connections of the fleet: two workers, the scheduler, the producer.
const CONNECTIONS: usize = 4;
/// A worker's log line for a delivery acked unrun because the job was already completed.
const DUPLICATE: &str = r#""outcome":"duplicate""#;

/// What the producer saw.
#[derive(Debug, Default)]
struct Produced {
    /// Jobs whose enqueue returned Ok.
    confirmed: Vec<JobId>,
    /// Enqueue calls that returned Err (and were tried again).
    errors: usize,
    /// Jobs of the batches whose enqueue returned Err at least once.
    retried: Vec<JobId>,
    /// The first few errors, for the report.
    samples: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_broker_connections_lose_no_confirmed_job() {
    let began = Instant::now();
    let mut world = World::new(env!("CARGO_BIN_EXE_testfleet"), |c| {
        c.worker.concurrency = 8;
    })
    .await;
    world.procs.spawn(Role::Scheduler);
    world.procs.spawn(Role::Worker);
    world.procs.spawn(Role::Worker);
    // Every process is connected once a job ran (the scheduler connects before workers
    // have even declared their queue).
    let first = world.enqueue_all(vec![effect(&world)]).await;
    world.wait_effects(1, Duration::from_secs(10)).await;

    let stop = AtomicBool::new(false);
    let closes = async {
        let mut closed = Vec::new();
        for _ in 0..CLOSES {
            tokio::time::sleep(BETWEEN).await;
            let within = Duration::from_secs(6);
            closed.push(world.close_broker_connections(CONNECTIONS, within).await);
        }
        tokio::time::sleep(BETWEEN).await;
        stop.store(true, Ordering::Relaxed);
        closed
    };
    let (closed, produced) = tokio::join!(closes, produce(&world, &stop));
    let produced_for = began.elapsed();

    let mut ids = first;
    ids.extend(&produced.confirmed);
    let audit = world.wait_settled(&ids, Duration::from_secs(20)).await;
    let rabbit = world.rabbit_messages().await;
    let reconnected = world.broker_connections().await;
    let stale_retried = audit
        .not_completed
        .iter()
        .filter(|(id, _)| produced.retried.contains(id))
        .count();
    let duplicates = world.procs.count_in_logs(Role::Worker, DUPLICATE);
    println!(
        "crash_broker_connections: connections closed by RabbitMQ: {closed:?}, back after: \
         {reconnected}; {} jobs \
         confirmed, {} enqueue calls failed and were retried (e.g. {:?})",
        ids.len(),
        produced.errors,
        produced.samples,
    );
    println!(
        "crash_broker_connections: effects {} for {} jobs; executions {} (re-runs absorbed by \
         the idempotent effect: {}); duplicate deliveries absorbed by completion markers: \
         {duplicates}; produced until {produced_for:?}, all settled at {:?}",
        audit.effects,
        audit.jobs,
        audit.executions,
        audit.reruns(),
        began.elapsed(),
    );
    assert!(
        reconnected >= CONNECTIONS,
        "the fleet reconnected: {reconnected} of {CONNECTIONS} connections"
    );
    assert!(
        rabbit.iter().all(|(_, n)| *n == 0),
        "RabbitMQ still holds messages (ready or unacknowledged): {rabbit:?}"
    );
    if !audit.not_completed.is_empty() {
        println!(
            "crash_broker_connections: {} records not `completed`, {stale_retried} of them in \
             batches enqueued again after an error (same ids)",
            audit.not_completed.len()
        );
    }
    audit.assert_records_completed();
}

fn effect(world: &World) -> jobfleet_common::Job {
    EffectPayload {
        ms: 2,
        announce: false,
    }
    .job(&world.queue)
}

/// Enqueues batches until `stop`; a batch whose enqueue fails is enqueued again, same
/// ids, as the producer's contract allows, until it is confirmed.
async fn produce(world: &World, stop: &AtomicBool) -> Produced {
    let mut produced = Produced::default();
    while !stop.load(Ordering::Relaxed) {
        let batch: Vec<_> = (0..BATCH).map(|_| effect(world)).collect();
        loop {
            match world.producer.enqueue_many(batch.clone()).await {
                Ok(done) => {
                    produced.confirmed.extend(done.iter().map(|e| e.id));
                    break;
                }
                Err(e) => {
                    assert!(e.is_retryable(), "a lost connection is retryable: {e}");
                    produced.errors += 1;
                    produced.retried.extend(batch.iter().map(|job| job.id));
                    if produced.samples.len() < 3 {
                        produced.samples.push(e.to_string());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        tokio::time::sleep(EVERY).await;
    }
    produced
}

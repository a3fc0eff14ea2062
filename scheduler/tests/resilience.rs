//! Backend failures do not stop the scheduler: failed consumes are retried, and jobs
//! whose release publish failed come back when their lease runs out.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jobfleet_common::broker::{Consumer, Depth};
use jobfleet_common::clock::TokioClock;
use jobfleet_common::{Backends, Broker, BrokerError, Config, Job, Message, Route};
use jobfleet_scheduler::SchedulerError;
use support::{queue, recv};
use tokio_util::sync::CancellationToken;

/// The embedded broker, failing a set number of ready-route publishes and consumes.
struct FlakyBroker {
    inner: Arc<dyn Broker>,
    failing_ready_publishes: AtomicU32,
    failing_consumes: AtomicU32,
}

/// Takes one from `counter` if it is above zero; true if it did.
fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[async_trait]
impl Broker for FlakyBroker {
    fn name(&self) -> &'static str {
        "flaky"
    }

    async fn declare(&self, queues: &[String]) -> Result<(), BrokerError> {
        self.inner.declare(queues).await
    }

    async fn publish(&self, batch: Vec<Message>) -> Result<(), BrokerError> {
        let to_ready = batch.iter().any(|m| matches!(m.route, Route::Ready(_)));
        if to_ready && take(&self.failing_ready_publishes) {
            return Err(BrokerError::Connection("injected publish failure".into()));
        }
        self.inner.publish(batch).await
    }

    async fn consume(&self, route: &Route, prefetch: u16) -> Result<Consumer, BrokerError> {
        if take(&self.failing_consumes) {
            return Err(BrokerError::Connection("injected consume failure".into()));
        }
        self.inner.consume(route, prefetch).await
    }

    async fn depth(&self, route: &Route) -> Result<Option<Depth>, BrokerError> {
        self.inner.depth(route).await
    }
}

/// Embedded backends behind a flaky broker, and the flaky broker itself.
fn flaky_backends(ready_publishes: u32, consumes: u32) -> (Backends, Arc<FlakyBroker>) {
    let embedded = Backends::embedded_with_clock(Arc::new(TokioClock::new()));
    let flaky = Arc::new(FlakyBroker {
        inner: embedded.broker.clone(),
        failing_ready_publishes: AtomicU32::new(ready_publishes),
        failing_consumes: AtomicU32::new(consumes),
    });
    let backends = Backends {
        broker: flaky.clone(),
        ..embedded
    };
    (backends, flaky)
}

fn start(config: Config, backends: &Backends, shutdown: &CancellationToken) -> Scheduler {
    tokio::spawn(jobfleet_scheduler::run(
        Arc::new(config),
        backends.clone(),
        shutdown.clone(),
    ))
}

type Scheduler = tokio::task::JoinHandle<Result<(), SchedulerError>>;

async fn stop(scheduler: Scheduler, shutdown: CancellationToken) {
    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), scheduler).await;
    assert!(
        matches!(result, Ok(Ok(Ok(())))),
        "scheduler stopped badly: {result:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_release_publish_is_retried_after_the_lease() {
    let (backends, flaky) = flaky_backends(1, 0);
    let mut config = Config::default();
    config.scheduler.release_lease = Duration::from_secs(2);
    let shutdown = CancellationToken::new();
    let scheduler = start(config, &backends, &shutdown);
    let q = queue();
    let mut ready = backends
        .broker
        .consume(&Route::Ready(q.clone()), 0)
        .await
        .expect("consume");
    let due = backends.clock.now_ms() + 1_000;
    let job = Job::new(&q, "work", "{}").with_run_at_ms(due);
    publish_delayed(&backends, &job).await;

    let released = recv(&mut ready, Duration::from_secs(5))
        .await
        .expect("released in the end");
    assert_eq!(released.id, job.id);
    assert_eq!(
        flaky.failing_ready_publishes.load(Ordering::SeqCst),
        0,
        "a publish failed"
    );
    // The first try failed at the due time; the lease had to run out first.
    assert!(backends.clock.now_ms() >= due + 2_000);
    assert!(
        recv(&mut ready, Duration::from_secs(10)).await.is_none(),
        "released twice"
    );
    stop(scheduler, shutdown).await;
}

#[tokio::test(start_paused = true)]
async fn consumers_that_fail_to_open_are_retried() {
    // Enough failures that every route's first tries fail.
    let (backends, flaky) = flaky_backends(0, 6);
    let shutdown = CancellationToken::new();
    let scheduler = start(Config::default(), &backends, &shutdown);
    let q = queue();
    let mut ready = backends.broker.consume(&Route::Ready(q.clone()), 0).await;
    while ready.is_err() {
        ready = backends.broker.consume(&Route::Ready(q.clone()), 0).await;
    }
    let mut ready = ready.expect("consume");
    let job = Job::new(&q, "work", "{}").with_run_at_ms(backends.clock.now_ms() + 100);
    publish_delayed(&backends, &job).await;

    let released = recv(&mut ready, Duration::from_secs(30))
        .await
        .expect("released");
    assert_eq!(released.id, job.id);
    assert_eq!(flaky.failing_consumes.load(Ordering::SeqCst), 0);
    stop(scheduler, shutdown).await;
}

/// Publishes `job` to the delayed route, as a producer does for a job due later.
async fn publish_delayed(backends: &Backends, job: &Job) {
    let body = jobfleet_common::codec::encode(job, jobfleet_common::codec::Format::Binary);
    let ct = jobfleet_common::codec::POSTCARD_CONTENT_TYPE;
    let message = Message::new(Route::Delayed, job.priority, body, ct);
    backends
        .broker
        .publish(vec![message])
        .await
        .expect("publish");
}

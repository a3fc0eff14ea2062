//! The worker's behaviour tests, against the embedded backend with paused time: each test
//! starts a real worker through [`jobfleet_worker::run`] on a randomly named queue and
//! watches what it publishes, records and acks. The harness is a layer on the shared test
//! kit (`jobfleet-testkit`): its [`Fleet`] holds the backends, and this harness keeps the
//! worker's own result for the checks that read it.

mod attempts;
mod drain;
mod faults;
mod locks;
mod rejects;
mod settled;
mod trace;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use jobfleet_common::broker::{Consumer, Depth, Message, Route};
use jobfleet_common::codec::{self, Format};
use jobfleet_common::store::{JobRecord, JobState};
use jobfleet_common::{Backends, Config, Job, JobId};
use jobfleet_testkit::{self as testkit, Fleet};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use jobfleet_worker::{Registry, WorkerError};

/// Long enough for anything in-process under paused time, short enough to fail fast.
const PATIENCE: Duration = Duration::from_secs(120);

/// A worker running on its own queue, and the backends to watch it through.
/// A worker running on its own queue, and the backends to watch it through.
pub(crate) struct Harness {
    pub backends: Backends,
    pub queue: String,
    pub shutdown: CancellationToken,
    worker: JoinHandle<Result<(), WorkerError>>,
}

/// A configuration for one worker on `queue` with short timings.
pub(crate) fn config(queue: &str) -> Config {
    let mut config = Config::default();
    config.worker.queues = vec![queue.to_string()];
    config.worker.concurrency = 2;
    config.worker.grace_period = Duration::from_secs(5);
    config.worker.lock_ttl = Duration::from_millis(300);
    config.worker.heartbeat = Duration::from_millis(500);
    config.worker.cancel_poll = Duration::from_millis(50);
    config
}

impl Harness {
    /// Starts a worker with `registry` and the test configuration, adjusted by `tweak`.
    pub async fn start(registry: Registry, tweak: impl FnOnce(&mut Config)) -> Self {
        let queue = testkit::unique("q-");
        let mut config = config(&queue);
        tweak(&mut config);
        let fleet = Fleet::embedded_paused(config);
        let shutdown = CancellationToken::new();
        let worker = tokio::spawn(jobfleet_worker::run(
            fleet.config.clone(),
            fleet.backends.clone(),
            Arc::new(registry),
            shutdown.clone(),
        ));
        Self {
            backends: fleet.backends.clone(),
            queue,
            shutdown,
            worker,
        }
    }

    pub fn job(&self, kind: &str, payload: &str) -> Job {
        let mut job = Job::new(self.queue.clone(), kind, payload.to_string());
        job.enqueued_at_ms = self.backends.clock.now_ms();
        job
    }

    /// Publishes `job` to the ready route, in the binary form.
    pub async fn publish(&self, job: &Job) {
        let route = Route::Ready(self.queue.clone());
        testkit::publish_job(self.backends.broker.as_ref(), route, job).await;
    }

    /// Publishes raw bytes to the ready route.
    pub async fn publish_raw(&self, body: Bytes, content_type: Option<&str>) {
        let route = Route::Ready(self.queue.clone());
        let mut message = Message::new(route, Default::default(), body, "");
        message.content_type = content_type.map(str::to_string);
        self.backends
            .broker
            .publish(vec![message])
            .await
            .expect("publish");
    }

    /// A consumer of `route`, as the scheduler would have.
    pub async fn consumer(&self, route: Route) -> Consumer {
        self.backends
            .broker
            .consume(&route, 100)
            .await
            .expect("consume")
    }

    /// The next message on `route`, acked.
    pub async fn next_on(&self, route: Route) -> Got {
        let mut consumer = self.consumer(route.clone()).await;
        next(&mut consumer)
            .await
            .unwrap_or_else(|| panic!("nothing arrived on {route}"))
    }

    /// The next job on `route`, decoded.
    pub async fn next_job_on(&self, route: Route) -> Job {
        let delivery = self.next_on(route).await;
        assert_eq!(
            delivery.content_type.as_deref(),
            Some(Format::Binary.content_type())
        );
        codec::decode(&delivery.body, delivery.content_type.as_deref()).expect("a job")
    }

    /// The job's record once it reaches `state`.
    pub async fn wait_for(&self, id: JobId, state: JobState) -> JobRecord {
        let store = self.backends.store.as_ref();
        testkit::wait_state(store, id, state, PATIENCE, "embedded").await
    }

    /// How many messages `route` holds.
    pub async fn depth(&self, route: Route) -> Depth {
        self.backends
            .broker
            .depth(&route)
            .await
            .expect("depth")
            .expect("embedded knows")
    }

    /// Waits until this worker's ready route is empty and fully settled.
    pub async fn wait_settled(&self) {
        let route = Route::Ready(self.queue.clone());
        let settled = Depth {
            ready: 0,
            unacked: Some(0),
        };
        tokio::time::timeout(PATIENCE, async {
            while self.depth(route.clone()).await != settled {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the ready route never settled");
    }

    /// Shuts the worker down and returns what `run` returned.
    pub async fn stop(self) -> (Backends, String, Result<(), WorkerError>) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(PATIENCE, self.worker)
            .await
            .expect("the worker stops")
            .expect("the worker task did not panic");
        (self.backends, self.queue, result)
    }
}

/// A message taken off a route, already acked.
#[derive(Debug)]
pub(crate) struct Got {
    pub body: Bytes,
    pub content_type: Option<String>,
    pub reason: Option<String>,
}

/// The next message on a consumer within [`PATIENCE`], acked.
pub(crate) async fn next(consumer: &mut Consumer) -> Option<Got> {
    let delivery = tokio::time::timeout(PATIENCE, consumer.next())
        .await
        .ok()??;
    let delivery = delivery.expect("embedded consumers do not fail");
    let got = Got {
        body: delivery.body.clone(),
        content_type: delivery.content_type.clone(),
        reason: delivery.reason.clone(),
    };
    delivery.ack().await.expect("ack");
    Some(got)
}

#[tokio::test(start_paused = true)]
async fn an_empty_registry_is_refused() {
    let h = Harness::start(Registry::new(), |_| {}).await;
    let (_, _, result) = h.stop().await;
    assert!(matches!(result, Err(WorkerError::NoHandlers)), "{result:?}");
}

#[tokio::test(start_paused = true)]
async fn heartbeats_while_running_and_leaves_on_stop() {
    let h = Harness::start(Registry::with_builtins(), |_| {}).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let workers = h.backends.store.workers().await.expect("workers");
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert_eq!(workers[0].queues, std::slice::from_ref(&h.queue));
    assert_eq!(workers[0].concurrency, 2);
    assert!(
        workers[0].id.contains(&format!("-{}-", std::process::id())),
        "{workers:?}"
    );
    let (backends, _, result) = h.stop().await;
    result.expect("clean stop");
    assert!(backends.store.workers().await.expect("workers").is_empty());
}

//! Backend failures in the middle of a job: nothing is lost and the worker keeps going.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use jobfleet_common::broker::{Broker, BrokerError, Consumer, Depth, Message, Route};
use jobfleet_common::clock::TokioClock;
use jobfleet_common::store::JobState;
use jobfleet_common::{Backends, ErrorKind};
use tokio_util::sync::CancellationToken;

use super::{config, next};
use jobfleet_worker::Registry;

/// A broker whose publishes to one route fail a set number of times.
struct Refusing {
    inner: Arc<dyn Broker>,
    route: Route,
    refusals: AtomicU32,
}

#[async_trait]
impl Broker for Refusing {
    fn name(&self) -> &'static str {
        "refusing"
    }

    async fn declare(&self, queues: &[String]) -> Result<(), BrokerError> {
        self.inner.declare(queues).await
    }

    async fn publish(&self, batch: Vec<Message>) -> Result<(), BrokerError> {
        let to_route = batch.iter().any(|m| m.route == self.route);
        let refuse = to_route
            && self
                .refusals
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if refuse {
            return Err(BrokerError::Connection("injected outage".into()));
        }
        self.inner.publish(batch).await
    }

    async fn consume(&self, route: &Route, prefetch: u16) -> Result<Consumer, BrokerError> {
        self.inner.consume(route, prefetch).await
    }

    async fn depth(&self, route: &Route) -> Result<Option<Depth>, BrokerError> {
        self.inner.depth(route).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_publish_gives_the_delivery_back_and_it_runs_again() {
    let embedded = Backends::embedded_with_clock(Arc::new(TokioClock::new()));
    let broker = Arc::new(Refusing {
        inner: embedded.broker.clone(),
        route: Route::Failed,
        refusals: AtomicU32::new(2),
    });
    let backends = Backends {
        broker: broker.clone(),
        ..embedded
    };
    let queue = format!("q-{}", jobfleet_common::JobId::new().0.simple());
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(jobfleet_worker::run(
        Arc::new(config(&queue)),
        backends.clone(),
        Arc::new(Registry::with_builtins()),
        shutdown.clone(),
    ));

    let job = jobfleet_common::Job::new(queue.clone(), "fail", "");
    let body = jobfleet_common::codec::encode(&job, jobfleet_common::codec::Format::Binary);
    let message = Message::new(Route::Ready(queue.clone()), job.priority, body, "");
    backends
        .broker
        .publish(vec![message])
        .await
        .expect("publish");

    let mut failed = backends
        .broker
        .consume(&Route::Failed, 10)
        .await
        .expect("consume");
    let got = next(&mut failed).await.expect("published on the third try");
    let failed_job = jobfleet_common::codec::decode(&got.body, None).expect("a job");
    assert_eq!(
        failed_job.errors.len(),
        1,
        "each try starts from the message as received"
    );
    assert_eq!(failed_job.errors[0].kind, ErrorKind::Failed);
    assert_eq!(broker.refusals.load(Ordering::SeqCst), 0);

    // And the worker is still serving.
    let echo = jobfleet_common::Job::new(queue.clone(), "echo", "");
    let body = jobfleet_common::codec::encode(&echo, jobfleet_common::codec::Format::Binary);
    let message = Message::new(Route::Ready(queue.clone()), echo.priority, body, "");
    backends
        .broker
        .publish(vec![message])
        .await
        .expect("publish");
    let done = async {
        loop {
            let record = backends.store.record(echo.id).await.expect("record");
            if record.is_some_and(|r| r.state == JobState::Completed) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(super::PATIENCE, done)
        .await
        .expect("echo completes");
    shutdown.cancel();
    worker.await.expect("no panic").expect("clean stop");
}

//! A broker that wraps the embedded one to count calls, fail publishes on demand and check
//! what the store held at the moment of each publish.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jobfleet_common::broker::{Consumer, Depth};
use jobfleet_common::codec;
use jobfleet_common::embedded::EmbeddedBroker;
use jobfleet_common::store::JobState;
use jobfleet_common::{Backends, Broker, BrokerError, Message, Route, Store};

/// Counts `declare` and `publish` calls and delegates to an embedded broker.
pub struct SpyBroker {
    inner: EmbeddedBroker,
    store: Arc<dyn Store>,
    pub declares: AtomicUsize,
    pub publishes: AtomicUsize,
    pub fail_publish: AtomicBool,
    /// For every published job, the state its store record had when it was published.
    pub states_at_publish: Mutex<Vec<Option<JobState>>>,
}

impl SpyBroker {
    /// Embedded backends whose broker is a spy over the same store.
    pub fn backends() -> (Backends, Arc<SpyBroker>) {
        let backends = Backends::embedded();
        let spy = Arc::new(SpyBroker {
            inner: EmbeddedBroker::new(),
            store: backends.store.clone(),
            declares: AtomicUsize::new(0),
            publishes: AtomicUsize::new(0),
            fail_publish: AtomicBool::new(false),
            states_at_publish: Mutex::new(Vec::new()),
        });
        (
            Backends {
                broker: spy.clone(),
                ..backends
            },
            spy,
        )
    }

    pub fn publishes(&self) -> usize {
        self.publishes.load(Ordering::SeqCst)
    }

    pub fn declares(&self) -> usize {
        self.declares.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Broker for SpyBroker {
    fn name(&self) -> &'static str {
        "spy"
    }

    async fn declare(&self, queues: &[String]) -> Result<(), BrokerError> {
        self.declares.fetch_add(1, Ordering::SeqCst);
        self.inner.declare(queues).await
    }

    async fn publish(&self, batch: Vec<Message>) -> Result<(), BrokerError> {
        self.publishes.fetch_add(1, Ordering::SeqCst);
        for message in &batch {
            let job = codec::decode(&message.body, message.content_type.as_deref())
                .expect("the producer publishes decodable jobs");
            let record = self
                .store
                .record(job.id)
                .await
                .expect("embedded store answers");
            self.states_at_publish
                .lock()
                .expect("not poisoned")
                .push(record.map(|r| r.state));
        }
        if self.fail_publish.load(Ordering::SeqCst) {
            return Err(BrokerError::Connection("spy: connection reset".into()));
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

//! [`Ctx`]: one conformance check's world: a [`Fleet`] on a [`BackendFactory`]'s
//! backends, the check's queue and a producer, cleaned up when the check ends, passed
//! or failed.

use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::store::{JobRecord, JobState};
use jobfleet_common::{Config, JobId};
use jobfleet_producer::Producer;

use crate::backends::BackendFactory;
use crate::fleet::{fast_config, Fleet};
use crate::services::unique;

/// One check's world: a [`Fleet`] on a backend factory's backends (its `config`,
/// `backends` and roles, through `Deref`), the check's queue and a producer.
pub struct Ctx {
    fleet: Fleet,
    /// The check's queue (random name).
    pub queue: String,
    /// A producer on the backends.
    pub producer: Producer,
    factory: Arc<dyn BackendFactory>,
    /// Set by [`Ctx::stop`]; a `Ctx` dropped without it (a failed assertion) cleans up in
    /// `Drop`.
    cleaned: bool,
}

/// A check that failed before [`Ctx::stop`] still removes its queues and keys from the
/// shared services: on a thread of its own with a runtime of its own, since the test's
/// runtime may be the one unwinding.
impl Drop for Ctx {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        // Roles still running would write keys and declare queues after the cleanup.
        self.fleet.abort_roles();
        let (factory, config) = (self.factory.clone(), self.fleet.config.clone());
        let queues = vec![self.queue.clone()];
        let cleanup = std::thread::spawn(move || {
            // Aborted tasks stop at their next await; give in-flight calls a moment.
            std::thread::sleep(std::time::Duration::from_millis(200));
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(factory.cleanup(&config, &queues));
            }
        });
        // A cleanup that panics (a service down) must not turn one failure into an abort.
        let _ = cleanup.join();
    }
}

impl std::ops::Deref for Ctx {
    type Target = Fleet;

    fn deref(&self) -> &Fleet {
        &self.fleet
    }
}

impl std::ops::DerefMut for Ctx {
    fn deref_mut(&mut self) -> &mut Fleet {
        &mut self.fleet
    }
}

impl Ctx {
    /// A fresh world on `factory`'s backends, with `tweak` applied to the fast config.
    pub async fn new(factory: &Arc<dyn BackendFactory>, tweak: impl FnOnce(&mut Config)) -> Self {
        let queue = unique("q");
        let mut config = fast_config(&queue);
        factory.configure(&mut config);
        tweak(&mut config);
        config.validate().expect("test config is valid");
        let backends = factory.backends(&config).await;
        let producer = Producer::new(&backends, &config);
        Self {
            fleet: Fleet::new(config, backends),
            queue,
            producer,
            factory: factory.clone(),
            cleaned: false,
        }
    }

    /// Stops every role started through `start_*`, waits for them, and removes the
    /// check's queues and keys from shared services.
    pub async fn stop(&mut self) {
        self.fleet.stop_roles().await;
        self.factory
            .cleanup(&self.fleet.config, std::slice::from_ref(&self.queue))
            .await;
        self.cleaned = true;
    }

    /// Waits until the job's record is in `state`, returning it; a failure names the
    /// backends.
    pub async fn wait_state(&self, id: JobId, state: JobState, within: Duration) -> JobRecord {
        let store = self.fleet.backends.store.as_ref();
        crate::waits::wait_state(store, id, state, within, self.factory.name()).await
    }
}

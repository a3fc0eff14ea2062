//! The broker, store and clock every role is started with. Connecting to the ones a
//! configuration names is `jobfleet_connect::connect`, in the crate that knows the
//! backends; this crate has only the embedded one.

use std::sync::Arc;

use crate::broker::Broker;
use crate::clock::{self, SharedClock};
use crate::embedded::{EmbeddedBroker, EmbeddedStore};
use crate::store::Store;

/// The broker, store and clock every role is started with.
#[derive(Clone)]
pub struct Backends {
    /// Where jobs travel.
    pub broker: Arc<dyn Broker>,
    /// Where shared state lives.
    pub store: Arc<dyn Store>,
    /// "Now" for every role.
    pub clock: SharedClock,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("broker", &self.broker.name())
            .field("store", &self.store.name())
            .finish()
    }
}

impl Backends {
    /// A fresh embedded broker and store on the system clock.
    pub fn embedded() -> Self {
        Self::embedded_with_clock(clock::system())
    }

    /// A fresh embedded broker and store on `clock` (e.g. a
    /// [`TokioClock`](crate::clock::TokioClock) in tests with paused time).
    pub fn embedded_with_clock(clock: SharedClock) -> Self {
        Self {
            broker: Arc::new(EmbeddedBroker::new()),
            store: Arc::new(EmbeddedStore::new(clock.clone())),
            clock,
        }
    }
}

//! The broker, store and clock every role is started with. Connecting to the ones a
//! configuration names is `jobfleet_connect::connect`, in the crate that knows the
//! backends; this crate has only the embedded one.
//!
//! [`Backends`] carries the whole [`Store`], as connected: it is what the in-process
//! launchers, the bench and the tests hand to a role. No role keeps it. Each narrows the
//! store at its entry point to its bundle (`Arc<dyn Store>` upcasts to
//! [`WorkerStore`](crate::store::WorkerStore), [`SchedulerStore`](crate::store::SchedulerStore),
//! [`OperatorStore`](crate::store::OperatorStore), or the producer's one `JobStates`) and
//! keeps that beside the broker and the clock, so what a role may touch is in its types.

use std::sync::Arc;

use crate::broker::Broker;
use crate::clock::{self, SharedClock};
use crate::embedded::{EmbeddedBroker, EmbeddedStore};
use crate::store::{OperatorStore, Store};

/// The broker, store and clock every role is started with.
#[derive(Clone)]
pub struct Backends {
    /// Where jobs travel.
    pub broker: Arc<dyn Broker>,
    /// Where shared state lives: every capability, for a role to narrow to its bundle.
    pub store: Arc<dyn Store>,
    /// "Now" for every role.
    pub clock: SharedClock,
}

/// What operators act through (the CLI's operator commands, the scheduler's HTTP API and
/// dashboard): the broker, the store narrowed to an [`OperatorStore`], and the clock.
#[derive(Clone)]
pub struct OperatorBackends {
    /// Where jobs travel (depths, replays, cancelling a delayed job).
    pub broker: Arc<dyn Broker>,
    /// What operators may read and change in the store; no lock, no lease.
    pub store: Arc<dyn OperatorStore>,
    /// "Now", for the records operators write.
    pub clock: SharedClock,
}

impl Backends {
    /// These backends as an operator may use them: the store narrowed to its
    /// [`OperatorStore`] bundle.
    pub fn operator(&self) -> OperatorBackends {
        OperatorBackends {
            broker: self.broker.clone(),
            store: self.store.clone(),
            clock: self.clock.clone(),
        }
    }
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

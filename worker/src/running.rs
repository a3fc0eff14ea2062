//! The table of attempts running in this worker, and the [`Stopper`] each one is stopped
//! through.
//!
//! Four parties stop attempts from outside the handler — the cancel poll, the lock and
//! lease watchdogs and the draining runtime — and the attempt must know which one did it,
//! because the outcomes differ (cancelled, failed with `lock_lost`, handed back) and so
//! do the words its record keeps (why the lease lapsed, why the job was handed back).
//! The first reason given wins.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use jobfleet_common::JobId;
use tokio_util::sync::CancellationToken;

use crate::lapse::Lapse;

/// Why an attempt was stopped from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// Someone asked for the job to be cancelled.
    CancelRequested,
    /// The lock could not be renewed, for the reason given.
    LockLost(Lapse),
    /// The execution lease could not be renewed, for the reason given: another worker
    /// may run the job soon.
    LeaseLost(Lapse),
    /// The worker is shutting down and the grace period is over.
    Shutdown,
    /// The worker was told to exit at once (a second SIGTERM or Ctrl-C) while draining.
    ForcedExit,
}

/// Cancels one attempt's token and remembers the first reason.
#[derive(Debug, Default)]
pub(crate) struct Stopper {
    token: CancellationToken,
    reason: Mutex<Option<StopReason>>,
}

impl Stopper {
    /// The token the handler watches.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Stops the attempt, unless it was already stopped for another reason.
    pub fn stop(&self, reason: StopReason) {
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(reason);
        self.token.cancel();
    }

    /// Why the attempt was stopped, if it was.
    pub fn reason(&self) -> Option<StopReason> {
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[derive(Default)]
struct Table {
    jobs: HashMap<JobId, Arc<Stopper>>,
    /// Set by the end of a drain, with its reason: attempts registering afterwards are
    /// stopped at once.
    closed: Option<StopReason>,
}

/// The attempts running in this worker.
#[derive(Default)]
pub(crate) struct Running {
    table: Mutex<Table>,
}

impl Running {
    fn table(&self) -> MutexGuard<'_, Table> {
        // Nothing panics while holding the lock; recovering keeps the worker running anyway.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers an attempt; the guard unregisters it when dropped.
    pub fn enter(self: &Arc<Self>, id: JobId) -> RunningGuard {
        let stopper = Arc::new(Stopper::default());
        let mut table = self.table();
        if let Some(reason) = &table.closed {
            stopper.stop(reason.clone());
        }
        table.jobs.insert(id, stopper.clone());
        RunningGuard {
            running: self.clone(),
            id,
            stopper,
        }
    }

    /// The ids of the running attempts.
    pub fn ids(&self) -> Vec<JobId> {
        self.table().jobs.keys().copied().collect()
    }

    /// How many attempts are running.
    pub fn len(&self) -> usize {
        self.table().jobs.len()
    }

    /// Stops the attempt running `id`, if any.
    pub fn stop(&self, id: JobId, reason: StopReason) {
        if let Some(stopper) = self.table().jobs.get(&id) {
            stopper.stop(reason);
        }
    }

    /// Stops every attempt, now and from now on (the first reason stays).
    pub fn stop_all(&self, reason: StopReason) {
        let mut table = self.table();
        for stopper in table.jobs.values() {
            stopper.stop(reason.clone());
        }
        table.closed.get_or_insert(reason);
    }
}

/// A registered attempt; unregisters on drop so no path can leak an entry.
pub(crate) struct RunningGuard {
    running: Arc<Running>,
    id: JobId,
    stopper: Arc<Stopper>,
}

impl RunningGuard {
    /// The attempt's stopper.
    pub fn stopper(&self) -> &Arc<Stopper> {
        &self.stopper
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.running.table().jobs.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reason_wins_and_guards_unregister() {
        let running = Arc::new(Running::default());
        let (a, b) = (JobId::new(), JobId::new());
        let ga = running.enter(a);
        let gb = running.enter(b);
        assert_eq!(running.len(), 2);
        running.stop(a, StopReason::CancelRequested);
        running.stop(a, StopReason::LockLost(Lapse::Refused));
        assert_eq!(ga.stopper().reason(), Some(StopReason::CancelRequested));
        assert!(ga.stopper().token().is_cancelled());
        assert!(!gb.stopper().token().is_cancelled());
        drop(ga);
        assert_eq!(running.ids(), [b]);
        running.stop_all(StopReason::Shutdown);
        running.stop_all(StopReason::ForcedExit);
        assert_eq!(gb.stopper().reason(), Some(StopReason::Shutdown));
        let late = running.enter(JobId::new());
        assert_eq!(late.stopper().reason(), Some(StopReason::Shutdown));
    }
}

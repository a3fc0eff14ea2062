//! [`Fleet`]: roles started in this process on one shutdown token and one task tracker,
//! followed while they run, and stopped together.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use jobfleet_common::{Backends, Config};
use jobfleet_worker::Registry;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::role::{run_role, Report, Role, RoleExit, RoleFailure, RoleHandle};

/// Schedulers and workers running in this process, each through its public entry point
/// ([`jobfleet_scheduler::run`], [`jobfleet_worker::run`]), all stopping when one token
/// is cancelled.
///
/// Every role may have backends of its own (the bench gives each worker its own
/// connections, as separate processes would have) or share one [`Backends`] (the
/// embedded backend exists only as one instance shared in-process). The settled hook
/// and the handlers travel in the worker's [`Registry`]; "now" travels in the
/// backends' clock (a test's paused clock included).
///
/// Dropped without [`Fleet::stop`] (an error part-way), it aborts its roles, as a
/// `JoinSet` would: nothing it started outlives it.
pub struct Fleet {
    config: Arc<Config>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    exits_to: mpsc::UnboundedSender<RoleExit>,
    exits: mpsc::UnboundedReceiver<RoleExit>,
    /// Roles that report to `exits` and whose end has not been read yet.
    unread: AtomicUsize,
    schedulers: AtomicUsize,
    workers: AtomicUsize,
    /// Every role's task, for [`Fleet::abort`].
    tasks: Mutex<Vec<AbortHandle>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("namespace", &self.config.namespace)
            .field("schedulers", &self.schedulers.load(Ordering::Relaxed))
            .field("workers", &self.workers.load(Ordering::Relaxed))
            .field("stopping", &self.shutdown.is_cancelled())
            .finish()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.abort();
    }
}

impl Fleet {
    /// No roles yet; those started run with `config` (unless given their own) and stop
    /// when `shutdown` is cancelled (pass a child of a process-wide token to stop them
    /// with the process, or a fresh one).
    pub fn new(config: Arc<Config>, shutdown: CancellationToken) -> Self {
        let (exits_to, exits) = mpsc::unbounded_channel();
        Self {
            config,
            shutdown,
            tracker: TaskTracker::new(),
            exits_to,
            exits,
            unread: AtomicUsize::new(0),
            schedulers: AtomicUsize::new(0),
            workers: AtomicUsize::new(0),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// The configuration the roles share.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// How many workers were started, apart ones included.
    pub fn workers(&self) -> usize {
        self.workers.load(Ordering::Acquire)
    }

    /// Starts a scheduler on `backends`; it serves `scheduler.http` if the configuration
    /// sets it.
    pub fn start_scheduler(&self, backends: Backends) -> Role {
        let role = Role::Scheduler(self.schedulers.fetch_add(1, Ordering::AcqRel) + 1);
        let entry_point =
            jobfleet_scheduler::run(self.config.clone(), backends, self.shutdown.clone());
        self.spawn(role, entry_point, self.report_to_fleet());
        role
    }

    /// Starts a scheduler on `backends` serving its HTTP endpoint on `listener` (bound by
    /// the caller, which then knows the address), or nowhere.
    pub fn start_scheduler_serving(
        &self,
        backends: Backends,
        listener: Option<TcpListener>,
    ) -> Role {
        let role = Role::Scheduler(self.schedulers.fetch_add(1, Ordering::AcqRel) + 1);
        let entry_point = jobfleet_scheduler::run_serving(
            self.config.clone(),
            backends,
            listener,
            self.shutdown.clone(),
        );
        self.spawn(role, entry_point, self.report_to_fleet());
        role
    }

    /// Starts a worker on `backends` running `registry`'s handlers.
    pub fn start_worker(&self, backends: Backends, registry: Arc<Registry>) -> Role {
        self.start_worker_with(self.config.clone(), backends, registry)
    }

    /// Starts a worker with a configuration of its own.
    pub fn start_worker_with(
        &self,
        config: Arc<Config>,
        backends: Backends,
        registry: Arc<Registry>,
    ) -> Role {
        let role = self.next_worker();
        let entry_point = jobfleet_worker::run(config, backends, registry, self.shutdown.clone());
        self.spawn(role, entry_point, self.report_to_fleet());
        role
    }

    /// Starts a worker apart: it stops with the fleet, or alone when the returned token
    /// is cancelled, and reports its end to the returned handle instead of to
    /// [`Fleet::ended`] and [`Fleet::stop`] (a test drains one worker of several so).
    pub fn spawn_worker(
        &self,
        config: Arc<Config>,
        backends: Backends,
        registry: Arc<Registry>,
    ) -> (CancellationToken, RoleHandle) {
        let role = self.next_worker();
        let shutdown = self.shutdown.child_token();
        let entry_point = jobfleet_worker::run(config, backends, registry, shutdown.clone());
        let (exit_to, exit) = oneshot::channel();
        self.spawn(role, entry_point, Report::Alone(exit_to));
        (shutdown, RoleHandle::new(role, exit))
    }

    /// The next role to end on its own, however it ended (an error, a panic, or returning
    /// before it was asked to); `None` at once when none is running. Roles started apart
    /// are not reported here.
    pub async fn ended(&mut self) -> Option<RoleExit> {
        if self.unread.load(Ordering::Acquire) == 0 {
            return None;
        }
        // The fleet holds a sender, so the channel never closes under us.
        let exit = self.exits.recv().await?;
        self.unread.fetch_sub(1, Ordering::AcqRel);
        Some(exit)
    }

    /// Stops every role: cancels the token, waits until every role has drained and
    /// returned, then reports the first role (in the order they ended) that ended other
    /// than cleanly. Roles started apart are waited for too; their ends go to their
    /// handles.
    pub async fn stop(mut self) -> Result<(), RoleFailure> {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        let mut first = Ok(());
        while let Ok(exit) = self.exits.try_recv() {
            if let (Err(error), Ok(())) = (exit.result, &first) {
                first = Err(RoleFailure {
                    role: exit.role,
                    error,
                });
            }
        }
        first
    }

    /// Cancels the token and aborts every role's task without waiting: for a `Drop` that
    /// cannot await (a check that failed part-way). Aborted roles stop at their next
    /// await and do not drain.
    pub fn abort(&self) {
        self.shutdown.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in tasks {
            task.abort();
        }
    }

    fn next_worker(&self) -> Role {
        Role::Worker(self.workers.fetch_add(1, Ordering::AcqRel) + 1)
    }

    fn report_to_fleet(&self) -> Report {
        self.unread.fetch_add(1, Ordering::AcqRel);
        Report::Fleet(self.exits_to.clone())
    }

    fn spawn<E>(
        &self,
        role: Role,
        entry_point: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
        report: Report,
    ) where
        E: Into<crate::RoleError> + Send + 'static,
    {
        let task = self.tracker.spawn(run_role(role, entry_point, report));
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task.abort_handle());
    }
}

//! One role of an in-process fleet: which it is ([`Role`]), how it ended ([`RoleExit`],
//! [`RoleError`]), and the task body that runs it and reports its end, a panic included,
//! to the fleet or to a [`RoleHandle`] of its own.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::FutureExt;
use jobfleet_scheduler::SchedulerError;
use jobfleet_worker::WorkerError;
use tokio::sync::{mpsc, oneshot};

/// A role of the fleet: its kind and its number among the roles of that kind started so
/// far, from 1 (`worker 2` is the second worker started).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A scheduler ([`jobfleet_scheduler::run`]).
    Scheduler(usize),
    /// A worker ([`jobfleet_worker::run`]).
    Worker(usize),
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scheduler(n) => write!(f, "scheduler {n}"),
            Self::Worker(n) => write!(f, "worker {n}"),
        }
    }
}

/// Why a role ended other than cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    /// The worker's entry point returned an error.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// The scheduler's entry point returned an error.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// The role panicked; the panic's message.
    #[error("panicked: {0}")]
    Panicked(String),
    /// The role's task was aborted ([`Fleet::abort`](crate::Fleet::abort)) before it ended.
    #[error("aborted before it ended")]
    Aborted,
}

impl RoleError {
    /// Whether starting the role again could help: as its own error says; a panic or an
    /// abort would happen again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Worker(e) => e.is_retryable(),
            Self::Scheduler(e) => e.is_retryable(),
            Self::Panicked(_) | Self::Aborted => false,
        }
    }
}

/// How a role ended.
#[derive(Debug)]
pub struct RoleExit {
    /// Which role.
    pub role: Role,
    /// `Ok` when its entry point returned without error.
    pub result: Result<(), RoleError>,
}

/// A role that ended other than cleanly: which, and why.
#[derive(Debug, thiserror::Error)]
#[error("{role}: {error}")]
pub struct RoleFailure {
    /// Which role.
    pub role: Role,
    /// Why.
    #[source]
    pub error: RoleError,
}

/// Where a role reports its end.
pub(crate) enum Report {
    /// The fleet's channel, read by [`Fleet::ended`](crate::Fleet::ended) and
    /// [`Fleet::stop`](crate::Fleet::stop).
    Fleet(mpsc::UnboundedSender<RoleExit>),
    /// A [`RoleHandle`] of its own.
    Alone(oneshot::Sender<RoleExit>),
}

/// Runs `role` to its end, a panic included, and reports how it ended.
pub(crate) async fn run_role<E>(
    role: Role,
    entry_point: impl Future<Output = Result<(), E>>,
    report: Report,
) where
    E: Into<RoleError>,
{
    // Caught here so the fleet hears of it as of any other end, with the message.
    let result = match AssertUnwindSafe(entry_point).catch_unwind().await {
        Ok(result) => result.map_err(Into::into),
        Err(panic) => Err(RoleError::Panicked(panic_message(panic.as_ref()))),
    };
    let exit = RoleExit { role, result };
    // Nobody listening (the fleet or the handle is gone) leaves nobody to tell.
    match report {
        Report::Fleet(exits) => {
            let _ = exits.send(exit);
        }
        Report::Alone(exit_to) => {
            let _ = exit_to.send(exit);
        }
    }
}

/// A panic's message, when it has one.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_string()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".into()
    }
}

/// A role started apart ([`Fleet::spawn_worker`](crate::Fleet::spawn_worker)): awaiting
/// it waits for the role to end and gives how it ended.
#[derive(Debug)]
pub struct RoleHandle {
    role: Role,
    exit: oneshot::Receiver<RoleExit>,
}

impl RoleHandle {
    pub(crate) fn new(role: Role, exit: oneshot::Receiver<RoleExit>) -> Self {
        Self { role, exit }
    }

    /// Which role.
    pub fn role(&self) -> Role {
        self.role
    }
}

impl Future for RoleHandle {
    type Output = Result<(), RoleError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.exit).poll(cx).map(|exit| match exit {
            Ok(exit) => exit.result,
            // The task was dropped unfinished: only an abort does that.
            Err(_) => Err(RoleError::Aborted),
        })
    }
}

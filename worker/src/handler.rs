//! What the application plugs in: [`Handler`]s, registered by job kind in a [`Registry`],
//! each returning a [`JobError`](crate::job_error::JobError) to say whether another attempt
//! can help.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use jobfleet_common::Job;

use crate::context::JobContext;
use crate::job_error::JobError;
use crate::settlement::Settlement;

/// Runs jobs of one kind.
///
/// A handler should watch [`JobContext::cancelled`] in long waits: the worker cancels the
/// token on a cancel request, a lost lock, a timeout or a forced shutdown, and drops the
/// handler's future right after, so cleanup must not rely on running to the end.
#[async_trait]
pub trait Handler: Send + Sync {
    /// Runs one attempt of the job in `ctx`.
    async fn run(&self, ctx: JobContext) -> Result<(), JobError>;

    /// The lock a job of this kind holds while it runs when its producer set none: a kind
    /// that writes a shared resource (a dataset, a model) names it here, so every job of
    /// the kind is serialised on it and gets its fencing token whoever enqueued it. The
    /// job's own `lock`, when set, wins. None by default.
    fn lock(&self, _job: &Job) -> Option<jobfleet_common::LockSpec> {
        None
    }
}

/// What [`Registry::on_settled`] calls: the job and how its delivery was settled.
type SettledHook = Arc<dyn Fn(&Job, Settlement) + Send + Sync>;

/// Handlers by job kind, and an optional observer of settled jobs.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn Handler>>,
    on_settled: Option<SettledHook>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.kinds())
            .field("on_settled", &self.on_settled.is_some())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for `kind`, replacing any handler registered before for it.
    pub fn register(
        &mut self,
        kind: impl Into<String>,
        handler: impl Handler + 'static,
    ) -> &mut Self {
        self.handlers.insert(kind.into(), Arc::new(handler));
        self
    }

    /// Takes every handler of `other` (replacing handlers of the same kinds here) and its
    /// settled hook, if it has one.
    pub fn merge(&mut self, other: Registry) -> &mut Self {
        self.handlers.extend(other.handlers);
        if other.on_settled.is_some() {
            self.on_settled = other.on_settled;
        }
        self
    }

    /// Registers an async function for `kind`.
    pub fn register_fn<F, Fut>(&mut self, kind: impl Into<String>, f: F) -> &mut Self
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        self.register(kind, FnHandler(f))
    }

    /// Calls `hook` each time the worker is done with a job's delivery: after the outcome
    /// was recorded (completion marker, `cancelled` record, publish to the failed, dead or
    /// delayed route) and the delivery acked — or, for [`Settlement::Requeued`] on
    /// shutdown and [`Settlement::Busy`], handed back. It gets the job and the
    /// [`Settlement`]; [`Settlement::as_str`] is the `outcome` label of the attempts
    /// metric (`completed`, `duplicate`, `failed`, …). Match on the variants, without a
    /// catch-all arm where each one matters (counting, say), and the compiler points at
    /// the hook when a new way to settle a delivery appears. (The hook took the label as a
    /// `&'static str` before; `outcome.as_str()` is that same string.)
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use jobfleet_worker::{Registry, Settlement};
    ///
    /// let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    /// let (d, f) = (done.clone(), failed.clone());
    /// let mut registry = Registry::new();
    /// registry.on_settled(move |_job, outcome| match outcome {
    ///     Settlement::Completed | Settlement::Duplicate => {
    ///         d.fetch_add(1, Ordering::Relaxed);
    ///     }
    ///     Settlement::Permanent | Settlement::WorkerCrashed => {
    ///         f.fetch_add(1, Ordering::Relaxed);
    ///     }
    ///     // Comes again: retried by the scheduler, or handed back to the broker.
    ///     Settlement::Failed
    ///     | Settlement::Timeout
    ///     | Settlement::Panic
    ///     | Settlement::LockLost
    ///     | Settlement::Requeued
    ///     | Settlement::Busy => {}
    ///     Settlement::Cancelled | Settlement::Skipped => {}
    /// });
    /// ```
    ///
    /// Not called for deliveries that never decoded into a runnable job (they go to the
    /// dead route without a [`Job`]) nor for deliveries given back after a backend error
    /// (they come again). The hook runs on the job's task: keep it short and non-blocking
    /// (count, timestamp, notify). Benchmarks and tests use it to know when work is
    /// really finished, not merely when a handler returned. A second call replaces the
    /// first hook.
    pub fn on_settled<F>(&mut self, hook: F) -> &mut Self
    where
        F: Fn(&Job, Settlement) + Send + Sync + 'static,
    {
        self.on_settled = Some(Arc::new(hook));
        self
    }

    /// Tells the settled hook, if any, that `job` ended with `outcome`.
    pub(crate) fn settled(&self, job: &Job, outcome: Settlement) {
        if let Some(hook) = &self.on_settled {
            hook(job, outcome);
        }
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.handlers.keys().cloned().collect();
        kinds.sort();
        kinds
    }

    /// The handler for `kind`, if registered.
    pub(crate) fn get(&self, kind: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.get(kind).cloned()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.handlers.is_empty()
    }
}

struct FnHandler<F>(F);

#[async_trait]
impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    async fn run(&self, ctx: JobContext) -> Result<(), JobError> {
        (self.0)(ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_lists_kinds_and_replaces_by_kind() {
        let mut registry = Registry::new();
        assert!(registry.is_empty());
        registry
            .register_fn("b", |_ctx| async { Ok(()) })
            .register_fn("a", |_ctx| async { Err(JobError::retryable("x")) })
            .register_fn("a", |_ctx| async { Ok(()) });
        assert_eq!(registry.kinds(), ["a", "b"]);
        assert!(registry.get("a").is_some());
        assert!(registry.get("c").is_none());
    }
}

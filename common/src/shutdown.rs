//! Turning SIGTERM and Ctrl-C into a cancelled [`CancellationToken`], the only way any
//! role (a `jobfleet` command, or a worker or producer embedded in your own binary) is
//! asked to stop.
//!
//! The first signal cancels the token and the command drains (workers finish or hand back
//! their jobs within `worker.grace_period`). A second signal gives up on the drain, for
//! the operator whose broker went away mid-shutdown. A command with something to hand
//! back asks for a second token, [`forced`], which that signal cancels; it then gets
//! [`FORCED_EXIT_GRACE`] to hand back what it holds (a worker stops its running jobs at
//! once, requeues their deliveries, frees their leases and records them as interrupted)
//! before the process exits. A third signal exits at once; a command that never asked
//! is not waited for.
//!
//! The second token reaches the command through a task-local scope rather than an
//! argument so that every command keeps the one-token signature (`run(config, token)`);
//! only a command that has something to hand back reads it, once, as it starts. Code
//! that runs a command without [`run_until_signal`] (a test, a binary with its own
//! signal handling) hands it one with [`forcing`].

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long a command may take, after the second signal, to hand back what it holds
/// before [`run_until_signal`] gives up on it: enough for a few store and broker round
/// trips per running job, short enough for an operator who asked to exit now.
pub const FORCED_EXIT_GRACE: Duration = Duration::from_secs(2);

tokio::task_local! {
    /// The second signal's token, for the command running in this scope.
    static FORCED: Forcing;
}

/// The second signal's token as a command's scope holds it, and whether the command
/// asked for it: one that did not has nothing to hand back, and is not waited for.
#[derive(Clone, Debug, Default)]
struct Forcing {
    token: CancellationToken,
    asked: Arc<AtomicBool>,
}

/// A second signal arrived before the drain finished: the caller gave up waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by a second signal before the drain finished")]
pub struct Interrupted;

/// Runs `command` with a token that the first SIGTERM or Ctrl-C cancels. A second signal
/// returns [`Interrupted`] (as the command's error type) without waiting for the command
/// any longer; if the command asked for [`forced`], that token is cancelled first and
/// the command gets up to [`FORCED_EXIT_GRACE`] (or until a third signal) to hand back
/// what it holds.
pub async fn run_until_signal<F, Fut, T, E>(command: F) -> Result<T, E>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: From<Interrupted>,
{
    let token = CancellationToken::new();
    let force = Forcing::default();
    let work = FORCED.sync_scope(force.clone(), || command(token.clone()));
    let work = FORCED.scope(force.clone(), work);
    tokio::pin!(work);
    tokio::select! {
        out = &mut work => return out,
        () = signal() => {
            tracing::info!("signal received: shutting down (signal again to stop waiting)");
            token.cancel();
        }
    }
    tokio::select! {
        out = &mut work => return out,
        () = signal() => {}
    }
    if !force.asked.load(Ordering::Acquire) {
        return Err(Interrupted.into());
    }
    tracing::warn!(
        grace = ?FORCED_EXIT_GRACE,
        "second signal: handing back what can be handed back, then exiting (signal again \
         to exit at once)"
    );
    force.token.cancel();
    tokio::select! {
        _ = tokio::time::timeout(FORCED_EXIT_GRACE, &mut work) => {}
        () = signal() => {}
    }
    Err(Interrupted.into())
}

/// The token a second signal cancels, inside a command [`run_until_signal`] (or
/// [`forcing`]) runs; elsewhere, a token nothing cancels. A command with something to
/// hand back reads it once as it starts, and when it is cancelled stops waiting for its
/// drain and hands back what it can within [`FORCED_EXIT_GRACE`].
pub fn forced() -> CancellationToken {
    FORCED
        .try_with(|forcing| {
            forcing.asked.store(true, Ordering::Release);
            forcing.token.clone()
        })
        .unwrap_or_default()
}

/// Runs `work` with `force` as the token [`forced`] returns inside it: how a test, or a
/// binary that handles signals itself, tells a command (a worker) to give up its drain.
pub async fn forcing<F: Future>(force: CancellationToken, work: F) -> F::Output {
    let forcing = Forcing {
        token: force,
        asked: Arc::default(),
    };
    FORCED.scope(forcing, work).await
}

/// Resolves on the next Ctrl-C or (on Unix) SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            // Without a handler there is nothing to wait for: never resolve on this arm.
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_command_that_finishes_returns_its_result() {
        let out = run_until_signal(|token| async move {
            assert!(!token.is_cancelled());
            Ok::<_, Interrupted>(7)
        })
        .await;
        assert_eq!(out.expect("finished"), 7);
    }

    #[tokio::test]
    async fn forced_is_the_token_of_the_scope_it_runs_in() {
        assert!(
            !forced().is_cancelled(),
            "outside any scope: never cancelled"
        );
        let force = CancellationToken::new();
        let seen = forcing(force.clone(), async { forced() }).await;
        force.cancel();
        assert!(seen.is_cancelled());
        let seen = run_until_signal(|_| async { Ok::<_, Interrupted>(forced()) }).await;
        assert!(!seen.expect("finished").is_cancelled());
    }

    #[tokio::test]
    async fn a_command_that_never_asks_for_the_token_is_not_waited_for() {
        let scope = Forcing::default();
        FORCED.scope(scope.clone(), async {}).await;
        assert!(!scope.asked.load(Ordering::Acquire));
        FORCED.scope(scope.clone(), async { forced() }).await;
        assert!(scope.asked.load(Ordering::Acquire));
    }
}

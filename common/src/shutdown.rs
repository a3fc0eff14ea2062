//! Turning SIGTERM and Ctrl-C into a cancelled [`CancellationToken`], the only way any
//! role (a `jobfleet` command, or a worker or producer embedded in your own binary) is
//! asked to stop.
//!
//! The first signal cancels the token and the command drains (workers finish or hand back
//! their jobs within `worker.grace_period`). A second signal gives up on the drain, for
//! the operator whose broker went away mid-shutdown.

use std::future::Future;

use tokio_util::sync::CancellationToken;

/// A second signal arrived before the drain finished: the caller gave up waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by a second signal before the drain finished")]
pub struct Interrupted;

/// Runs `command` with a token that the first SIGTERM or Ctrl-C cancels; a second signal
/// returns [`Interrupted`] (as the command's error type) without waiting for the command
/// any longer.
pub async fn run_until_signal<F, Fut, T, E>(command: F) -> Result<T, E>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: From<Interrupted>,
{
    let token = CancellationToken::new();
    let work = command(token.clone());
    tokio::pin!(work);
    tokio::select! {
        out = &mut work => return out,
        () = signal() => {
            tracing::info!("signal received: shutting down (signal again to exit at once)");
            token.cancel();
        }
    }
    tokio::select! {
        out = &mut work => out,
        () = signal() => Err(Interrupted.into()),
    }
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
}

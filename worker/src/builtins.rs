//! The built-in job kinds that demos, smoke tests and benchmarks use:
//!
//! - `echo`: succeeds at once with its payload as its result (when the payload is JSON);
//! - `sleep` (`{"ms": N}`): sleeps N ms, failing early (retryably) when cancelled;
//! - `flaky` (`{"fail_times": N}`): fails retryably while `attempt <= N`, then succeeds;
//! - `fail`: always fails retryably, so the job ends dead after its attempts: the
//!   "poison" job of the demos.
//!
//! A payload field they do not take (`{"ms": 10, "msx": 5}`, a misspelling beside the
//! real field) fails the job permanently instead of being ignored; [`check_payload`]
//! lets `jobfleet run` refuse it before anything runs.

use std::time::Duration;

use serde::Deserialize;

use crate::context::JobContext;
use crate::handler::Registry;
use crate::job_error::JobError;

impl Registry {
    /// A registry with the built-in kinds `echo`, `sleep`, `flaky` and `fail`. (Here, not
    /// in handler.rs, so the built-ins sit above the registry and not beside it.)
    pub fn with_builtins() -> Self {
        let mut registry = Self::new();
        registry
            .register_fn("echo", echo)
            .register_fn("sleep", sleep)
            .register_fn("flaky", flaky)
            .register_fn("fail", fail);
        registry
    }
}

/// Checks a payload of the built-in kind `kind` as its handler will, without running
/// it; `None` when `kind` is not a built-in one. `echo` and `fail` take any payload.
pub fn check_payload(kind: &str, payload: &[u8]) -> Option<Result<(), JobError>> {
    let parsed = match kind {
        "sleep" => serde_json::from_slice::<SleepArgs>(payload).map(drop),
        "flaky" => serde_json::from_slice::<FlakyArgs>(payload).map(drop),
        "echo" | "fail" => Ok(()),
        _ => return None,
    };
    Some(parsed.map_err(JobError::from))
}

async fn echo(ctx: JobContext) -> Result<(), JobError> {
    tracing::info!(bytes = ctx.job().payload.len(), "echo");
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&ctx.job().payload) {
        ctx.set_result(value)?;
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SleepArgs {
    ms: u64,
}

async fn sleep(ctx: JobContext) -> Result<(), JobError> {
    let SleepArgs { ms } = ctx.payload_json()?;
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(ms)) => Ok(()),
        () = ctx.cancelled().cancelled() => Err(JobError::retryable("sleep cancelled")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlakyArgs {
    fail_times: u32,
}

async fn flaky(ctx: JobContext) -> Result<(), JobError> {
    let FlakyArgs { fail_times } = ctx.payload_json()?;
    if ctx.attempt() <= fail_times {
        return Err(JobError::retryable(format!(
            "flaky: failing attempt {} of the first {fail_times}",
            ctx.attempt()
        )));
    }
    Ok(())
}

async fn fail(_ctx: JobContext) -> Result<(), JobError> {
    Err(JobError::retryable("fail: this kind always fails"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_registry_has_the_four_demo_kinds() {
        assert_eq!(
            Registry::with_builtins().kinds(),
            ["echo", "fail", "flaky", "sleep"]
        );
    }
}

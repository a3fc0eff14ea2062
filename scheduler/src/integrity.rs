//! The scheduler's watch on the store's integrity: every [`EVERY`] it asks the store
//! whether it still holds what it held (a Redis restarted without persistence or flushed
//! does not). The store itself logs, counts and records a loss (see
//! `jobfleet_common::store::Integrity`); `/readyz` and `jobfleet queues` show the record.
//!
//! Every [`DURABILITY_EVERY`] it also asks what the server keeps, so persistence turned
//! off after the fleet started (`CONFIG SET appendonly no`, a restart with another
//! configuration) is warned about before anything is lost: a log line when it changes,
//! the `jobfleet_store_persisting` gauge, and `/readyz`'s warning.

use std::sync::Arc;
use std::time::Duration;

use jobfleet_common::store::{self, Durability, IntegrityCheck};
use jobfleet_common::telemetry;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::context::Context;

/// How often the store is checked: one small read, so a loss is noticed within a second.
pub(crate) const EVERY: Duration = Duration::from_secs(1);
/// How often the server's persistence is asked (`INFO persistence` and two `CONFIG GET`).
pub(crate) const DURABILITY_EVERY: u32 = 10;

/// Checks until `shutdown`, or until the store says it has nothing to check.
pub(crate) async fn watch(ctx: Arc<Context>, shutdown: CancellationToken) {
    let me = format!("scheduler on {} (pid {})", host_name(), std::process::id());
    let required = ctx.config.redis.require_persistence;
    store::announce_durability(ctx.store.as_ref(), "scheduler", required).await;
    let mut persisting = None;
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for round in 0u32.. {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if round % DURABILITY_EVERY == 0 {
            let asked = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                asked = ctx.store.durability() => asked,
            };
            match asked {
                Ok(Some(now)) => persisting = Some(changed(persisting, &now, required)),
                Ok(None) => {}
                Err(e) => telemetry::backend_error("scheduler", "durability", &e),
            }
        }
        let checked = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            checked = ctx.store.check_integrity(&me) => checked,
        };
        match checked {
            Ok(IntegrityCheck::NotApplicable) => return,
            Ok(IntegrityCheck::Intact | IntegrityCheck::DataLost(_)) => {}
            Err(e) => telemetry::backend_error("scheduler", "check_integrity", &e),
        }
    }
}

/// Sets the gauge and logs a change of the server's persistence from `before`; returns
/// whether it persists now.
fn changed(before: Option<bool>, now: &Durability, required: bool) -> bool {
    telemetry::store_persisting(now.persisting);
    match (before, now.persisting) {
        (Some(true), false) => match now.alarm(required) {
            Some(alarm) => tracing::error!("{alarm}"),
            None => tracing::warn!(persistence = %now.summary, loss_window = %now.loss_window,
                "the store stopped persisting (accepted by redis.require_persistence = false)"),
        },
        (Some(false), true) => tracing::info!(persistence = %now.summary,
            loss_window = %now.loss_window, "the store persists again"),
        _ => {}
    }
    now.persisting
}

/// The host name from `HOSTNAME` (set by shells and container runtimes), else `localhost`.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

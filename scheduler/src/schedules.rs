//! The config file's `[schedules.<name>]` tables, written into the store at start-up.
//!
//! The file wins for the schedules it declares: a declaration that differs from the
//! store's (a runtime edit, or an older file) is replaced, every time a scheduler
//! starts. Their state (watermark, pause, last fire) is kept, so a restart neither
//! replays nor forgets instants, and a paused schedule stays paused. A schedule that
//! came from a config file but is not in this one is left alone, with a warning: in a
//! rolling deploy, schedulers with the old file are still running.

use jobfleet_common::store::ScheduleSource;
use jobfleet_common::telemetry;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::pause::Pause;

/// Writes the config file's schedules, retrying until it works; false if shut down first.
pub(crate) async fn apply_config(ctx: &Context, shutdown: &CancellationToken) -> bool {
    let mut pause = Pause::new();
    while !shutdown.is_cancelled() {
        match apply(ctx).await {
            Ok(()) => return true,
            Err(e) => {
                telemetry::backend_error("scheduler", "schedules", &e);
                pause.wait(shutdown).await;
            }
        }
    }
    false
}

async fn apply(ctx: &Context) -> Result<(), jobfleet_common::StoreError> {
    let store = &ctx.store;
    let stored = store.schedule_list().await?;
    for (name, spec) in &ctx.config.schedules {
        let current = stored.iter().find(|s| &s.name == name);
        let same = current.is_some_and(|s| &s.spec == spec && s.source == ScheduleSource::Config);
        if same {
            continue;
        }
        let created = store
            .schedule_put(name, spec, ScheduleSource::Config)
            .await?;
        let verb = if created { "created" } else { "updated" };
        tracing::info!(schedule = %name, cron = %spec.cron, timezone = %spec.timezone, "schedule {verb} from the config file");
    }
    for s in &stored {
        if s.source == ScheduleSource::Config && !ctx.config.schedules.contains_key(&s.name) {
            tracing::warn!(
                schedule = %s.name,
                "schedule came from a config file but is not in this one; it keeps firing \
                 (remove it with `jobfleet schedule remove {}`)",
                s.name
            );
        }
    }
    Ok(())
}

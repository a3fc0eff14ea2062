//! Schedules for operators: what `jobfleet schedule add|list|show|pause|resume|remove|
//! trigger` calls. Each is a store conversation; firing is the running schedulers' job.

use jobfleet_common::codec::{self, Format};
use jobfleet_common::cron::ScheduleSpec;
use jobfleet_common::limits::Limits;
use jobfleet_common::store::{
    JobRecord, JobState, OperatorStore, ScheduleSource, ScheduledJob, Schedules, StoredSchedule,
};
use jobfleet_common::JobId;
use jobfleet_cron::Schedule;
use serde::Serialize;

use crate::error::OpsError;

/// A schedule as `list` and `show` present it: what the store holds, its state in a
/// word, and when it fires next.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScheduleView {
    /// What the store holds.
    #[serde(flatten)]
    pub stored: StoredSchedule,
    /// `active`, `paused` or `disabled`.
    pub status: &'static str,
    /// The next instant it fires for (the store's clock), if active.
    pub next_fire_ms: Option<i64>,
}

/// Checks `spec` as the config file's schedules are checked; the error names the field.
pub fn check(name: &str, spec: &ScheduleSpec, limits: &Limits) -> Result<Schedule, OpsError> {
    let schedule = Schedule::new(name, spec.clone())
        .map_err(|e| OpsError::Invalid(format!("schedule {name:?}: {e}")))?;
    limits
        .validate(&schedule.job(0, 0), 0)
        .map_err(|e| OpsError::Invalid(format!("schedule {name:?}: {e}")))?;
    Ok(schedule)
}

/// Adds a schedule (or, with `replace`, replaces one of that name, keeping its state);
/// true if it was created. A name already taken without `replace` is refused.
pub async fn schedule_add(
    store: &dyn Schedules,
    limits: &Limits,
    name: &str,
    spec: &ScheduleSpec,
    replace: bool,
) -> Result<bool, OpsError> {
    check(name, spec, limits)?;
    if !replace && store.schedule_get(name).await?.is_some() {
        return Err(OpsError::Invalid(format!(
            "schedule {name:?} exists; add --replace to change it"
        )));
    }
    Ok(store
        .schedule_put(name, spec, ScheduleSource::Runtime)
        .await?)
}

/// Every schedule, by name, with its next fire by the store's clock.
pub async fn schedule_list(store: &dyn OperatorStore) -> Result<Vec<ScheduleView>, OpsError> {
    let now = store.store_time_ms().await?;
    let stored = store.schedule_list().await?;
    Ok(stored.into_iter().map(|s| view(s, now)).collect())
}

/// One schedule, with its next fire by the store's clock.
pub async fn schedule_show(
    store: &dyn OperatorStore,
    name: &str,
) -> Result<Option<ScheduleView>, OpsError> {
    let now = store.store_time_ms().await?;
    Ok(store.schedule_get(name).await?.map(|s| view(s, now)))
}

fn view(stored: StoredSchedule, now: i64) -> ScheduleView {
    let status = if !stored.spec.enabled {
        "disabled"
    } else if stored.state.paused {
        "paused"
    } else {
        "active"
    };
    let next_fire_ms = (status == "active")
        .then(|| Schedule::new(&stored.name, stored.spec.clone()).ok())
        .flatten()
        .and_then(|s| s.next_after(now.max(stored.state.watermark_ms)));
    ScheduleView {
        stored,
        status,
        next_fire_ms,
    }
}

/// Pauses (or resumes) a schedule; false if there is none of that name.
pub async fn schedule_pause(
    store: &dyn Schedules,
    name: &str,
    paused: bool,
) -> Result<bool, OpsError> {
    Ok(store.schedule_pause(name, paused).await?)
}

/// Removes a schedule and its state; false if there was none.
pub async fn schedule_remove(store: &dyn Schedules, name: &str) -> Result<bool, OpsError> {
    Ok(store.schedule_remove(name).await?)
}

/// Fires a schedule once now, outside its instants (paused or not): a job with a fresh
/// id, due at once in the delayed set, which a running scheduler releases. The
/// schedule's instants and state do not move. `None` if there is no such schedule.
pub async fn schedule_trigger(
    store: &dyn OperatorStore,
    name: &str,
) -> Result<Option<JobId>, OpsError> {
    let Some(stored) = store.schedule_get(name).await? else {
        return Ok(None);
    };
    let schedule = Schedule::new(name, stored.spec)
        .map_err(|e| OpsError::Invalid(format!("schedule {name:?}: {e}")))?;
    let now = store.store_time_ms().await?;
    let job = schedule.triggered_job(now);
    // Its note says it was triggered by hand (`JobRecord::of`).
    store
        .put_records(&[JobRecord::of(&job, JobState::Scheduled, now)])
        .await?;
    store
        .schedule(vec![ScheduledJob {
            id: job.id,
            queue: job.queue.clone(),
            due_ms: now,
            body: codec::encode(&job, Format::Binary),
        }])
        .await?;
    Ok(Some(job.id))
}

//! Embedded schedules: declarations and state by name. The checks of a step that span
//! other tables (the leader lock, the uniqueness key) are the store's; this table only
//! checks and moves its own part. Times are passed in.

use std::collections::BTreeMap;

use crate::cron::ScheduleSpec;
use crate::store::{
    CronAction, CronOutcome, CronStep, ScheduleSource, ScheduleState, StoredSchedule,
};

#[derive(Debug, Default)]
pub(super) struct ScheduleTable {
    schedules: BTreeMap<String, StoredSchedule>,
}

impl ScheduleTable {
    pub fn put(
        &mut self,
        name: &str,
        spec: &ScheduleSpec,
        source: ScheduleSource,
        now_ms: i64,
    ) -> bool {
        if let Some(existing) = self.schedules.get_mut(name) {
            if !existing.spec.enabled && spec.enabled {
                let state = &mut existing.state;
                state.watermark_ms = state.watermark_ms.max(now_ms);
            }
            existing.spec = spec.clone();
            existing.source = source;
            existing.updated_at_ms = now_ms;
            return false;
        }
        let state = ScheduleState {
            watermark_ms: now_ms,
            created_at_ms: now_ms,
            ..ScheduleState::default()
        };
        self.schedules.insert(
            name.to_string(),
            StoredSchedule {
                name: name.to_string(),
                spec: spec.clone(),
                source,
                updated_at_ms: now_ms,
                state,
            },
        );
        true
    }

    pub fn list(&self) -> Vec<StoredSchedule> {
        self.schedules.values().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Option<StoredSchedule> {
        self.schedules.get(name).cloned()
    }

    pub fn remove(&mut self, name: &str) -> bool {
        self.schedules.remove(name).is_some()
    }

    pub fn pause(&mut self, name: &str, paused: bool, now_ms: i64) -> bool {
        let Some(schedule) = self.schedules.get_mut(name) else {
            return false;
        };
        let state = &mut schedule.state;
        if state.paused && !paused {
            state.watermark_ms = state.watermark_ms.max(now_ms);
        }
        state.paused = paused;
        true
    }

    /// Whether `step` may apply to its schedule: `Err` with why not.
    pub fn check(&self, step: &CronStep) -> Result<(), CronOutcome> {
        let Some(schedule) = self.schedules.get(&step.name) else {
            return Err(CronOutcome::Gone);
        };
        if schedule.state.paused {
            return Err(CronOutcome::Paused);
        }
        if schedule.state.watermark_ms != step.expected_watermark_ms {
            return Err(CronOutcome::Moved);
        }
        Ok(())
    }

    /// Moves the schedule's state as `step` says; [`ScheduleTable::check`] passed.
    pub fn apply(&mut self, step: &CronStep, now_ms: i64) {
        let Some(schedule) = self.schedules.get_mut(&step.name) else {
            return;
        };
        let state = &mut schedule.state;
        state.watermark_ms = state.watermark_ms.max(step.watermark_ms);
        match &step.action {
            CronAction::Advance => {}
            CronAction::Owe(instant) => state.owed_ms = Some(*instant),
            CronAction::Settle(instant) => {
                if state.owed_ms.is_some_and(|owed| owed <= *instant) {
                    state.owed_ms = None;
                }
            }
            CronAction::Fire(fire) => {
                if state.owed_ms.is_some_and(|owed| owed <= fire.instant_ms) {
                    state.owed_ms = None;
                }
                state.last_instant_ms = Some(fire.instant_ms);
                state.last_fired_at_ms = Some(now_ms);
                state.last_job = Some(fire.job.id);
                state.fires += 1;
            }
        }
    }
}

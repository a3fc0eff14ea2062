//! A checked, compiled schedule: when it is next due, the instants due in a window (a
//! scheduler's round, or an outage it catches up on), and the job of an instant.

use std::collections::VecDeque;
use std::fmt;

use chrono::{DateTime, TimeZone};
use chrono_tz::Tz;
use croner::Cron;
use jobfleet_common::cron::{check_name, InvalidSchedule, ScheduleSpec};
use jobfleet_common::Job;

use crate::parse::{parse_cron, parse_zone};

/// A checked schedule, ready to say when it is due.
#[derive(Clone)]
pub struct Schedule {
    name: String,
    spec: ScheduleSpec,
    cron: Cron,
    zone: Tz,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("name", &self.name)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// Instants of a schedule in a window, from [`Schedule::due`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// How many instants fall in the window, up to the search limit.
    pub count: u64,
    /// The most recent of them (at most the number asked for), oldest first.
    pub latest: Vec<i64>,
    /// The search stopped at its limit before the window's end: more instants follow the
    /// last one in `latest`, and a later call continues from there.
    pub truncated: bool,
}

/// Most instants one [`Schedule::due`] call steps through (an every-second schedule's
/// 28 hours): a longer outage is worked through over several scheduler rounds.
pub const DUE_SEARCH_LIMIT: u64 = 100_000;

impl Schedule {
    /// Checks `spec` under `name`; the error names the field (the name first, then the
    /// expression and the time zone, then the other fields).
    pub fn new(name: &str, spec: ScheduleSpec) -> Result<Self, InvalidSchedule> {
        check_name(name)?;
        let cron = parse_cron(&spec.cron)?;
        let zone = parse_zone(&spec.timezone)?;
        spec.check_fields()?;
        Ok(Self {
            name: name.to_string(),
            spec,
            cron,
            zone,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it was declared with.
    pub fn spec(&self) -> &ScheduleSpec {
        &self.spec
    }

    fn at(&self, ms: i64) -> Option<DateTime<Tz>> {
        self.zone.timestamp_millis_opt(ms).single()
    }

    /// The first instant strictly after `after_ms`, Unix ms.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let start = self.at(after_ms)?;
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The instants in `(after_ms, until_ms]`: how many, and the last `keep` of them.
    pub fn due(&self, after_ms: i64, until_ms: i64, keep: usize) -> Due {
        let mut due = Due::default();
        let mut latest = VecDeque::with_capacity(keep.min(1024));
        let mut cursor = after_ms;
        while let Some(next) = self.next_after(cursor) {
            if next > until_ms {
                break;
            }
            if due.count == DUE_SEARCH_LIMIT {
                due.truncated = true;
                break;
            }
            due.count += 1;
            if keep > 0 {
                if latest.len() == keep {
                    latest.pop_front();
                }
                latest.push_back(next);
            }
            cursor = next;
        }
        due.latest = latest.into();
        due
    }

    /// The job fired for `instant_ms` at `now_ms` ([`ScheduleSpec::instant_job`]).
    pub fn job(&self, instant_ms: i64, now_ms: i64) -> Job {
        self.spec.instant_job(&self.name, instant_ms, now_ms)
    }

    /// A job for a manual `jobfleet schedule trigger` at `now_ms`
    /// ([`ScheduleSpec::triggered_job`]).
    pub fn triggered_job(&self, now_ms: i64) -> Job {
        self.spec.triggered_job(&self.name, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, Utc};
    use jobfleet_common::cron::fired_for;

    fn schedule(cron: &str, zone: &str) -> Schedule {
        let mut spec = ScheduleSpec::new(cron, "q", "echo");
        spec.timezone = zone.into();
        Schedule::new("s", spec).expect("valid")
    }

    /// Unix ms of a wall clock time in `zone`; the earlier one where it repeats.
    fn local(zone: &str, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        let tz = parse_zone(zone).expect("zone");
        let naive = NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|d| d.and_hms_opt(h, mi, 0))
            .expect("date");
        tz.from_local_datetime(&naive)
            .earliest()
            .expect("exists")
            .timestamp_millis()
    }

    fn utc_ms(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("date")
            .timestamp_millis()
    }

    #[test]
    fn a_bad_schedule_is_refused_naming_the_field_in_order() {
        for bad in ["", "a:b", "with space", &"x".repeat(101)] {
            let spec = ScheduleSpec::new("not cron", "q", "echo");
            assert_eq!(Schedule::new(bad, spec).expect_err(bad).field, "name");
        }
        // The expression is read before the other fields.
        let spec = ScheduleSpec::new("61 * * * *", "", "echo");
        assert_eq!(Schedule::new("s", spec).expect_err("").field, "cron");
        let mut spec = ScheduleSpec::new("* * * * *", "", "echo");
        spec.timezone = "Mars/Olympus".into();
        assert_eq!(
            Schedule::new("s", spec.clone()).expect_err("").field,
            "timezone"
        );
        spec.timezone = "UTC".into();
        assert_eq!(
            Schedule::new("s", spec.clone()).expect_err("").field,
            "queue"
        );
        spec.queue = "q".into();
        spec.max_catch_up = 0;
        assert_eq!(
            Schedule::new("s", spec).expect_err("").field,
            "max_catch_up"
        );
    }

    #[test]
    fn next_fire_is_strictly_after_and_seconds_count() {
        let every_2s = schedule("*/2 * * * * *", "UTC");
        let t = utc_ms(2026, 1, 1, 0, 0, 0);
        assert_eq!(every_2s.next_after(t), Some(t + 2_000));
        assert_eq!(every_2s.next_after(t + 1), Some(t + 2_000));
        assert_eq!(every_2s.next_after(t - 1), Some(t));
        let daily = schedule("30 2 * * *", "UTC");
        assert_eq!(daily.next_after(t), Some(utc_ms(2026, 1, 1, 2, 30, 0)));
    }

    #[test]
    fn due_counts_the_window_and_keeps_the_latest() {
        let every_s = schedule("* * * * * *", "UTC");
        let t = utc_ms(2026, 1, 1, 0, 0, 0);
        let due = every_s.due(t, t + 10_000, 3);
        assert_eq!(due.count, 10);
        assert_eq!(due.latest, vec![t + 8_000, t + 9_000, t + 10_000]);
        assert!(!due.truncated);
        assert_eq!(every_s.due(t, t + 999, 3), Due::default());
        let long = every_s.due(t, t + 200_000_000, 1);
        assert!(long.truncated);
        assert_eq!(long.count, DUE_SEARCH_LIMIT);
        assert_eq!(long.latest, vec![t + DUE_SEARCH_LIMIT as i64 * 1000]);
    }

    /// Europe/Berlin: clocks go 02:00 → 03:00 on 29 March 2026 and 03:00 → 02:00 on 25
    /// October 2026, so 02:30 does not exist on the first day and happens twice on the
    /// second. A daily 02:30 schedule fires once on each.
    #[test]
    fn a_daily_0230_fires_once_across_both_dst_changes() {
        let zone = "Europe/Berlin";
        let daily = schedule("30 2 * * *", zone);
        // Spring forward: the one fire of 29 March is at 03:00 local (01:00 UTC), the
        // first instant after the gap.
        let from = local(zone, 2026, 3, 28, 12, 0);
        let due = daily.due(from, local(zone, 2026, 3, 30, 12, 0), 10);
        assert_eq!(
            due.latest,
            vec![utc_ms(2026, 3, 29, 1, 0, 0), utc_ms(2026, 3, 30, 0, 30, 0)]
        );
        // Fall back: one fire on 25 October, at the first 02:30 (00:30 UTC, CEST);
        // the second 02:30 (01:30 UTC, CET) does not fire.
        let from = local(zone, 2026, 10, 24, 12, 0);
        let due = daily.due(from, local(zone, 2026, 10, 26, 12, 0), 10);
        assert_eq!(
            due.latest,
            vec![
                utc_ms(2026, 10, 25, 0, 30, 0),
                utc_ms(2026, 10, 26, 1, 30, 0)
            ]
        );
    }

    /// New York: 02:00 → 03:00 on 8 March 2026, 02:00 → 01:00 on 1 November 2026. An
    /// every-30-minutes schedule follows real time: it skips the missing hour and fires
    /// on both passes of the repeated one.
    #[test]
    fn an_interval_schedule_follows_real_time_across_dst() {
        let zone = "America/New_York";
        let half_hourly = schedule("0,30 * * * *", zone);
        let spring = half_hourly.due(
            local(zone, 2026, 3, 8, 0, 59),
            local(zone, 2026, 3, 8, 4, 1),
            100,
        );
        // 01:00 01:30 03:00 03:30 04:00 local: 2:00 and 2:30 never happen.
        assert_eq!(spring.count, 5);
        let fall = half_hourly.due(
            local(zone, 2026, 11, 1, 0, 59),
            local(zone, 2026, 11, 1, 2, 1) + 3_600_000,
            100,
        );
        // 01:00 01:30 (EDT) 01:00 01:30 (EST) 02:00 02:30 03:00 local.
        assert_eq!(fall.count, 7, "{:?}", fall.latest);
        let gaps: Vec<i64> = fall.latest.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| *g == 1_800_000), "{gaps:?}");
    }

    #[test]
    fn a_zone_offset_moves_the_instant() {
        let tokyo = schedule("0 9 * * *", "Asia/Tokyo");
        let t = utc_ms(2026, 6, 1, 0, 0, 0);
        // 09:00 JST is 00:00 UTC.
        assert_eq!(tokyo.next_after(t - 1), Some(t));
        assert_eq!(tokyo.next_after(t), Some(t + 86_400_000));
    }

    #[test]
    fn a_schedule_fires_its_specs_jobs() {
        let s = schedule("* * * * *", "UTC");
        let t = utc_ms(2026, 1, 1, 0, 1, 0);
        assert_eq!(s.job(t, t + 5), s.spec().instant_job("s", t, t + 5));
        let manual = s.triggered_job(t);
        let fired = fired_for(&manual).expect("a schedule's job");
        assert_eq!((fired.schedule.as_str(), fired.manual), ("s", true));
    }
}

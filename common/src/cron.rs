//! Cron schedules: what a schedule says ([`ScheduleSpec`]), its checked, compiled form
//! ([`Schedule`]), the instants it is due at, and the job each instant produces.
//!
//! Expressions are parsed and evaluated by `croner` (5 fields, or 6 with seconds first;
//! `@daily` and the other nicknames; `L`, `#`, `W`), in an IANA time zone from
//! `chrono-tz`. Across daylight-saving changes the wall clock decides, the way croner
//! does (see docs/schedules.md, "Time zones and DST"):
//! - a time that a spring-forward gap skips (02:30 on the night clocks go 02:00 → 03:00)
//!   fires once, at the first instant after the gap (03:00 local);
//! - a time that a fall-back repeat shows twice fires once, at its first occurrence,
//!   for a fixed-time schedule (`30 2 * * *`); an interval schedule (`*/15 * * * *`)
//!   fires on both passes, as many times as real time passes.
//!
//! Each (schedule, instant) produces one job whose id and uniqueness key are computed
//! from the schedule's name and the instant ([`instant_job_id`], [`instant_unique_key`]),
//! so the same instant always means the same job, and the job tells which instant it
//! was fired for ([`fired_for`]).

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::job::{Job, JobId, Priority};
use crate::limits::humantime_serde_compat as hs;

/// What to do with instants that passed while no scheduler could fire them (no
/// scheduler running, a failover, a deploy): instants more than the schedule's `grace`
/// late when first seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedPolicy {
    /// Fire none of them; each is logged and counted as `skipped`.
    Skip,
    /// Fire once, for the most recent of them; the others are counted as `coalesced`.
    /// On-time instants after it fire as usual.
    #[default]
    Latest,
    /// Fire each of them, oldest first, at most `max_catch_up` (the most recent ones);
    /// older ones are counted as `dropped`.
    All,
}

impl MissedPolicy {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Latest => "latest",
            Self::All => "all",
        }
    }
}

/// What to do when an instant comes while the job of the schedule's previous fire has
/// not finished (completed, dead or cancelled).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// Fire anyway: runs may overlap.
    #[default]
    Allow,
    /// Do not fire for this instant; logged and counted as `overlap_skipped`.
    Skip,
    /// Fire for this instant once the previous run finishes. At most one fire waits: a
    /// later instant that comes while one waits takes its place (the earlier is counted
    /// as `coalesced`).
    Queue,
}

impl OverlapPolicy {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Skip => "skip",
            Self::Queue => "queue",
        }
    }
}

/// A schedule as declared: in the config file as `[schedules.<name>]`, or by
/// `jobfleet schedule add`. Stored as JSON in the store, so every scheduler sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// A cron expression: 5 fields (minute first), or 6 with seconds first.
    pub cron: String,
    /// The IANA time zone the expression is read in, e.g. `Europe/Berlin`.
    #[serde(default = "utc")]
    pub timezone: String,
    /// The queue its jobs go to.
    pub queue: String,
    /// The handler that runs its jobs.
    pub kind: String,
    /// The jobs' payload, as JSON (the handler gets its text); none means empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// 0–9, higher first.
    #[serde(default)]
    pub priority: Priority,
    /// Attempts per job before it is dead.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How long one attempt may run.
    #[serde(default = "default_timeout", with = "hs")]
    pub timeout: Duration,
    /// What to do with missed instants.
    #[serde(default)]
    pub missed: MissedPolicy,
    /// With `missed = "all"`: most missed instants fired at once.
    #[serde(default = "default_max_catch_up")]
    pub max_catch_up: u32,
    /// What to do when the previous run has not finished.
    #[serde(default)]
    pub overlap: OverlapPolicy,
    /// How late an instant may be fired and still count as on time; later ones are
    /// missed and follow `missed`.
    #[serde(default = "default_grace", with = "hs")]
    pub grace: Duration,
    /// A disabled schedule is kept but never fires (unlike a pause, it is part of the
    /// declaration).
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn utc() -> String {
    "UTC".into()
}
fn default_max_attempts() -> u32 {
    3
}
fn default_timeout() -> Duration {
    Duration::from_secs(300)
}
/// The default `max_catch_up`.
pub const DEFAULT_MAX_CATCH_UP: u32 = 10;
fn default_max_catch_up() -> u32 {
    DEFAULT_MAX_CATCH_UP
}
/// The default `grace`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);
fn default_grace() -> Duration {
    DEFAULT_GRACE
}
fn yes() -> bool {
    true
}

impl ScheduleSpec {
    /// A spec with every default: UTC, no payload, priority normal, 3 attempts, a
    /// 5-minute timeout, missed `latest` (at most 10 caught up), overlap `allow`, a
    /// 60-second grace, enabled.
    pub fn new(cron: impl Into<String>, queue: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            cron: cron.into(),
            timezone: utc(),
            queue: queue.into(),
            kind: kind.into(),
            payload: None,
            priority: Priority::NORMAL,
            max_attempts: default_max_attempts(),
            timeout: default_timeout(),
            missed: MissedPolicy::default(),
            max_catch_up: DEFAULT_MAX_CATCH_UP,
            overlap: OverlapPolicy::default(),
            grace: DEFAULT_GRACE,
            enabled: true,
        }
    }
}

/// A schedule that breaks a rule: the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidSchedule {
    /// The offending field (`name`, `cron`, `timezone`, …).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidSchedule {
    InvalidSchedule {
        field,
        reason: reason.into(),
    }
}

/// Longest schedule name.
pub const MAX_NAME_LEN: usize = 100;

/// Checks a schedule name: 1–100 letters, digits, `-`, `_` or `.`.
pub fn check_name(name: &str) -> Result<(), InvalidSchedule> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(invalid(
            "name",
            format!("{name:?}: use 1-{MAX_NAME_LEN} letters, digits, - _ or ."),
        ));
    }
    Ok(())
}

/// Parses a cron expression the way schedules read it: 5 fields, or 6 with seconds
/// first; no year field.
pub fn parse_cron(expression: &str) -> Result<Cron, InvalidSchedule> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|e| {
            invalid(
                "cron",
                format!("{expression:?} is not a cron expression: {e}"),
            )
        })
}

/// Parses an IANA time zone name.
pub fn parse_zone(name: &str) -> Result<Tz, InvalidSchedule> {
    Tz::from_str(name).map_err(|_| {
        invalid(
            "timezone",
            format!("{name:?} is not an IANA time zone (e.g. UTC, Europe/Berlin)"),
        )
    })
}

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
    /// Checks `spec` under `name`; the error names the field.
    pub fn new(name: &str, spec: ScheduleSpec) -> Result<Self, InvalidSchedule> {
        check_name(name)?;
        let cron = parse_cron(&spec.cron)?;
        let zone = parse_zone(&spec.timezone)?;
        if spec.queue.is_empty() {
            return Err(invalid("queue", "must not be empty"));
        }
        if spec.kind.is_empty() {
            return Err(invalid("kind", "must not be empty"));
        }
        if !spec.priority.is_valid() {
            return Err(invalid(
                "priority",
                format!("{} is above {}", spec.priority, Priority::MAX),
            ));
        }
        if spec.max_attempts == 0 {
            return Err(invalid("max_attempts", "must be at least 1"));
        }
        if spec.timeout.is_zero() {
            return Err(invalid("timeout", "must be greater than 0"));
        }
        if spec.max_catch_up == 0 {
            return Err(invalid("max_catch_up", "must be at least 1"));
        }
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

    /// The payload's bytes: the JSON text, or empty.
    pub fn payload(&self) -> Bytes {
        match &self.spec.payload {
            None => Bytes::new(),
            Some(value) => Bytes::from(value.to_string()),
        }
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

    /// The job fired for `instant_ms` at `now_ms`: deterministic id and uniqueness key,
    /// the schedule's queue, kind, payload, priority, attempts and timeout.
    pub fn job(&self, instant_ms: i64, now_ms: i64) -> Job {
        let mut job = Job::new(&self.spec.queue, &self.spec.kind, self.payload())
            .with_priority(self.spec.priority)
            .with_max_attempts(self.spec.max_attempts)
            .with_timeout_ms(u64::try_from(self.spec.timeout.as_millis()).unwrap_or(u64::MAX))
            .with_unique_key(instant_unique_key(&self.name, instant_ms));
        job.id = instant_job_id(&self.name, instant_ms);
        job.enqueued_at_ms = now_ms;
        job
    }

    /// A job for a manual `jobfleet schedule trigger` at `now_ms`: a fresh id, and a
    /// uniqueness key that says it was triggered.
    pub fn triggered_job(&self, now_ms: i64) -> Job {
        let mut job = self.job(now_ms, now_ms);
        job.id = JobId::new();
        job.unique_key = Some(format!("{}{}", triggered_prefix(&self.name), job.id));
        job
    }
}

/// The prefix of every uniqueness key of a schedule's jobs.
fn key_prefix(name: &str) -> String {
    format!("cron:{name}:")
}

fn triggered_prefix(name: &str) -> String {
    format!("{}manual:", key_prefix(name))
}

/// The id of the job a schedule fires for an instant: a UUID v7 whose time is the
/// instant and whose other bits hash the name and the instant, so the same (schedule,
/// instant) always gives the same id, and ids still sort by instant.
pub fn instant_job_id(name: &str, instant_ms: i64) -> JobId {
    let digest = Sha256::new()
        .chain_update(b"jobfleet cron\0")
        .chain_update(name.as_bytes())
        .chain_update([0])
        .chain_update(instant_ms.to_be_bytes())
        .finalize();
    let mut bits = [0u8; 10];
    bits.copy_from_slice(&digest[..10]);
    let millis = u64::try_from(instant_ms).unwrap_or(0);
    JobId(uuid::Builder::from_unix_timestamp_millis(millis, &bits).into_uuid())
}

/// The uniqueness key of the job a schedule fires for an instant:
/// `cron:{name}:{instant_ms}`.
pub fn instant_unique_key(name: &str, instant_ms: i64) -> String {
    format!("{}{instant_ms}", key_prefix(name))
}

/// Which schedule fired a job, and for which instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FiredFor {
    /// The schedule's name.
    pub schedule: String,
    /// The instant, Unix ms; for a manual trigger, when it was triggered.
    pub instant_ms: i64,
    /// Fired by `jobfleet schedule trigger`, not by the clock.
    pub manual: bool,
}

impl FiredFor {
    /// What the job's state records say about it (`jobfleet status`), from the moment
    /// it is fired to after it finishes.
    pub fn note(&self) -> String {
        if self.manual {
            format!(
                "triggered by hand from schedule {} at {}",
                self.schedule,
                rfc3339(self.instant_ms)
            )
        } else {
            format!(
                "fired by schedule {} for {}",
                self.schedule,
                rfc3339(self.instant_ms)
            )
        }
    }
}

/// Which schedule and instant a job was fired for, read from its uniqueness key; `None`
/// for a job no schedule fired.
pub fn fired_for(job: &Job) -> Option<FiredFor> {
    let rest = job.unique_key.as_deref()?.strip_prefix("cron:")?;
    let (schedule, tail) = rest.split_once(':')?;
    check_name(schedule).ok()?;
    if let Some(id) = tail.strip_prefix("manual:") {
        let id = JobId::from_str(id).ok()?;
        let ms = id.0.get_timestamp()?.to_unix();
        let instant_ms = i64::try_from(ms.0).ok()? * 1000 + i64::from(ms.1 / 1_000_000);
        return Some(FiredFor {
            schedule: schedule.to_string(),
            instant_ms,
            manual: true,
        });
    }
    Some(FiredFor {
        schedule: schedule.to_string(),
        instant_ms: tail.parse().ok()?,
        manual: false,
    })
}

/// An instant as RFC 3339 text in UTC, for logs and tables.
pub fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

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
    fn five_and_six_fields_parse_and_bad_ones_name_the_field() {
        assert!(parse_cron("*/5 * * * *").is_ok());
        assert!(parse_cron("*/2 * * * * *").is_ok());
        assert!(parse_cron("@daily").is_ok());
        for bad in ["", "* * *", "61 * * * *", "* * * * * * 2030", "every day"] {
            let e = parse_cron(bad).expect_err(bad);
            assert_eq!(e.field, "cron", "{bad}");
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
        let e = parse_zone("Mars/Olympus").expect_err("no such zone");
        assert_eq!(e.field, "timezone");
        assert!(e.to_string().contains("Mars/Olympus"), "{e}");
        for bad in ["", "a:b", "with space", &"x".repeat(101)] {
            assert_eq!(check_name(bad).expect_err(bad).field, "name");
        }
        let mut spec = ScheduleSpec::new("* * * * *", "", "echo");
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
    fn an_instant_always_gives_the_same_job() {
        let s = schedule("* * * * *", "UTC");
        let t = utc_ms(2026, 1, 1, 0, 1, 0);
        let a = s.job(t, t + 5);
        let b = s.job(t, t + 900);
        assert_eq!(a.id, b.id);
        assert_eq!(a.unique_key, b.unique_key);
        assert_ne!(a.id, s.job(t + 60_000, t).id);
        assert_eq!(a.id.0.get_version_num(), 7);
        let (secs, _) = a.id.0.get_timestamp().expect("v7").to_unix();
        assert_eq!(secs as i64 * 1000, t);
        let mut other = ScheduleSpec::new("* * * * *", "q", "echo");
        other.timezone = "UTC".into();
        let other = Schedule::new("other", other).expect("valid");
        assert_ne!(a.id, other.job(t, t).id);
        assert_eq!(
            fired_for(&a),
            Some(FiredFor {
                schedule: "s".into(),
                instant_ms: t,
                manual: false
            })
        );
        let manual = s.triggered_job(t + 1_234);
        assert_ne!(manual.id, a.id);
        let fired = fired_for(&manual).expect("fired");
        assert!(fired.manual);
        assert_eq!(
            fired.instant_ms,
            manual
                .id
                .0
                .get_timestamp()
                .map(|ts| {
                    let (s, n) = ts.to_unix();
                    s as i64 * 1000 + i64::from(n / 1_000_000)
                })
                .expect("ts")
        );
        assert_eq!(fired_for(&Job::new("q", "k", "")), None);
    }

    #[test]
    fn specs_read_from_toml_with_defaults() {
        let spec: ScheduleSpec = toml::from_str(
            r#"cron = "0 3 * * *"
            queue = "reports"
            kind = "echo"
            payload = { report = "daily" }
            missed = "all"
            overlap = "queue"
            grace = "5m""#,
        )
        .expect("parses");
        assert_eq!(spec.timezone, "UTC");
        assert_eq!(spec.missed, MissedPolicy::All);
        assert_eq!(spec.overlap, OverlapPolicy::Queue);
        assert_eq!(spec.grace, Duration::from_secs(300));
        assert_eq!(spec.max_catch_up, DEFAULT_MAX_CATCH_UP);
        let s = Schedule::new("daily-report", spec.clone()).expect("valid");
        assert_eq!(&s.payload()[..], br#"{"report":"daily"}"#);
        let back: ScheduleSpec =
            toml::from_str(&toml::to_string(&spec).expect("writes")).expect("reads");
        assert_eq!(back, spec);
        let e = toml::from_str::<ScheduleSpec>(
            "cron = \"* * * * *\"\nqueue = \"q\"\nkind = \"k\"\nmissed = \"some\"",
        )
        .expect_err("unknown policy");
        assert!(e.to_string().contains("missed"), "{e}");
    }
}

//! Cron schedules as data: what a schedule says ([`ScheduleSpec`]) and its policies, the
//! checks that need no cron parser, and the job each instant produces. The store keeps
//! specs as they are, and the wire, the config file and the operator commands carry them.
//!
//! Reading the expression (when a schedule is due, in which time zone) is
//! `jobfleet-cron`'s: it parses with `croner`, which the crates that only store, show or
//! carry a schedule do not need to build. A spec passes [`ScheduleSpec::check`] here and
//! is compiled there; both name the offending field in an [`InvalidSchedule`].
//!
//! Each (schedule, instant) produces one job whose id and uniqueness key are computed
//! from the schedule's name and the instant ([`instant_job_id`], [`instant_unique_key`]),
//! so the same instant always means the same job, and the job tells which instant it
//! was fired for ([`fired_for`]).

use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
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

    /// Checks `name` and every field but the expression and the time zone (those need
    /// a cron parser: `jobfleet_cron::Schedule::new` checks them); the error names the
    /// field.
    pub fn check(&self, name: &str) -> Result<(), InvalidSchedule> {
        check_name(name)?;
        self.check_fields()
    }

    /// Checks the fields a cron parser is not needed for: queue, kind, priority,
    /// attempts, timeout, catch-up.
    pub fn check_fields(&self) -> Result<(), InvalidSchedule> {
        if self.queue.is_empty() {
            return Err(invalid("queue", "must not be empty"));
        }
        if self.kind.is_empty() {
            return Err(invalid("kind", "must not be empty"));
        }
        if !self.priority.is_valid() {
            return Err(invalid(
                "priority",
                format!("{} is above {}", self.priority, Priority::MAX),
            ));
        }
        if self.max_attempts == 0 {
            return Err(invalid("max_attempts", "must be at least 1"));
        }
        if self.timeout.is_zero() {
            return Err(invalid("timeout", "must be greater than 0"));
        }
        if self.max_catch_up == 0 {
            return Err(invalid("max_catch_up", "must be at least 1"));
        }
        Ok(())
    }

    /// The payload's bytes: the JSON text, or empty.
    pub fn payload(&self) -> Bytes {
        match &self.payload {
            None => Bytes::new(),
            Some(value) => Bytes::from(value.to_string()),
        }
    }

    /// The job schedule `name` fires for `instant_ms` at `now_ms`: deterministic id and
    /// uniqueness key, the spec's queue, kind, payload, priority, attempts and timeout.
    pub fn instant_job(&self, name: &str, instant_ms: i64, now_ms: i64) -> Job {
        let mut job = Job::new(&self.queue, &self.kind, self.payload())
            .with_priority(self.priority)
            .with_max_attempts(self.max_attempts)
            .with_timeout_ms(u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX))
            .with_unique_key(instant_unique_key(name, instant_ms));
        job.id = instant_job_id(name, instant_ms);
        job.enqueued_at_ms = now_ms;
        job
    }

    /// A job of schedule `name` for a manual `jobfleet schedule trigger` at `now_ms`: a
    /// fresh id, and a uniqueness key that says it was triggered.
    pub fn triggered_job(&self, name: &str, now_ms: i64) -> Job {
        let mut job = self.instant_job(name, now_ms, now_ms);
        job.id = JobId::new();
        job.unique_key = Some(format!("{}{}", triggered_prefix(name), job.id));
        job
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

impl InvalidSchedule {
    /// `field` is wrong for `reason`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidSchedule {
    InvalidSchedule::new(field, reason)
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

    fn utc_ms(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("date")
            .timestamp_millis()
    }

    #[test]
    fn checks_without_a_parser_name_the_field() {
        for bad in ["", "a:b", "with space", &"x".repeat(101)] {
            assert_eq!(check_name(bad).expect_err(bad).field, "name");
        }
        let mut spec = ScheduleSpec::new("* * * * *", "", "echo");
        assert_eq!(spec.check("s").expect_err("no queue").field, "queue");
        assert_eq!(spec.check("a b").expect_err("bad name").field, "name");
        spec.queue = "q".into();
        assert_eq!(spec.check("s"), Ok(()));
        spec.max_catch_up = 0;
        assert_eq!(spec.check("s").expect_err("").field, "max_catch_up");
        // The expression is not read here: `jobfleet_cron` refuses it.
        assert_eq!(ScheduleSpec::new("not cron", "q", "k").check("s"), Ok(()));
    }

    #[test]
    fn an_instant_always_gives_the_same_job() {
        let s = ScheduleSpec::new("* * * * *", "q", "echo");
        let t = utc_ms(2026, 1, 1, 0, 1, 0);
        let a = s.instant_job("s", t, t + 5);
        let b = s.instant_job("s", t, t + 900);
        assert_eq!(a.id, b.id);
        assert_eq!(a.unique_key, b.unique_key);
        assert_ne!(a.id, s.instant_job("s", t + 60_000, t).id);
        assert_eq!(a.id.0.get_version_num(), 7);
        let (secs, _) = a.id.0.get_timestamp().expect("v7").to_unix();
        assert_eq!(secs as i64 * 1000, t);
        assert_ne!(a.id, s.instant_job("other", t, t).id);
        assert_eq!(
            fired_for(&a),
            Some(FiredFor {
                schedule: "s".into(),
                instant_ms: t,
                manual: false
            })
        );
        let manual = s.triggered_job("s", t + 1_234);
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
        assert_eq!(spec.check("daily-report"), Ok(()));
        assert_eq!(&spec.payload()[..], br#"{"report":"daily"}"#);
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

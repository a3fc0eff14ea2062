//! Limits on what a job may be, and the check every producer runs before publishing.
//!
//! The same check runs again when a worker receives a job, because producers in other
//! languages skip it: an invalid job on a queue goes to the dead route, named.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::job::Job;

/// Configurable bounds on a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest payload, in bytes.
    pub max_payload_bytes: usize,
    /// Largest `max_attempts` a job may ask for.
    pub max_attempts: u32,
    /// Furthest into the future `run_at` may be.
    #[serde(with = "humantime_serde_compat")]
    pub max_delay: Duration,
    /// Longest per-attempt timeout.
    #[serde(with = "humantime_serde_compat")]
    pub max_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 1024 * 1024,
            max_attempts: 100,
            max_delay: Duration::from_secs(365 * 24 * 3600),
            max_timeout: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Room for the envelope around the payload when checking a raw message's size.
pub const ENVELOPE_ALLOWANCE: usize = 64 * 1024;

/// A job that breaks a rule, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid job: {field}: {reason}")]
pub struct InvalidJob {
    /// The offending field, as named on the wire.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidJob {
    InvalidJob {
        field,
        reason: reason.into(),
    }
}

/// Longest queue, kind, lock, uniqueness and ordering key, in bytes.
pub const MAX_NAME_BYTES: usize = 200;

fn check_name(field: &'static str, value: &str) -> Result<(), InvalidJob> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(invalid(
            field,
            format!("{} bytes, at most {MAX_NAME_BYTES}", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

impl Limits {
    /// How long a uniqueness key may live: past the furthest allowed due time by a day,
    /// so a release that never happens (a crashed worker) cannot block the key forever.
    pub fn unique_key_ttl_ms(&self) -> u64 {
        const SLACK: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
        let ttl = self.max_delay.saturating_add(SLACK);
        u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Checks `job` against the limits at `now_ms`.
    pub fn validate(&self, job: &Job, now_ms: i64) -> Result<(), InvalidJob> {
        check_name("queue", &job.queue)?;
        if !job
            .queue
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(invalid("queue", "use letters, digits and - _ . : only"));
        }
        check_name("kind", &job.kind)?;
        if !job.priority.is_valid() {
            return Err(invalid(
                "priority",
                format!("{} is not 0-9", job.priority.level()),
            ));
        }
        if job.payload.len() > self.max_payload_bytes {
            return Err(invalid(
                "payload",
                format!(
                    "{} bytes, over the limit of {}",
                    job.payload.len(),
                    self.max_payload_bytes
                ),
            ));
        }
        if job.max_attempts == 0 || job.max_attempts > self.max_attempts {
            return Err(invalid(
                "max_attempts",
                format!(
                    "{} is not between 1 and {}",
                    job.max_attempts, self.max_attempts
                ),
            ));
        }
        if job.attempt == 0 || job.attempt > job.max_attempts {
            return Err(invalid(
                "attempt",
                format!("{} is not between 1 and max_attempts", job.attempt),
            ));
        }
        if job.timeout_ms == 0 {
            return Err(invalid("timeout_ms", "must be greater than 0"));
        }
        if job.timeout_ms > self.max_timeout.as_millis() as u64 {
            return Err(invalid(
                "timeout_ms",
                format!("over the limit of {:?}", self.max_timeout),
            ));
        }
        if let Some(run_at) = job.run_at_ms {
            let max = now_ms.saturating_add(self.max_delay.as_millis() as i64);
            if run_at > max {
                return Err(invalid(
                    "run_at_ms",
                    format!(
                        "{} ms ahead, over max_delay {:?}",
                        run_at - now_ms,
                        self.max_delay
                    ),
                ));
            }
        }
        if let Some(lock) = &job.lock {
            check_name("lock.key", &lock.key)?;
        }
        if let Some(key) = &job.unique_key {
            check_name("unique_key", key)?;
        }
        if let Some(key) = &job.ordering_key {
            check_name("ordering_key", key)?;
        }
        if let Some(b) = &job.backoff {
            if b.base_ms == 0 || b.cap_ms < b.base_ms {
                return Err(invalid("backoff", "need 0 < base_ms <= cap_ms"));
            }
        }
        if let Some(trace) = &job.trace {
            crate::trace::check(trace).map_err(|(field, reason)| invalid(field, reason))?;
        }
        Ok(())
    }
}

/// Durations in config files as humantime strings (`"30s"`, `"5m"`, `"1h 30m"`).
pub mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes a duration as humantime text.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Reads humantime text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!("{text:?} is not a duration like \"30s\" ({e})"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Priority;

    fn field_of(job: &Job) -> &'static str {
        Limits::default()
            .validate(job, 0)
            .expect_err("should be invalid")
            .field
    }

    #[test]
    fn each_rule_names_its_field() {
        let ok = Job::new("q", "k", "{}");
        assert_eq!(Limits::default().validate(&ok, 0), Ok(()));
        assert_eq!(
            field_of(&Job {
                queue: String::new(),
                ..ok.clone()
            }),
            "queue"
        );
        assert_eq!(
            field_of(&Job {
                queue: "a b".into(),
                ..ok.clone()
            }),
            "queue"
        );
        assert_eq!(
            field_of(&Job {
                kind: " ".into(),
                ..ok.clone()
            }),
            "kind"
        );
        assert_eq!(
            field_of(&Job {
                priority: Priority::out_of_range(10),
                ..ok.clone()
            }),
            "priority"
        );
        let big = bytes::Bytes::from(vec![0u8; 1024 * 1024 + 1]);
        assert_eq!(
            field_of(&Job {
                payload: big,
                ..ok.clone()
            }),
            "payload"
        );
        assert_eq!(
            field_of(&Job {
                max_attempts: 0,
                ..ok.clone()
            }),
            "max_attempts"
        );
        assert_eq!(
            field_of(&Job {
                timeout_ms: 0,
                ..ok.clone()
            }),
            "timeout_ms"
        );
        assert_eq!(
            field_of(&Job {
                run_at_ms: Some(i64::MAX),
                ..ok.clone()
            }),
            "run_at_ms"
        );
    }
}

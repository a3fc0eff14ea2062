//! `[redis]`: how jobfleet treats the Redis store's durability. Redis keeps the delayed
//! set, retries, dead letters, job records, completion markers and uniqueness keys; a
//! server that restarts without persistence loses all of them, so by default jobfleet
//! refuses to start on one (docs/architecture.md, "Store durability").

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{err, ConfigError};
use crate::limits::humantime_serde_compat as hs;

/// The shortest `redis.retention` accepted: records must outlive any job's own timers.
pub const MIN_RETENTION: Duration = Duration::from_secs(3600);

/// Redis store settings, used when `store` is `redis://…`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Refuse to start when the server has no append-only file (AOF). Set it to `false`
    /// only to accept that a Redis restart loses every delayed job, retry, dead letter,
    /// record, completion marker and uniqueness key (tests, throw-away setups).
    pub require_persistence: bool,
    /// How long job records, completion markers and cancel requests are kept.
    #[serde(with = "hs")]
    pub retention: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            require_persistence: true,
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl RedisConfig {
    /// Refuses values that parse but make no sense.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.retention < MIN_RETENTION {
            return Err(err(
                "redis.retention",
                format!(
                    "{} is too short: must be at least 1h, or completion markers expire \
                     while their jobs can still be redelivered",
                    humantime::format_duration(self.retention)
                ),
            ));
        }
        Ok(())
    }
}

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

/// The default `redis.replica_timeout`: far above a healthy replica's round trip, well
/// below the lease and lock TTLs a waiting write holds up.
pub const DEFAULT_REPLICA_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest `redis.replica_timeout` accepted: a `WAIT` blocks the process's shared
/// connection, so every other store call waits behind it.
pub const MAX_REPLICA_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// With replicas: how many must acknowledge a write that must survive a failover (a
    /// delayed job taken in, a completion marker, a lease taken, a dead letter filed, a
    /// cron instant claimed) before it counts as done (`WAIT`). 0 (the default) waits for
    /// none: a failover loses what had not reached the promoted replica.
    pub min_replicas: u32,
    /// How long such a write waits for `min_replicas` acknowledgements before it fails
    /// (retryably).
    #[serde(with = "hs")]
    pub replica_timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            require_persistence: true,
            retention: Duration::from_secs(7 * 24 * 3600),
            min_replicas: 0,
            replica_timeout: DEFAULT_REPLICA_TIMEOUT,
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
        let timeout = self.replica_timeout;
        if timeout.is_zero() || timeout > MAX_REPLICA_TIMEOUT {
            return Err(err(
                "redis.replica_timeout",
                format!(
                    "{} is out of range: must be more than 0 and at most 10s (a write waiting \
                     for replicas holds up the process's other store calls)",
                    humantime::format_duration(timeout)
                ),
            ));
        }
        Ok(())
    }
}

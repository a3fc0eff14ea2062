//! The Redis store: every [`Store`] capability on one Redis server, atomic where it matters
//! through Lua scripts, one round trip per call.
//!
//! # Key layout
//!
//! Every key starts with the configured namespace (`ns` below) and a colon, so fleets can
//! share a server. Job ids are written as hyphenated UUIDs.
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `ns:delayed:waiting` | ZSET | job id → due time (Unix ms) |
//! | `ns:delayed:releasing` | ZSET | claimed job id → lease expiry (Unix ms) |
//! | `ns:delayed:jobs` | HASH | job id → its queue, a newline, its encoded job |
//! | `ns:delayed:due` | HASH | job id → due time, kept while the job is claimed |
//! | `ns:delayed:body`, `ns:delayed:queue` | HASH | job id → encoded job, queue: the layout of jobfleet before 2026-12-07, read and drained, never written |
//! | `ns:delayed:counts` | HASH | queue → waiting + claimed jobs, kept by the scripts |
//! | `ns:lock:{key}:x` | STRING | exclusive holder, `PX` = the lock's TTL |
//! | `ns:lock:{key}:s` | ZSET | shared holder → expiry (Redis server ms) |
//! | `ns:fence:{key}` | STRING | last fencing token issued for the lock (never expires) |
//! | `ns:fenced:{resource}` | HASH | `token`, `value` of the last accepted fenced write |
//! | `ns:job:{id}` | STRING | the [`JobRecord`](jobfleet_common::store::JobRecord) as JSON, `redis.retention`; none for a job in the delayed set whose record would say only `scheduled` (it is read from `delayed:jobs`) |
//! | `ns:done:{id}` | STRING | completion marker, `redis.retention` |
//! | `ns:completed` | HASH | queue → jobs completed, kept by the completion script (never expires) |
//! | `ns:cancel:{id}` | STRING | cancel request, `redis.retention` |
//! | `ns:lease:{id}` | HASH | execution lease: `holder`, `until` (server ms), `token`, `crashes`; `redis.retention` |
//! | `ns:queues` | SET | every queue producers published to and workers consumed |
//! | `ns:waiting:{queue}` | ZSET | id of a job whose record says `pending` → when it became so (Unix ms); the oldest is the queue's oldest waiting job |
//! | `ns:unique:{key}` | STRING | id of the job holding a uniqueness key, `PX` = its TTL |
//! | `ns:dead:index` | ZSET | dead letter id → died at (Unix ms) |
//! | `ns:dead:letters` | HASH | id → the letter's [`DeadSummary`](jobfleet_common::store::DeadSummary) as JSON (letters filed before bodies were kept apart: the whole `DeadLetter`, body inline) |
//! | `ns:dead:bodies` | HASH | id → the letter's body, raw bytes |
//! | `ns:dead:queue` | HASH | id → queue (`?` if unknown), to keep counts on replace |
//! | `ns:dead:counts` | HASH | queue → dead letters, kept by the scripts |
//! | `ns:workers` | ZSET | worker id → heartbeat expiry (Redis server ms) |
//! | `ns:worker:{id}` | STRING | the [`WorkerInfo`](jobfleet_common::store::WorkerInfo) as JSON, `PX` = TTL |
//! | `ns:sentinel` | STRING | a value unique to its creation (never expires); see `integrity` |
//! | `ns:incident:data_loss` | STRING | the open data-loss incident as JSON (never expires) |
//! | `ns:pipeline:{id}` | STRING | the pipeline's declaration as JSON, `redis.retention` |
//! | `ns:pipeline:{id}:step:{n}` | HASH | child → its result as JSON, `redis.retention` |
//! | `ns:cron:defs` | HASH | schedule name → its declaration (spec and source) as JSON |
//! | `ns:cron:state:{name}` | HASH | `watermark`, `paused`, `last_instant`, `last_fired_at`, `last_job`, `owed`, `fires`, `created_at`, `updated_at` (server ms) |
//!
//! Lock expiry is judged by the Redis server's clock (`TIME` inside the scripts), never by
//! a client's, so holders on machines with skewed clocks still exclude each other. The
//! fence counters never expire: a token must stay greater than every token before it.
//! Scripts touch only keys passed as `KEYS`, except the heartbeat listing, which reads
//! `ns:worker:*` keys it derives from the ids it finds (this store targets a single
//! server, not a cluster).
//!
//! # Layout
//!
//! - this file: [`RedisStore`], connecting and error mapping.
//! - `keys`: key names (`Keys` for the store, functions for the keys tests and
//!   operators' tools read).
//! - `persistence`: the start-up check of the server's persistence (`redis.require_persistence`).
//! - `scripts`: the Lua scripts.
//! - `delayed`, `locks`, `states`, `executions`, `dead`, `heartbeats`, `schedules`,
//!   `pipelines`: one capability trait each.
//! - `admin`: the [`Store`](jobfleet_common::store::Store) trait's own methods (its name,
//!   deleting a namespace).
//! - `integrity`: the sentinel that detects a server that lost its data.
//! - `test_store` (tests only): a store of the test's own on the shared test Redis.

mod admin;
mod dead;
mod delayed;
mod executions;
mod heartbeats;
mod integrity;
pub mod keys;
mod locks;
mod persistence;
mod pipelines;
mod schedules;
mod scripts;
mod states;
#[cfg(test)]
mod test_store;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, ServerErrorKind};

use jobfleet_common::clock::SharedClock;
use jobfleet_common::config::RedisConfig;
use jobfleet_common::job::JobId;
use jobfleet_common::redact::redact;
use jobfleet_common::store::{StoreError, StoreResult};

use keys::Keys;

/// How long one connection attempt may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a reply may take; scripts are short, so a longer wait means trouble.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Reconnect attempts (exponential backoff from 100 ms) before a call fails; the caller's
/// own retry takes over after that.
const RECONNECT_RETRIES: usize = 4;

/// The Redis store. Cheap to clone: clones share one multiplexed, self-reconnecting
/// connection.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    keys: Keys,
    clock: SharedClock,
    /// The `[redis]` settings this store was connected with.
    settings: RedisConfig,
    /// The sentinel value this process saw last (shared by clones); see `integrity`.
    sentinel: Arc<tokio::sync::Mutex<String>>,
}

/// Why [`RedisStore::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisConnectError {
    /// The server could not be reached or refused us; [`StoreError::is_retryable`] says
    /// whether trying again can help.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server keeps no append-only file and `redis.require_persistence` is on:
    /// retrying will not help until the server or the configuration changes.
    #[error("config key `redis.require_persistence`: {0}")]
    NotDurable(String),
}

impl RedisConnectError {
    /// Whether connecting again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::NotDurable(_) => false,
        }
    }
}

impl RedisStore {
    /// Connects to the server at `url` (`redis://` or `rediss://`) and keeps every key under
    /// `namespace`. Lock and heartbeat expiry follow the server's clock; `clock` stamps
    /// what the store writes of its own (the sentinel's creation).
    ///
    /// Checks the server's persistence first: without an append-only file it refuses
    /// ([`RedisConnectError::NotDurable`]) unless `settings.require_persistence` is off.
    /// Then arms the data-loss sentinel (`ns:sentinel`). Errors never contain the URL's
    /// password.
    pub async fn connect(
        url: &str,
        namespace: &str,
        settings: &RedisConfig,
        clock: SharedClock,
    ) -> Result<Self, RedisConnectError> {
        if namespace.is_empty() || namespace.contains(char::is_whitespace) {
            return Err(StoreError::Invalid(format!(
                "namespace {namespace:?} must be non-empty and without whitespace"
            ))
            .into());
        }
        let unreachable = |e: RedisError| {
            let reason = scrub_password(url, &e.to_string());
            match to_store_error(e) {
                StoreError::Connection(_) => {
                    StoreError::Connection(format!("{}: {reason}", redact(url)))
                }
                _ => StoreError::Invalid(format!("{}: {reason}", redact(url))),
            }
        };
        let client = redis::Client::open(url).map_err(unreachable)?;
        // One attempt first, bounded: the manager below retries with backoff (right for a
        // blip later), which would make a wrong address or a `rediss://` URL aimed at a
        // plain server take half a minute to fail at start-up.
        let tls_hint = if url.starts_with("rediss://") {
            " (a rediss:// URL needs a server that speaks TLS on that port)"
        } else {
            ""
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection()).await
        {
            Ok(Ok(_probe)) => {}
            Ok(Err(e)) => {
                return Err(match unreachable(e) {
                    // The server speaks TLS; its certificate is what failed.
                    StoreError::Connection(m) if m.contains("certificate") => {
                        StoreError::Connection(format!("{m}{UNTRUSTED_HINT}"))
                    }
                    StoreError::Connection(m) => StoreError::Connection(format!("{m}{tls_hint}")),
                    other => other,
                }
                .into());
            }
            Err(_) => {
                return Err(StoreError::Connection(format!(
                    "{}: no answer within {CONNECT_TIMEOUT:?}{tls_hint}",
                    redact(url)
                ))
                .into());
            }
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES);
        let mut conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unreachable)?;
        persistence::check(&mut conn, url, settings).await?;
        let mut store = Self {
            conn,
            keys: Keys::new(namespace),
            clock,
            settings: settings.clone(),
            sentinel: Arc::default(),
        };
        let sentinel = store.arm_sentinel().await.map_err(|e| match e {
            StoreError::Connection(reason) => StoreError::Connection(scrub_password(url, &reason)),
            other => other,
        })?;
        store.sentinel = Arc::new(tokio::sync::Mutex::new(sentinel));
        Ok(store)
    }

    /// The `[redis]` settings this store was connected with.
    pub fn settings(&self) -> &RedisConfig {
        &self.settings
    }

    /// A handle on the shared connection for one call (a clone, as commands need `&mut`).
    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// A per-queue count hash (kept by the scripts that add and remove entries) as counts;
    /// a negative count, which only a hand edit could make, is skipped.
    async fn queue_counts(&self, key: String) -> StoreResult<BTreeMap<String, u64>> {
        let counts: BTreeMap<String, i64> = redis::AsyncCommands::hgetall(&mut self.conn(), key)
            .await
            .store()?;
        Ok(counts
            .into_iter()
            .filter_map(|(q, n)| u64::try_from(n).ok().map(|n| (q, n)))
            .collect())
    }
}

/// Added to a `rediss://` connection refused for the server's certificate.
const UNTRUSTED_HINT: &str = " (the server's certificate is not trusted here: add its CA to \
     the system's trust store, or point SSL_CERT_FILE at a file that holds it)";

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.keys.namespace())
            .finish()
    }
}

/// Maps a client error to whether retrying can help: transport trouble and a server that
/// is loading or failing over can pass; a value of the wrong type is corrupt data; the
/// rest (refused credentials included) is a bad request or configuration.
fn to_store_error(e: RedisError) -> StoreError {
    let transient = match e.kind() {
        ErrorKind::AuthenticationFailed => false,
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::ReadOnly,
        ) => true,
        _ => {
            e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.is_unrecoverable_error()
        }
    };
    if transient {
        StoreError::Connection(e.to_string())
    } else if e.kind() == ErrorKind::UnexpectedReturnType || e.code() == Some("WRONGTYPE") {
        StoreError::Corrupt(e.to_string())
    } else {
        StoreError::Invalid(e.to_string())
    }
}

/// `?` on a Redis call inside a store method: `call.await.store()?`. (A `From` impl is
/// not allowed here: both types are foreign to this crate.)
pub(crate) trait IntoStore<T> {
    fn store(self) -> StoreResult<T>;
}

impl<T> IntoStore<T> for Result<T, RedisError> {
    fn store(self) -> StoreResult<T> {
        self.map_err(to_store_error)
    }
}

/// A stored JSON document that does not decode as `T`.
fn decode_json<T: serde::de::DeserializeOwned>(what: &str, json: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(json).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// A JSON document for storing; our records always serialise, but say so if one does not.
fn encode_json<T: serde::Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(format!("{what}: {e}")))
}

/// A stored job id that does not parse is corrupt data.
fn parse_id(text: &str) -> Result<JobId, StoreError> {
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("job id {text:?}: {e}")))
}

/// A TTL for `PX`, which refuses 0: a zero TTL becomes the shortest one.
fn px(ttl_ms: u64) -> u64 {
    ttl_ms.max(1)
}

/// `message` with the URL's password (if any) masked, in case the client echoed it.
fn scrub_password(url: &str, message: &str) -> String {
    let password = url
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
        .and_then(|authority| authority.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => message.replace(p, "***"),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use redis::AsyncCommands;

    use super::*;
    use jobfleet_common::clock;

    #[test]
    fn scrub_masks_only_the_password() {
        let url = "redis://user:s3cret@h:6379/0";
        assert_eq!(scrub_password(url, "bad s3cret here"), "bad *** here");
        assert_eq!(scrub_password("redis://h:6379", "fine"), "fine");
    }

    #[tokio::test]
    async fn connect_errors_hide_the_password() {
        // Port 1 is never a Redis server: the connection is refused.
        let url = "redis://user:hunter2@127.0.0.1:1/0";
        let err = RedisStore::connect(url, "ns", &test_store::volatile(), clock::system())
            .await
            .expect_err("refused");
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("user:***@127.0.0.1:1"), "{text}");
        assert!(err.is_retryable(), "{err:?}");
    }

    #[tokio::test]
    async fn refused_credentials_are_not_retryable_and_stay_hidden() {
        // A server of the test's own, known to have no password, whatever the shared one has.
        let server = jobfleet_testkit::RedisServer::volatile();
        let url = &format!("redis://:hunter2@127.0.0.1:{}/", server.port);
        let err = RedisStore::connect(url, "ns", &test_store::volatile(), clock::system())
            .await
            .expect_err("no such user");
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!err.is_retryable(), "{err:?}");
    }

    #[tokio::test]
    async fn a_key_of_the_wrong_type_is_corrupt() {
        let t = test_store::TestStore::new().await;
        let _: () = t
            .conn()
            .set(t.keys.key("delayed:counts"), "oops")
            .await
            .expect("set");
        let err = jobfleet_common::store::DelayedSet::delayed_counts(&*t)
            .await
            .expect_err("wrong type");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        t.cleanup().await;
    }

    #[tokio::test]
    async fn empty_namespace_is_refused() {
        let err = RedisStore::connect(
            "redis://127.0.0.1:6379/",
            "",
            &test_store::volatile(),
            clock::system(),
        )
        .await;
        assert!(matches!(
            err,
            Err(RedisConnectError::Store(StoreError::Invalid(_)))
        ));
    }

    #[tokio::test]
    async fn a_tls_url_aimed_at_a_plain_server_fails_fast_and_says_why() {
        let plain = jobfleet_testkit::redis_url();
        let tls = plain.replacen("redis://", "rediss://", 1);
        let started = std::time::Instant::now();
        let err = RedisStore::connect(&tls, "ns", &test_store::volatile(), clock::system())
            .await
            .expect_err("no TLS on the test server");
        // One bounded attempt (5 s at most), not the manager's retries with backoff.
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
        assert!(err.to_string().contains("speaks TLS"), "{err}");
    }
}

//! What the Redis server keeps across its restart: the start-up refusal of a server that
//! keeps no append-only file unless `redis.require_persistence = false` accepts that, and
//! the [`Durability`] roles log as they start and check while they run.
//!
//! Reads `INFO persistence` (always allowed) and `CONFIG GET appendfsync` / `save`
//! (renamed or disabled on many managed services: then "unknown"). The loss window of
//! each setting is the table in docs/architecture.md, "Store durability".

use redis::aio::ConnectionManager;

use super::{scrub_password, RedisConnectError};
use jobfleet_common::config::RedisConfig;
use jobfleet_common::redact::redact;
use jobfleet_common::store::{Durability, StoreError};

/// What the server told us about its persistence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Persistence {
    /// `aof_enabled` from `INFO persistence`; `None` if INFO could not be read.
    aof_enabled: Option<bool>,
    /// `appendfsync` (`always`, `everysec`, `no`); `None` if CONFIG is unavailable.
    appendfsync: Option<String>,
    /// The RDB `save` schedule, `""` for none; `None` if CONFIG is unavailable.
    save: Option<String>,
    /// `rdb_last_save_time` (Unix seconds).
    rdb_last_save_time: Option<i64>,
    /// `rdb_changes_since_last_save`.
    rdb_changes_since_last_save: Option<u64>,
}

impl Persistence {
    /// From the text of `INFO persistence` (`None` if it failed) and the two CONFIG values.
    pub(super) fn parse(
        info: Option<&str>,
        appendfsync: Option<String>,
        save: Option<String>,
    ) -> Self {
        let field = |name: &str| {
            info?.lines().find_map(|line| {
                let (key, value) = line.trim().split_once(':')?;
                (key == name).then(|| value.trim().to_string())
            })
        };
        Self {
            aof_enabled: field("aof_enabled").map(|v| v == "1"),
            appendfsync,
            save,
            rdb_last_save_time: field("rdb_last_save_time").and_then(|v| v.parse().ok()),
            rdb_changes_since_last_save: field("rdb_changes_since_last_save")
                .and_then(|v| v.parse().ok()),
        }
    }

    /// Whether the server keeps an append-only file.
    pub(super) fn has_aof(&self) -> bool {
        self.aof_enabled == Some(true)
    }

    /// What the server has, in one phrase.
    pub(super) fn describe(&self) -> String {
        let unknown = "unknown (CONFIG unavailable)";
        let fsync = self.appendfsync.as_deref().unwrap_or(unknown);
        let save = match self.save.as_deref() {
            None => unknown.to_string(),
            Some("") => "none".to_string(),
            Some(s) => format!("{s:?}"),
        };
        let aof = match self.aof_enabled {
            Some(true) => format!("AOF on (appendfsync {fsync})"),
            Some(false) => "no AOF (appendonly no)".to_string(),
            None => "AOF unknown (INFO persistence unreadable)".to_string(),
        };
        let last = match (self.rdb_last_save_time, self.rdb_changes_since_last_save) {
            (Some(t), Some(n)) => format!(", last RDB snapshot at Unix time {t}, {n} writes since"),
            _ => String::new(),
        };
        format!("{aof}, RDB snapshots {save}{last}")
    }

    /// What a restart (or crash) of the server loses with this setting.
    pub(super) fn loss_window(&self) -> &'static str {
        match (
            self.aof_enabled,
            self.appendfsync.as_deref(),
            self.save.as_deref(),
        ) {
            (Some(true), Some("always"), _) => "none for acknowledged writes",
            (Some(true), Some("everysec"), _) => "up to about 1 s of writes",
            (Some(true), Some("no"), _) => {
                "the writes the OS has not flushed yet: OS-dependent, about 30 s on Linux"
            }
            (Some(true), _, _) => "up to about 1 s of writes (everysec) or more (no)",
            (Some(false), _, Some("")) => "everything: the server keeps nothing across a restart",
            (Some(false), _, Some(_)) => "every write since the last RDB snapshot",
            _ => "unknown: everything, if the server has no snapshots either",
        }
    }
}

/// Asks the server what it keeps. An INFO the server refuses (renamed on a managed
/// service) reads as unknown; one that cannot reach it is the error.
pub(super) async fn read(conn: &mut ConnectionManager) -> Result<Persistence, StoreError> {
    let info: Result<String, _> = redis::cmd("INFO")
        .arg("persistence")
        .query_async(conn)
        .await;
    let info = match info.map_err(super::to_store_error) {
        Ok(text) => Some(text),
        Err(e) if e.is_retryable() => return Err(e),
        Err(e) => {
            tracing::debug!(error = %e, "INFO persistence unavailable");
            None
        }
    };
    let appendfsync = config_get(conn, "appendfsync").await;
    let save = config_get(conn, "save").await;
    Ok(Persistence::parse(info.as_deref(), appendfsync, save))
}

/// Asks the server and refuses one without AOF when `settings` require persistence.
/// Logs nothing: roles log what the store keeps as they start
/// ([`Durability::log_at_start`]), and operator commands stay quiet. Errors name the key
/// and both fixes, never the password.
pub(super) async fn check(
    conn: &mut ConnectionManager,
    url: &str,
    settings: &RedisConfig,
) -> Result<Persistence, RedisConnectError> {
    let found = read(conn).await.map_err(|e| {
        let reason = scrub_password(url, &e.to_string());
        RedisConnectError::Store(StoreError::Connection(format!(
            "{}: INFO persistence: {reason}",
            redact(url)
        )))
    })?;
    if !found.has_aof() && settings.require_persistence {
        let (has, window) = (found.describe(), found.loss_window());
        return Err(RedisConnectError::NotDurable(format!(
            "the Redis at {} has {has}; a restart of it loses {window}, and with it every \
             delayed job, retry, dead letter, job record, completion marker and uniqueness \
             key. Either turn on the append-only file on the server (`appendonly yes` with \
             `appendfsync everysec` or `always`, in redis.conf or live with `CONFIG SET \
             appendonly yes`), or accept the volatility with `redis.require_persistence = \
             false` (JOBFLEET_REDIS__REQUIRE_PERSISTENCE=false)",
            redact(url)
        )));
    }
    Ok(found)
}

impl Persistence {
    /// What the server keeps, as the roles and operators see it.
    pub(super) fn durability(&self) -> Durability {
        let concern = (self.has_aof() && self.appendfsync.as_deref() == Some("no")).then(|| {
            "Redis fsyncs its append-only file only when the OS does (appendfsync no); use \
             everysec or always to bound what a crash loses"
                .to_string()
        });
        Durability {
            persisting: self.has_aof(),
            summary: self.describe(),
            loss_window: self.loss_window().to_string(),
            concern,
        }
    }
}

/// `CONFIG GET name`, or `None` where CONFIG is renamed, disabled or refused.
async fn config_get(conn: &mut ConnectionManager, name: &str) -> Option<String> {
    let reply: Result<Vec<String>, _> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(conn)
        .await;
    match reply {
        Ok(pair) => pair.into_iter().nth(1),
        Err(e) => {
            tracing::debug!(name, error = %e, "CONFIG GET unavailable");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_store::volatile;
    use crate::RedisStore;
    use jobfleet_common::clock;
    use jobfleet_testkit::RedisServer;

    const VOLATILE: &str = "# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:12\r\n\
        rdb_last_save_time:1700000000\r\naof_enabled:0\r\n";
    const AOF: &str = "# Persistence\r\naof_enabled:1\r\n";

    #[test]
    fn windows_follow_the_settings() {
        let p = |info, fsync: Option<&str>, save: Option<&str>| {
            Persistence::parse(info, fsync.map(String::from), save.map(String::from))
        };
        let always = p(Some(AOF), Some("always"), Some(""));
        assert!(always.has_aof());
        assert_eq!(always.loss_window(), "none for acknowledged writes");
        assert!(p(Some(AOF), Some("everysec"), None)
            .loss_window()
            .contains("1 s"));
        assert!(p(Some(AOF), Some("no"), None)
            .loss_window()
            .contains("30 s"));
        let none = p(Some(VOLATILE), Some("everysec"), Some(""));
        assert!(!none.has_aof());
        assert!(none.loss_window().starts_with("everything"));
        assert!(none.describe().contains("no AOF"), "{}", none.describe());
        assert!(
            none.describe().contains("12 writes since"),
            "{}",
            none.describe()
        );
        let rdb = p(Some(VOLATILE), None, Some("3600 1"));
        assert!(rdb.loss_window().contains("last RDB snapshot"));
        let managed = p(Some(VOLATILE), None, None);
        assert!(managed.describe().contains("unknown (CONFIG unavailable)"));
        let blind = p(None, None, None);
        assert!(!blind.has_aof());
        assert!(blind.loss_window().starts_with("unknown"));
    }

    #[tokio::test]
    async fn the_volatile_test_server_is_refused_naming_the_key_unless_accepted() {
        // A server of the test's own: the shared test Redis may keep an append-only file.
        let server = RedisServer::volatile();
        let url = &server.url();
        let connect = |settings: RedisConfig| async move {
            let ns = format!("jobfleet-test-{}", uuid::Uuid::now_v7().simple());
            RedisStore::connect(url, &ns, &settings, clock::system()).await
        };
        let strict = RedisConfig::default();
        let err = connect(strict.clone())
            .await
            .expect_err("a server without AOF is refused by default");
        assert!(matches!(err, RedisConnectError::NotDurable(_)), "{err:?}");
        assert!(!err.is_retryable());
        let text = err.to_string();
        for needle in [
            "config key `redis.require_persistence`",
            "no AOF",
            "loses everything",
            "appendonly yes",
            "redis.require_persistence = false",
            "JOBFLEET_REDIS__REQUIRE_PERSISTENCE=false",
        ] {
            assert!(text.contains(needle), "{needle:?} in: {text}");
        }
        // Accepted with the opt-out.
        let store = connect(volatile())
            .await
            .expect("accepted with the opt-out");
        let accepted = check(&mut store.conn(), url, &volatile()).await;
        assert!(!accepted.expect("accepted").has_aof());
        // The same refusal for a URL with a password names the URL without it.
        let secret = format!("redis://:hunter2@127.0.0.1:{}/", server.port);
        let err = check(&mut store.conn(), &secret, &strict)
            .await
            .expect_err("refused");
        let text = err.to_string();
        let redacted = format!("redis://:***@127.0.0.1:{}/", server.port);
        assert!(text.contains(&redacted), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}

//! Test support: a [`RedisStore`] on the local Redis under a fresh random namespace, and
//! the clean-up that deletes its keys so the shared server does not fill up. The local
//! Redis keeps nothing on disk, so the tests opt out of `redis.require_persistence`.

use std::ops::Deref;

use redis::AsyncCommands;

use super::RedisStore;
use jobfleet_common::clock;
use jobfleet_common::config::RedisConfig;

/// Where the tests expect Redis.
const URL: &str = "redis://127.0.0.1:6379/";

/// `[redis]` settings that accept the shared test server, which has no persistence.
pub(super) fn volatile() -> RedisConfig {
    RedisConfig {
        require_persistence: false,
        ..RedisConfig::default()
    }
}

/// A store whose keys live under a namespace no other test uses.
pub(super) struct TestStore {
    store: RedisStore,
}

impl TestStore {
    /// Connects, or fails the test saying how to start Redis.
    pub async fn new() -> Self {
        Self::with(volatile()).await
    }

    /// Connects with these `[redis]` settings.
    pub async fn with(settings: RedisConfig) -> Self {
        let namespace = format!("jobfleet-test-{}", uuid::Uuid::now_v7().simple());
        match RedisStore::connect(URL, &namespace, &settings, clock::system()).await {
            Ok(store) => Self { store },
            Err(e) => panic!(
                "these tests need Redis at {URL} ({e}); start one with: \
                 redis-server --daemonize yes --port 6379 --save \"\" --appendonly no"
            ),
        }
    }

    /// Deletes every key under the namespace.
    pub async fn cleanup(&self) {
        let pattern = format!("{}*", self.store.keys.prefix);
        let mut conn = self.store.conn();
        let keys: Vec<String> = {
            let mut iter = conn.scan_match::<_, String>(&pattern).await.expect("scan");
            let mut keys = Vec::new();
            while let Some(key) = iter.next_item().await {
                keys.push(key.expect("scan item"));
            }
            keys
        };
        if !keys.is_empty() {
            let _: () = conn.del(keys).await.expect("delete test keys");
        }
    }
}

impl Deref for TestStore {
    type Target = RedisStore;

    fn deref(&self) -> &RedisStore {
        &self.store
    }
}

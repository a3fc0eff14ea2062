//! A [`RedisStore`] of the test's own on the shared test Redis, under a fresh random
//! namespace, and the clean-up that deletes its keys so the shared server does not fill
//! up; for this crate's unit tests, which read the store's private parts (its keys, its
//! connection). The shared Redis may or may not keep an append-only file, so these stores
//! opt out of `redis.require_persistence`: the checks here are about the store, not the
//! server. Everything else a test needs (the URLs, a `redis-server` of its own, the
//! records) is in `jobfleet-testkit`.

use std::ops::Deref;

use jobfleet_common::clock;
use jobfleet_common::config::RedisConfig;
use jobfleet_common::Store as _;
use jobfleet_testkit::{redis_url, HOW_TO_START};

use crate::RedisStore;

/// `[redis]` settings that accept any server, with or without persistence.
pub(crate) fn volatile() -> RedisConfig {
    RedisConfig {
        require_persistence: false,
        ..RedisConfig::default()
    }
}

/// A store whose keys live under a namespace no other test uses.
pub(crate) struct TestStore {
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
        match RedisStore::connect(&redis_url(), &namespace, &settings, clock::system()).await {
            Ok(store) => Self { store },
            Err(e) => panic!(
                "these tests need Redis at {} ({e}): {HOW_TO_START}",
                redis_url()
            ),
        }
    }

    /// Deletes every key under the namespace ([`Store::purge`](jobfleet_common::Store::purge)).
    pub async fn cleanup(&self) {
        self.store.purge().await.expect("delete test keys");
    }
}

impl Deref for TestStore {
    type Target = RedisStore;

    fn deref(&self) -> &RedisStore {
        &self.store
    }
}

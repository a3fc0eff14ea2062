//! The [`Store`] trait's own methods on Redis: its name, and the admin call that deletes
//! a namespace.

use jobfleet_common::store::{Store, StoreResult};

use super::{IntoStore as _, RedisStore};

#[async_trait::async_trait]
impl Store for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    /// Deletes every key under `ns:` (found with `SCAN`, the namespace matched literally,
    /// deleted 1,000 per `DEL`), sentinel included; returns how many `DEL` removed.
    async fn purge(&self) -> StoreResult<u64> {
        const CHUNK: usize = 1000;
        let mut conn = self.conn();
        // The namespace is literal: escape what MATCH would read as a glob.
        let literal: String = self
            .keys
            .prefix
            .chars()
            .flat_map(|c| {
                let escape = matches!(c, '*' | '?' | '[' | ']' | '\\').then_some('\\');
                escape.into_iter().chain([c])
            })
            .collect();
        let pattern = format!("{literal}*");
        let mut found: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(CHUNK)
                .query_async(&mut conn)
                .await
                .store()?;
            found.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        found.sort_unstable();
        found.dedup();
        let mut deleted = 0;
        for chunk in found.chunks(CHUNK) {
            let n: u64 = redis::cmd("DEL")
                .arg(chunk)
                .query_async(&mut conn)
                .await
                .store()?;
            deleted += n;
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::test_store;
    use jobfleet_common::clock;

    #[tokio::test]
    async fn purge_deletes_its_namespace_only_even_with_glob_characters() {
        use jobfleet_common::store::Heartbeats;
        use jobfleet_testkit::fixtures;
        let base = format!("jobfleet-test-{}", uuid::Uuid::now_v7().simple());
        let url = jobfleet_testkit::redis_url();
        let connect = |ns: String| {
            let url = url.clone();
            async move {
                RedisStore::connect(&url, &ns, &test_store::volatile(), clock::system())
                    .await
                    .unwrap_or_else(|e| panic!("{e}: {}", jobfleet_testkit::HOW_TO_START))
            }
        };
        // `base*` as a pattern would match `base-other:…` too.
        let globby = connect(format!("{base}*")).await;
        let other = connect(format!("{base}-other")).await;
        for store in [&globby, &other] {
            store
                .heartbeat(&fixtures::worker("w1"), 60_000)
                .await
                .expect("heartbeat");
        }
        // At least the sentinel, the workers set and one worker key.
        assert!(globby.purge().await.expect("purged") >= 3);
        assert!(globby.workers().await.expect("workers").is_empty());
        assert_eq!(other.workers().await.expect("workers").len(), 1);
        assert!(other.purge().await.expect("purged") >= 3);
    }
}

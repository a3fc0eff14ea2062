//! The Redis dead-letter store: a ZSET of ids by time of death, a hash of letter
//! summaries as JSON, a hash of bodies (raw bytes) apart from them, and per-queue counts
//! kept by the scripts that file and remove letters.
//!
//! Listing walks the ZSET newest first a page at a time and filters in the client, so a
//! filtered listing over a large store reads only as far as it needs to, and it reads
//! summaries only: a page of letters with 1 MiB bodies costs what their reasons cost.
//! Letters filed before bodies were kept apart hold theirs in the summary's JSON; they
//! read back whole from either.

use crate::IntoStore as _;
use std::collections::BTreeMap;

use async_trait::async_trait;

use super::scripts::{DEAD_PAGE, DEAD_PUT, DEAD_REMOVE};
use super::{decode_json, encode_json, RedisStore};
use jobfleet_common::job::JobId;
use jobfleet_common::store::{DeadFilter, DeadLetter, DeadLetters, DeadSummary, StoreResult};

/// The queue counted for letters whose queue is unknown.
const UNKNOWN_QUEUE: &str = "?";
/// Letters read per round trip while listing.
const PAGE: usize = 500;

impl RedisStore {
    /// The dead-letter keys, in the order the scripts take them: index, letters
    /// (summaries), queues, counts, bodies.
    fn dead_keys(&self) -> [String; 5] {
        self.keys.dead()
    }
}

#[async_trait]
impl DeadLetters for RedisStore {
    async fn dead_put(&self, letter: DeadLetter) -> StoreResult<()> {
        let json = encode_json("dead letter", &letter.summary())?;
        let queue = letter.queue.as_deref().unwrap_or(UNKNOWN_QUEUE);
        let _: i64 = DEAD_PUT
            .key(&self.dead_keys()[..])
            .arg(letter.id.to_string())
            .arg(letter.died_at_ms)
            .arg(json)
            .arg(queue)
            .arg(letter.body.as_ref())
            .invoke_async(&mut self.conn())
            .await
            .store()?;
        Ok(())
    }

    async fn dead_list(&self, filter: &DeadFilter, limit: usize) -> StoreResult<Vec<DeadSummary>> {
        let keys = self.dead_keys();
        let mut conn = self.conn();
        let mut found = Vec::new();
        let mut start = 0;
        while found.len() < limit {
            let page: Vec<Option<Vec<u8>>> = DEAD_PAGE
                .key(&keys[..2])
                .arg(start)
                .arg(start + PAGE - 1)
                .invoke_async(&mut conn)
                .await
                .store()?;
            // A letter removed between the two reads of the script is just skipped.
            for json in page.iter().flatten() {
                let letter: DeadSummary = decode_json("dead letter", json)?;
                if filter.matches(&letter) && found.len() < limit {
                    found.push(letter);
                }
            }
            if page.len() < PAGE {
                break;
            }
            start += PAGE;
        }
        Ok(found)
    }

    async fn dead_get(&self, id: JobId) -> StoreResult<Option<DeadLetter>> {
        let [_, letters, _, _, bodies] = self.dead_keys();
        let field = id.to_string();
        // Raw values: a body is any bytes, not text.
        let (json, body): (redis::Value, redis::Value) = redis::pipe()
            .hget(letters, &field)
            .hget(bodies, &field)
            .query_async(&mut self.conn())
            .await
            .store()?;
        let redis::Value::BulkString(json) = json else {
            return Ok(None);
        };
        let mut letter: DeadLetter = decode_json(&format!("dead letter {id}"), &json)?;
        // A letter filed before bodies were kept apart has its body in the JSON.
        if let redis::Value::BulkString(body) = body {
            letter.body = body.into();
        }
        Ok(Some(letter))
    }

    async fn dead_remove(&self, ids: &[JobId]) -> StoreResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = ids.iter().map(JobId::to_string).collect();
        Ok(DEAD_REMOVE
            .key(&self.dead_keys()[..])
            .arg(ids)
            .invoke_async(&mut self.conn())
            .await
            .store()?)
    }

    async fn dead_counts(&self) -> StoreResult<BTreeMap<String, u64>> {
        let [_, _, _, counts, _] = self.dead_keys();
        self.queue_counts(counts).await
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::test_store::TestStore;
    use jobfleet_common::job::ErrorKind;
    use jobfleet_testkit::fixtures::letter;
    use redis::AsyncCommands;

    #[tokio::test]
    async fn a_filtered_listing_pages_past_non_matching_letters() -> StoreResult<()> {
        let t = TestStore::new().await;
        let wanted = letter(Some("rare"), ErrorKind::Failed, 1);
        t.dead_put(wanted.clone()).await?;
        for i in 0..(PAGE as i64 + 20) {
            t.dead_put(letter(Some("common"), ErrorKind::Failed, 100 + i))
                .await?;
        }
        let rare = DeadFilter {
            queue: Some("rare".into()),
            ..DeadFilter::default()
        };
        assert_eq!(t.dead_list(&rare, 5).await?, [wanted.summary()]);
        let all = t.dead_list(&DeadFilter::default(), usize::MAX).await?;
        assert_eq!(all.len(), PAGE + 21);
        assert!(all.windows(2).all(|w| w[0].died_at_ms >= w[1].died_at_ms));
        t.cleanup().await;
        Ok(())
    }

    #[tokio::test]
    async fn bodies_are_kept_apart_from_what_listings_read() -> StoreResult<()> {
        let t = TestStore::new().await;
        let [_, letters, _, _, bodies] = t.dead_keys();
        let mut big = letter(Some("q"), ErrorKind::Oversized, 10);
        big.body = vec![7u8; 100_000].into();
        t.dead_put(big.clone()).await?;
        let summary: Vec<u8> = t.conn().hget(&letters, big.id.to_string()).await.store()?;
        assert!(
            summary.len() < 1_000,
            "the summary holds no body: {} bytes",
            summary.len()
        );
        let listed = t.dead_list(&DeadFilter::default(), 10).await?;
        assert_eq!(listed[0].body_bytes, 100_000);
        assert_eq!(t.dead_get(big.id).await?, Some(big.clone()));
        t.dead_remove(&[big.id]).await?;
        let kept: bool = t
            .conn()
            .hexists(&bodies, big.id.to_string())
            .await
            .store()?;
        assert!(!kept, "the body goes with its letter");

        // A letter filed before bodies were kept apart: body in the JSON, none beside it.
        let old = letter(Some("q"), ErrorKind::Failed, 20);
        let json = encode_json("dead letter", &old)?;
        let _: () = redis::pipe()
            .zadd(&t.dead_keys()[0], old.id.to_string(), old.died_at_ms)
            .hset(&letters, old.id.to_string(), json)
            .query_async(&mut t.conn())
            .await
            .store()?;
        assert_eq!(t.dead_get(old.id).await?, Some(old.clone()));
        let listed = t.dead_list(&DeadFilter::default(), 10).await?;
        assert_eq!(listed[0].id, old.id);
        t.cleanup().await;
        Ok(())
    }
}

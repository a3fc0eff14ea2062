//! Detecting a Redis that lost its data while jobfleet runs, through a sentinel key.
//!
//! `ns:sentinel` never expires and holds a value unique to its creation (creation ms and
//! a random part). [`RedisStore::connect`] creates it if missing (`SET NX`) and the store
//! remembers the value it saw. A check finds it gone (restart without persistence,
//! `FLUSHDB`, eviction) or replaced (gone, then recreated by a process that connected
//! afterwards): that is a loss. The store then logs and counts it (once per detection in
//! this process), records `ns:incident:data_loss` (JSON, no TTL) unless one is open, and
//! adopts the sentinel now in the store (creating one if missing), so a later loss is
//! caught too. Operators clear the incident with `jobfleet queues --ack-data-loss`.
//!
//! A whole fleet restarted together with an emptied Redis cannot tell "lost" from "new":
//! detection needs a process that saw the old sentinel.

use crate::IntoStore as _;
use async_trait::async_trait;
use redis::AsyncCommands;

use super::{decode_json, encode_json, RedisStore};
use jobfleet_common::store::{
    DataLossIncident, Durability, Integrity, IntegrityCheck, StoreResult, StoreTime,
};
use jobfleet_common::telemetry;

/// The sentinel key's suffix under the namespace.
pub(super) const SENTINEL: &str = "sentinel";
/// The incident key's suffix under the namespace.
pub(super) const INCIDENT: &str = "incident:data_loss";

/// A sentinel value unique to its creation at `now_ms`.
pub(super) fn new_sentinel(now_ms: i64) -> String {
    format!("{now_ms}-{}", uuid::Uuid::now_v7().simple())
}

/// When a sentinel value was created, from its prefix.
fn created_ms(sentinel: &str) -> Option<i64> {
    sentinel.split_once('-')?.0.parse().ok()
}

impl RedisStore {
    /// Creates the sentinel unless it exists, and returns the value in the store.
    pub(super) async fn arm_sentinel(&self) -> StoreResult<String> {
        let key = self.keys.key(SENTINEL);
        let fresh = new_sentinel(self.clock.now_ms());
        let mut conn = self.conn();
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&fresh)
            .arg("NX")
            .query_async(&mut conn)
            .await
            .store()?;
        let current: Option<String> = conn.get(&key).await.store()?;
        // Deleted in between: the fresh value is as good as any, and the next check sees
        // the key missing and reports it.
        Ok(current.unwrap_or(fresh))
    }

    /// The incident words for a sentinel `found` where `expected` was.
    fn describe_loss(&self, expected: &str, found: Option<&str>) -> String {
        let key = self.keys.key(SENTINEL);
        let since = created_ms(expected).map_or_else(String::new, |ms| {
            format!(" (it was created at Unix ms {ms})")
        });
        let what = match found {
            None => format!("the sentinel key {key} vanished{since}"),
            Some(_) => format!(
                "the sentinel key {key} was replaced{since}: it vanished and a process that \
                 connected afterwards created a new one"
            ),
        };
        format!(
            "{what}: the server restarted without persistence, failed over to a replica \
             without the data, was flushed, or evicted keys. Delayed jobs, retries, dead \
             letters, job records, completion markers, cancel requests, uniqueness keys, \
             lock fences and heartbeats written before may be gone: re-enqueue what must run"
        )
    }
}

#[async_trait]
impl Integrity for RedisStore {
    async fn check_integrity(&self, detected_by: &str) -> StoreResult<IntegrityCheck> {
        // Held across the check, so two tasks of one process sharing this store report
        // one loss once.
        let mut remembered = self.sentinel.lock().await;
        let found: Option<String> = self.conn().get(self.keys.key(SENTINEL)).await.store()?;
        if found.as_deref() == Some(remembered.as_str()) {
            return Ok(IntegrityCheck::Intact);
        }
        // Stamped by the server's clock, so every process compares it with the same time
        // (a lost lease asks whether a loss was detected after it was taken).
        let detected_at_ms = StoreTime::store_time_ms(self).await?;
        let incident = DataLossIncident {
            detected_at_ms,
            detected_by: detected_by.to_string(),
            lost: self.describe_loss(&remembered, found.as_deref()),
            since_ms: created_ms(&remembered),
        };
        let json = encode_json("data-loss incident", &incident)?;
        let _: Option<String> = redis::cmd("SET")
            .arg(self.keys.key(INCIDENT))
            .arg(json)
            .arg("NX")
            .query_async(&mut self.conn())
            .await
            .store()?;
        *remembered = self.arm_sentinel().await?;
        telemetry::store_data_lost(self.keys.namespace(), detected_by, &incident.lost);
        Ok(IntegrityCheck::DataLost(incident))
    }

    async fn data_loss_incident(&self) -> StoreResult<Option<DataLossIncident>> {
        let json: Option<Vec<u8>> = self.conn().get(self.keys.key(INCIDENT)).await.store()?;
        json.map(|j| decode_json("data-loss incident", &j))
            .transpose()
    }

    async fn clear_data_loss(&self) -> StoreResult<Option<DataLossIncident>> {
        let key = self.keys.key(INCIDENT);
        let (json, _): (Option<Vec<u8>>, u64) = redis::pipe()
            .atomic()
            .get(&key)
            .del(&key)
            .query_async(&mut self.conn())
            .await
            .store()?;
        // A corrupt record is cleared all the same: clearing is what the operator asked.
        Ok(json.and_then(|j| decode_json("data-loss incident", &j).ok()))
    }

    async fn durability(&self) -> StoreResult<Option<Durability>> {
        let found = super::persistence::read(&mut self.conn()).await?;
        Ok(Some(found.durability()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_store;

    #[test]
    fn sentinels_carry_their_creation_time() {
        let s = new_sentinel(1_700_000_000_123);
        assert_eq!(created_ms(&s), Some(1_700_000_000_123));
        assert_ne!(s, new_sentinel(1_700_000_000_123), "unique per creation");
    }

    #[tokio::test]
    async fn a_vanished_sentinel_is_one_incident_until_cleared() {
        let t = test_store::TestStore::new().await;
        assert_eq!(
            t.check_integrity("test").await.expect("check"),
            IntegrityCheck::Intact
        );
        assert_eq!(t.data_loss_incident().await.expect("read"), None);
        let _: () = t.conn().del(t.keys.key(SENTINEL)).await.expect("del");
        let IntegrityCheck::DataLost(incident) = t.check_integrity("test").await.expect("check")
        else {
            panic!("the loss is detected");
        };
        assert_eq!(incident.detected_by, "test");
        assert!(incident.lost.contains("vanished"), "{}", incident.lost);
        assert_eq!(
            t.check_integrity("test").await.expect("check"),
            IntegrityCheck::Intact
        );
        let open = t.data_loss_incident().await.expect("read");
        assert_eq!(open.as_ref(), Some(&incident));
        let ttl: i64 = t.conn().ttl(t.keys.key(INCIDENT)).await.expect("ttl");
        assert_eq!(ttl, -1, "the incident never expires");
        // A replaced sentinel (another process re-created it) is a loss too.
        let _: () = t
            .conn()
            .set(t.keys.key(SENTINEL), "1-other")
            .await
            .expect("set");
        let again = t.check_integrity("test").await.expect("check");
        assert!(matches!(again, IntegrityCheck::DataLost(ref i) if i.lost.contains("replaced")));
        assert_eq!(
            t.data_loss_incident().await.expect("read"),
            open,
            "the first stays"
        );
        assert_eq!(t.clear_data_loss().await.expect("clear"), open);
        assert_eq!(t.data_loss_incident().await.expect("read"), None);
        assert_eq!(t.clear_data_loss().await.expect("clear"), None);
        t.cleanup().await;
    }
}

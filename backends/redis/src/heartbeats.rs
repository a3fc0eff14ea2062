//! Redis worker heartbeats: a ZSET of worker ids by heartbeat expiry, and each worker's
//! report as JSON in a key that expires with it.
//!
//! Expiry in the ZSET follows the server's clock (`TIME` in the scripts), like lock
//! expiry: a worker whose machine's clock runs minutes behind is still listed while it
//! beats, and one whose clock runs ahead is not listed minutes after it died. The
//! report's own `PX` only makes sure a worker that vanished leaves nothing behind.

use crate::IntoStore as _;
use async_trait::async_trait;

use super::scripts::{HEARTBEAT, LIVE_WORKERS};
use super::{decode_json, encode_json, px, RedisStore};
use jobfleet_common::store::{Heartbeats, StoreResult, WorkerInfo};

impl RedisStore {
    fn workers_key(&self) -> String {
        self.keys.key("workers")
    }

    fn worker_key(&self, worker_id: &str) -> String {
        self.keys.key(&format!("worker:{worker_id}"))
    }
}

#[async_trait]
impl Heartbeats for RedisStore {
    async fn heartbeat(&self, info: &WorkerInfo, ttl_ms: u64) -> StoreResult<()> {
        let json = encode_json("worker info", info)?;
        HEARTBEAT
            .key(self.workers_key())
            .key(self.worker_key(&info.id))
            .arg(&info.id)
            .arg(px(ttl_ms))
            .arg(json)
            .invoke_async::<()>(&mut self.conn())
            .await
            .store()
    }

    async fn worker_gone(&self, worker_id: &str) -> StoreResult<()> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .zrem(self.workers_key(), worker_id)
            .ignore()
            .del(self.worker_key(worker_id))
            .ignore();
        pipe.query_async(&mut self.conn()).await.store()
    }

    async fn workers(&self) -> StoreResult<Vec<WorkerInfo>> {
        let infos: Vec<Option<Vec<u8>>> = LIVE_WORKERS
            .key(self.workers_key())
            .arg(self.worker_key(""))
            .invoke_async(&mut self.conn())
            .await
            .store()?;
        let mut live = infos
            .iter()
            .flatten()
            .map(|json| decode_json::<WorkerInfo>("worker info", json))
            .collect::<StoreResult<Vec<_>>>()?;
        live.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(live)
    }
}

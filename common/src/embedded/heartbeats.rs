//! Embedded worker heartbeats that expire. Times are passed in.

use std::collections::HashMap;

use crate::store::WorkerInfo;

/// Workers by id, with when their last heartbeat runs out (Unix ms).
#[derive(Debug, Default)]
pub(super) struct HeartbeatTable {
    workers: HashMap<String, (WorkerInfo, i64)>,
}

impl HeartbeatTable {
    pub fn beat(&mut self, info: &WorkerInfo, ttl_ms: u64, now_ms: i64) {
        let until = now_ms.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX));
        self.workers.insert(info.id.clone(), (info.clone(), until));
    }

    pub fn gone(&mut self, worker_id: &str) {
        self.workers.remove(worker_id);
    }

    /// Live workers by id; forgets the expired ones on the way.
    pub fn live(&mut self, now_ms: i64) -> Vec<WorkerInfo> {
        self.workers.retain(|_, (_, until)| *until > now_ms);
        let mut live: Vec<WorkerInfo> = self.workers.values().map(|(w, _)| w.clone()).collect();
        live.sort_by(|a, b| a.id.cmp(&b.id));
        live
    }
}

//! Pipelines on Redis: the declaration as JSON (`ns:pipeline:{id}`) and each step's
//! results in a hash (`ns:pipeline:{id}:step:{n}`, child → result JSON), both kept for
//! `redis.retention`.

use async_trait::async_trait;
use redis::AsyncCommands;

use super::scripts::PIPELINE_CHILD_DONE;
use super::{decode_json, encode_json, IntoStore as _, RedisStore};
use jobfleet_common::job::JobId;
use jobfleet_common::store::{Pipelines, StoreResult, StoredPipeline};

impl RedisStore {
    fn pipeline_key(&self, id: JobId) -> String {
        self.keys.of_job("pipeline", id)
    }
}

#[async_trait]
impl Pipelines for RedisStore {
    async fn pipeline_put(&self, pipeline: &StoredPipeline) -> StoreResult<()> {
        let json = encode_json("pipeline", pipeline)?;
        self.conn()
            .pset_ex(self.pipeline_key(pipeline.id), json, self.record_ttl_ms())
            .await
            .store()
    }

    async fn pipeline_get(&self, id: JobId) -> StoreResult<Option<StoredPipeline>> {
        let json: Option<Vec<u8>> = self.conn().get(self.pipeline_key(id)).await.store()?;
        json.map(|j| decode_json(&format!("pipeline {id}"), &j))
            .transpose()
    }

    async fn pipeline_child_done(
        &self,
        id: JobId,
        step: usize,
        child: usize,
        of: usize,
        result: &str,
    ) -> StoreResult<Option<Vec<String>>> {
        PIPELINE_CHILD_DONE
            .key(format!("{}:step:{step}", self.pipeline_key(id)))
            .arg(child)
            .arg(result)
            .arg(of)
            .arg(self.record_ttl_ms())
            .invoke_async(&mut self.conn())
            .await
            .store()
    }
}

//! Embedded pipelines: declarations by id, and each step's results by child.

use std::collections::{BTreeMap, HashMap};

use crate::job::JobId;
use crate::store::StoredPipeline;

#[derive(Debug, Default)]
pub(super) struct PipelineTable {
    pipelines: HashMap<JobId, StoredPipeline>,
    results: HashMap<(JobId, usize), BTreeMap<usize, String>>,
}

impl PipelineTable {
    pub fn put(&mut self, pipeline: &StoredPipeline) {
        self.pipelines.insert(pipeline.id, pipeline.clone());
    }

    pub fn get(&self, id: JobId) -> Option<StoredPipeline> {
        self.pipelines.get(&id).cloned()
    }

    /// Records a child's result; every result in child order once all `of` are there.
    pub fn child_done(
        &mut self,
        id: JobId,
        step: usize,
        child: usize,
        of: usize,
        result: &str,
    ) -> Option<Vec<String>> {
        let results = self.results.entry((id, step)).or_default();
        results.insert(child, result.to_string());
        (0..of).map(|c| results.get(&c).cloned()).collect()
    }
}

//! Pipelines and their steps' results.

use jobfleet_common::pipeline::PipelineSpec;
use jobfleet_common::store::StoredPipeline;
use jobfleet_common::{JobId, Store};

use super::Checked;

/// Pipelines: stored as put; a step completes with the last of its children, whatever
/// their order, and stays complete for a redelivered child; steps and pipelines keep
/// their own results.
pub async fn pipeline_steps_complete_with_their_last_child(store: &dyn Store) -> Checked {
    let spec = PipelineSpec::parse(
        "[[steps]]\nname = \"a\"\nqueue = \"q\"\nkind = \"k\"\nfan_out = [1, 2, 3]\n",
    )
    .expect("parses");
    let id = JobId::new();
    assert_eq!(store.pipeline_get(id).await?, None);
    let pipeline = StoredPipeline {
        id,
        spec,
        created_at_ms: 5,
    };
    store.pipeline_put(&pipeline).await?;
    assert_eq!(store.pipeline_get(id).await?, Some(pipeline));
    // Children finish in any order; the step is complete with the last of them, and
    // stays complete for a redelivered child, whose new result replaces its old one.
    assert_eq!(store.pipeline_child_done(id, 0, 2, 3, "30").await?, None);
    assert_eq!(store.pipeline_child_done(id, 0, 0, 3, "10").await?, None);
    assert_eq!(store.pipeline_child_done(id, 0, 0, 3, "11").await?, None);
    let all = vec!["11".to_string(), "null".into(), "30".into()];
    assert_eq!(
        store.pipeline_child_done(id, 0, 1, 3, "null").await?,
        Some(all.clone())
    );
    assert_eq!(
        store.pipeline_child_done(id, 0, 2, 3, "30").await?,
        Some(all)
    );
    // Steps and pipelines keep their own results.
    assert_eq!(
        store.pipeline_child_done(id, 1, 0, 1, "\"x\"").await?,
        Some(vec!["\"x\"".into()])
    );
    assert_eq!(
        store
            .pipeline_child_done(JobId::new(), 0, 0, 2, "1")
            .await?,
        None
    );
    Ok(())
}

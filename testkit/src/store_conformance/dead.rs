//! Dead letters: listed newest first through a filter, counted per queue, replaced by id
//! and removed.

use std::collections::BTreeMap;

use jobfleet_common::store::{DeadFilter, DeadSummary};
use jobfleet_common::{ErrorKind, JobId, Store};

use super::fixtures::letter;
use super::Checked;

fn times(letters: &[DeadSummary]) -> Vec<i64> {
    letters.iter().map(|l| l.died_at_ms).collect()
}

/// Listings are newest first, as long as asked, through the queue and error filters;
/// counts are per queue (`?` for a letter of no known queue); a letter reads back whole.
pub async fn dead_letters_list_newest_first_through_the_filter(store: &dyn Store) -> Checked {
    let old = letter(Some("q"), ErrorKind::Failed, 10);
    let new = letter(Some("q"), ErrorKind::Failed, 30);
    let other = letter(Some("r"), ErrorKind::Timeout, 20);
    let unknown = letter(None, ErrorKind::Undecodable, 40);
    for l in [&old, &new, &other, &unknown] {
        store.dead_put(l.clone()).await?;
    }
    let all = DeadFilter::default();
    assert_eq!(times(&store.dead_list(&all, 10).await?), [40, 30, 20, 10]);
    assert_eq!(times(&store.dead_list(&all, 2).await?), [40, 30]);
    assert!(store.dead_list(&all, 0).await?.is_empty());
    let in_q = DeadFilter {
        queue: Some("q".into()),
        ..DeadFilter::default()
    };
    assert_eq!(
        store.dead_list(&in_q, 10).await?,
        [new.summary(), old.summary()]
    );
    let timeouts = DeadFilter {
        error: Some("timeout".into()),
        ..DeadFilter::default()
    };
    assert_eq!(store.dead_list(&timeouts, 10).await?, [other.summary()]);
    let expected = BTreeMap::from([
        ("?".to_string(), 1),
        ("q".to_string(), 2),
        ("r".to_string(), 1),
    ]);
    assert_eq!(store.dead_counts().await?, expected);
    assert_eq!(store.dead_get(unknown.id).await?, Some(unknown));
    Ok(())
}

/// A letter put again under its id replaces the first, counted once (in its new queue);
/// removing counts only what existed.
pub async fn a_dead_letter_put_again_replaces_it_and_remove_counts(store: &dyn Store) -> Checked {
    let mut l = letter(Some("q"), ErrorKind::Failed, 10);
    store.dead_put(l.clone()).await?;
    l.reason = "second death".into();
    l.died_at_ms = 20;
    store.dead_put(l.clone()).await?;
    assert_eq!(
        store.dead_counts().await?,
        BTreeMap::from([("q".to_string(), 1)])
    );
    l.queue = None;
    store.dead_put(l.clone()).await?;
    assert_eq!(
        store.dead_counts().await?,
        BTreeMap::from([("?".to_string(), 1)])
    );
    assert_eq!(store.dead_get(l.id).await?, Some(l.clone()));
    let all = DeadFilter::default();
    assert_eq!(store.dead_list(&all, 10).await?, [l.summary()]);

    assert_eq!(store.dead_remove(&[l.id, JobId::new()]).await?, 1);
    assert_eq!(store.dead_remove(&[l.id]).await?, 0);
    assert_eq!(store.dead_get(l.id).await?, None);
    assert!(store.dead_counts().await?.is_empty());
    assert!(store.dead_list(&all, 10).await?.is_empty());
    Ok(())
}

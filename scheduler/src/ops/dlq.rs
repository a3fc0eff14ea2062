//! Dead letters for operators: list them, replay them onto their ready routes, purge them.
//!
//! Every command picks letters either by id (`ids` given; each must also match the
//! filter) or by filter alone (`ids` empty). A replay moves a job back with confirms
//! before it removes its letter, so a failure part-way leaves a duplicate at worst.

use jobfleet_common::limits::Limits;
use std::collections::BTreeSet;

use jobfleet_common::broker::Broker;
use jobfleet_common::clock::Clock;
use jobfleet_common::codec::{self, Format};
use jobfleet_common::store::{
    DeadFilter, DeadLetter, DeadLetters, DeadSummary, JobRecord, JobState, OperatorStore,
};
use jobfleet_common::{JobId, Message, Route};
use serde::Serialize;

use crate::error::OpsError;

/// Letters removed per round when purging by filter.
const PURGE_PAGE: usize = 1_000;

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Jobs published again to their ready routes, their letters removed.
    pub replayed: Vec<JobId>,
    /// Letters that cannot be replayed (their body is not a job), with why; they are kept.
    pub not_replayable: Vec<(JobId, String)>,
    /// Ids asked for that name no dead letter matching the filter.
    pub not_found: Vec<JobId>,
}

/// Dead letters matching `filter`, newest first, at most `limit`, without their bodies.
pub async fn dlq_list(
    store: &dyn DeadLetters,
    filter: &DeadFilter,
    limit: usize,
) -> Result<Vec<DeadSummary>, OpsError> {
    Ok(store.dead_list(filter, limit).await?)
}

/// Publishes dead jobs again as new first attempts (their error history kept), records
/// them `pending`, then removes their letters. At most `limit` letters are replayed. A
/// letter whose body is not a job, or whose job breaks `limits` (a queue name no worker
/// could consume, say), stays and is reported as not replayable. `clock` stamps the
/// replayed jobs' records.
pub async fn dlq_replay(
    store: &dyn OperatorStore,
    broker: &dyn Broker,
    clock: &dyn Clock,
    limits: &Limits,
    filter: &DeadFilter,
    ids: &[JobId],
    limit: usize,
) -> Result<ReplayReport, OpsError> {
    let (letters, not_found) = select(store, filter, ids, limit).await?;
    let mut report = ReplayReport {
        not_found,
        ..ReplayReport::default()
    };
    let now = clock.now_ms();
    let mut messages = Vec::with_capacity(letters.len());
    let mut records = Vec::with_capacity(letters.len());
    let mut queues = BTreeSet::new();
    for letter in letters {
        let mut job = match codec::decode(&letter.body, letter.content_type.as_deref()) {
            Ok(job) => job,
            Err(e) => {
                report.not_replayable.push((letter.id, e.to_string()));
                continue;
            }
        };
        job.attempt = 1;
        job.run_at_ms = None;
        jobfleet_common::trace::drop_invalid(&mut job);
        if let Err(e) = limits.validate(&job, now) {
            report
                .not_replayable
                .push((letter.id, format!("invalid: {}: {}", e.field, e.reason)));
            continue;
        }
        // Its uniqueness key was freed when it died: take it again, or leave the letter
        // while another job holds it (replaying would run a duplicate beside it).
        if let Some(key) = &job.unique_key {
            let ttl = limits.unique_key_ttl_ms();
            if let Some(holder) = store.unique_claim(key, job.id, ttl).await? {
                if holder != job.id {
                    report.not_replayable.push((
                        letter.id,
                        format!("uniqueness key {key:?} is held by job {holder}"),
                    ));
                    continue;
                }
            }
        }
        // The letter's history is the fuller one: filing may have added the final error.
        job.errors = letter.errors;
        records.push(JobRecord::of(&job, JobState::Pending, now));
        queues.insert(job.queue.clone());
        report.replayed.push(letter.id);
        messages.push(Message {
            route: Route::Ready(job.queue.clone()),
            priority: job.priority,
            body: codec::encode(&job, Format::Binary),
            content_type: Some(Format::Binary.content_type().to_string()),
            reason: None,
            key: job.ordering_key,
        });
    }
    if messages.is_empty() {
        return Ok(report);
    }
    let queues: Vec<String> = queues.into_iter().collect();
    broker.declare(&queues).await?;
    // Records first: once published, a worker may record `running` at once.
    store.put_records(&records).await?;
    broker.publish(messages).await?;
    store.dead_remove(&report.replayed).await?;
    Ok(report)
}

/// Removes dead letters (by `ids`, or every one matching `filter` when `ids` is empty);
/// returns how many were removed.
pub async fn dlq_purge(
    store: &dyn DeadLetters,
    filter: &DeadFilter,
    ids: &[JobId],
) -> Result<u64, OpsError> {
    if !ids.is_empty() {
        let (letters, _) = select(store, filter, ids, ids.len()).await?;
        let ids: Vec<JobId> = letters.iter().map(|l| l.id).collect();
        return Ok(if ids.is_empty() {
            0
        } else {
            store.dead_remove(&ids).await?
        });
    }
    let mut removed = 0;
    loop {
        let page = store.dead_list(filter, PURGE_PAGE).await?;
        let ids: Vec<JobId> = page.iter().map(|l| l.id).collect();
        let gone = if ids.is_empty() {
            0
        } else {
            store.dead_remove(&ids).await?
        };
        removed += gone;
        // A short page was the last; a page that removed nothing would repeat forever.
        if page.len() < PURGE_PAGE || gone == 0 {
            return Ok(removed);
        }
    }
}

/// The letters a command is about, whole, and the ids asked for that match none.
async fn select(
    store: &dyn DeadLetters,
    filter: &DeadFilter,
    ids: &[JobId],
    limit: usize,
) -> Result<(Vec<DeadLetter>, Vec<JobId>), OpsError> {
    if ids.is_empty() {
        let mut found = Vec::new();
        for summary in store.dead_list(filter, limit).await? {
            // One removed since the listing (a concurrent replay or purge) is skipped.
            if let Some(letter) = store.dead_get(summary.id).await? {
                found.push(letter);
            }
        }
        return Ok((found, Vec::new()));
    }
    let mut found = Vec::new();
    let mut not_found = Vec::new();
    for &id in ids {
        match store.dead_get(id).await? {
            Some(letter) if filter.matches_letter(&letter) => {
                if found.len() < limit {
                    found.push(letter);
                }
            }
            _ => not_found.push(id),
        }
    }
    Ok((found, not_found))
}

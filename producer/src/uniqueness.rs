//! Claiming the uniqueness keys of a batch, and giving them back when it is not published.
//!
//! A key is claimed in the store for the job that first asks for it; later jobs with the
//! same key get the holder's id back instead of being published (see "Uniqueness" in
//! `docs/architecture.md`). Within one batch the first job with a key wins and later
//! ones are its duplicates, without asking the store again.

use std::collections::HashMap;

use futures::future::join_all;
use jobfleet_common::store::JobStates;
use jobfleet_common::telemetry;
use jobfleet_common::{Job, JobId, StoreError};

/// What claiming a batch's keys decided.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    /// Per job, in batch order: the id of the job already holding its key, when the job is
    /// a duplicate and must not be published.
    pub holders: Vec<Option<JobId>>,
    /// Keys this call holds for its jobs, to release if the batch is not published.
    pub claimed: Vec<(String, JobId)>,
}

/// Claims every distinct key of `jobs` for `ttl_ms`, all store calls at once.
///
/// On a store error the keys claimed so far are released again and the error returned.
pub(crate) async fn claim(
    store: &dyn JobStates,
    jobs: &[Job],
    ttl_ms: u64,
) -> Result<Claims, StoreError> {
    // For each job with a key: the index of the first job in the batch with that key.
    let mut first_with_key: HashMap<&str, usize> = HashMap::new();
    let mut first_of: Vec<Option<usize>> = vec![None; jobs.len()];
    for (i, job) in jobs.iter().enumerate() {
        if let Some(key) = job.unique_key.as_deref() {
            first_of[i] = Some(*first_with_key.entry(key).or_insert(i));
        }
    }

    let firsts: Vec<(usize, &str)> = first_with_key.iter().map(|(&key, &i)| (i, key)).collect();
    let answers = join_all(
        firsts
            .iter()
            .map(|&(i, key)| store.unique_claim(key, jobs[i].id, ttl_ms)),
    )
    .await;

    let mut claims = Claims {
        holders: vec![None; jobs.len()],
        claimed: Vec::new(),
    };
    let mut failure = None;
    for (&(i, key), answer) in firsts.iter().zip(answers) {
        let id = jobs[i].id;
        match answer {
            // The job's own id holding the key is this same job enqueued again (a caller
            // retrying after an error): it is not its own duplicate.
            Ok(Some(holder)) if holder != id => claims.holders[i] = Some(holder),
            Ok(_) => claims.claimed.push((key.to_string(), id)),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    if let Some(e) = failure {
        release(store, &claims.claimed).await;
        return Err(e);
    }

    for (i, first) in first_of.iter().enumerate() {
        if let Some(first) = first.filter(|&f| f != i) {
            claims.holders[i] = Some(claims.holders[first].unwrap_or(jobs[first].id));
        }
    }
    Ok(claims)
}

/// Releases keys this producer claimed for jobs it then failed to publish. Best effort: a
/// key that cannot be released expires after its TTL, and the failure is logged.
pub(crate) async fn release(store: &dyn JobStates, claimed: &[(String, JobId)]) {
    let answers = join_all(
        claimed
            .iter()
            .map(|(key, id)| store.unique_release(key, *id)),
    )
    .await;
    for e in answers.into_iter().filter_map(Result::err) {
        telemetry::backend_error("producer", "unique_release", &e);
    }
}

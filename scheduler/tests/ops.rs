//! Operator functions: cancel, dead-letter replay and purge, queue depths.

mod support;

use std::time::Duration;

use bytes::Bytes;
use jobfleet_common::codec::{self, Format};
use jobfleet_common::limits::Limits;
use jobfleet_common::store::{DeadFilter, DeadLetter, JobRecord, JobState};
use jobfleet_common::{ErrorKind, Job, JobId, Route};
use jobfleet_scheduler::ops::{self, CancelOutcome};
use support::{failed_job, queue, recv, Fleet};

/// The dead letter a job out of attempts becomes.
fn letter_of(job: &Job, now_ms: i64) -> DeadLetter {
    DeadLetter {
        id: job.id,
        queue: Some(job.queue.clone()),
        kind: Some(job.kind.clone()),
        reason: "attempts exhausted".into(),
        error_kind: ErrorKind::Failed,
        errors: job.errors.clone(),
        died_at_ms: now_ms,
        body: codec::encode(job, Format::Binary),
        content_type: Some(codec::POSTCARD_CONTENT_TYPE.into()),
    }
}

/// A dead letter whose body is not a job.
fn junk_letter(now_ms: i64) -> DeadLetter {
    DeadLetter {
        id: JobId::new(),
        queue: None,
        kind: None,
        reason: "junk".into(),
        error_kind: ErrorKind::Undecodable,
        errors: Vec::new(),
        died_at_ms: now_ms,
        body: Bytes::from_static(b"\x00junk"),
        content_type: None,
    }
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_waiting_job_removes_it_and_records_cancelled() {
    let fleet = Fleet::started();
    let q = queue();
    let mut ready = fleet.ready(&q).await;
    let job = Job::new(&q, "work", "{}").with_run_at_ms(fleet.now() + 60_000);
    fleet.publish(Route::Delayed, &job).await;
    fleet
        .wait_for_state(job.id, JobState::Scheduled, Duration::from_secs(1))
        .await;

    let outcome = ops::cancel(&*fleet.backends.store, &*fleet.backends.clock, job.id)
        .await
        .expect("cancel");
    assert_eq!(outcome, CancelOutcome::WasWaiting);
    let record = fleet.record(job.id).await.expect("record");
    assert_eq!(record.state, JobState::Cancelled);
    assert!(
        recv(&mut ready, Duration::from_secs(90)).await.is_none(),
        "cancelled job ran"
    );
    fleet.stop().await;
}

#[tokio::test(start_paused = true)]
async fn cancel_reports_where_the_job_was() {
    let fleet = Fleet::new();
    let now = fleet.now();
    let unknown = JobId::new();
    assert_eq!(
        ops::cancel(&*fleet.backends.store, &*fleet.backends.clock, unknown)
            .await
            .expect("cancel"),
        CancelOutcome::Unknown
    );
    let flags = fleet
        .backends
        .store
        .cancel_requested(&[unknown])
        .await
        .expect("flags");
    assert_eq!(flags, [true], "the flag is set even for an unknown job");

    let pending = Job::new(queue(), "work", "{}");
    let done = Job::new(queue(), "work", "{}");
    let records = [
        JobRecord::of(&pending, JobState::Pending, now),
        JobRecord::of(&done, JobState::Completed, now),
    ];
    fleet
        .backends
        .store
        .put_records(&records)
        .await
        .expect("records");
    let outcome = ops::cancel(&*fleet.backends.store, &*fleet.backends.clock, pending.id)
        .await
        .expect("cancel");
    assert_eq!(outcome, CancelOutcome::Requested);
    let outcome = ops::cancel(&*fleet.backends.store, &*fleet.backends.clock, done.id)
        .await
        .expect("cancel");
    assert_eq!(outcome, CancelOutcome::AlreadyFinished(JobState::Completed));
}

#[tokio::test(start_paused = true)]
async fn replay_republishes_dead_jobs_as_first_attempts_and_keeps_junk() {
    let fleet = Fleet::new();
    let q = queue();
    let mut ready = fleet.ready(&q).await;
    let store = &fleet.backends.store;
    let job = failed_job(&q, 3, 3);
    let junk = junk_letter(fleet.now());
    store
        .dead_put(letter_of(&job, fleet.now()))
        .await
        .expect("put");
    store.dead_put(junk.clone()).await.expect("put");
    let missing = JobId::new();

    let filter = DeadFilter::default();
    let report = ops::dlq_replay(
        &*fleet.backends.store,
        &*fleet.backends.broker,
        &*fleet.backends.clock,
        &Limits::default(),
        &filter,
        &[job.id, junk.id, missing],
        10,
    )
    .await
    .expect("replay");
    assert_eq!(report.replayed, [job.id]);
    assert_eq!(
        report
            .not_replayable
            .iter()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>(),
        [junk.id]
    );
    assert_eq!(report.not_found, [missing]);

    let replayed = recv(&mut ready, Duration::from_secs(1))
        .await
        .expect("replayed");
    assert_eq!((replayed.id, replayed.attempt), (job.id, 1));
    assert_eq!(replayed.errors, job.errors, "error history kept");
    assert_eq!(
        fleet.record(job.id).await.expect("record").state,
        JobState::Pending
    );
    assert_eq!(store.dead_get(job.id).await.expect("get"), None);
    assert!(
        store.dead_get(junk.id).await.expect("get").is_some(),
        "junk kept"
    );
}

#[tokio::test(start_paused = true)]
async fn replay_by_filter_takes_only_matching_letters_up_to_the_limit() {
    let fleet = Fleet::new();
    let (a, b) = (queue(), queue());
    let store = &fleet.backends.store;
    let jobs: Vec<Job> = (0..3).map(|_| failed_job(&a, 3, 3)).collect();
    let other = failed_job(&b, 3, 3);
    for job in jobs.iter().chain([&other]) {
        store
            .dead_put(letter_of(job, fleet.now()))
            .await
            .expect("put");
    }
    let filter = DeadFilter {
        queue: Some(a.clone()),
        ..DeadFilter::default()
    };
    let report = ops::dlq_replay(
        &*fleet.backends.store,
        &*fleet.backends.broker,
        &*fleet.backends.clock,
        &Limits::default(),
        &filter,
        &[],
        2,
    )
    .await
    .expect("replay");
    assert_eq!(report.replayed.len(), 2);
    assert!(report
        .replayed
        .iter()
        .all(|id| jobs.iter().any(|j| j.id == *id)));
    let left = store.dead_counts().await.expect("counts");
    assert_eq!((left.get(&a), left.get(&b)), (Some(&1), Some(&1)));
}

#[tokio::test(start_paused = true)]
async fn purge_removes_by_filter_or_by_id() {
    let fleet = Fleet::new();
    let (a, b) = (queue(), queue());
    let store = &fleet.backends.store;
    for q in [&a, &a, &a, &b, &b] {
        store
            .dead_put(letter_of(&failed_job(q, 3, 3), fleet.now()))
            .await
            .expect("put");
    }
    let junk = junk_letter(fleet.now());
    store.dead_put(junk.clone()).await.expect("put");

    let only_a = DeadFilter {
        queue: Some(a.clone()),
        ..DeadFilter::default()
    };
    assert_eq!(
        ops::dlq_purge(&*fleet.backends.store, &only_a, &[])
            .await
            .expect("purge"),
        3
    );
    let counts = store.dead_counts().await.expect("counts");
    assert_eq!((counts.get(&a), counts.get(&b)), (None, Some(&2)));

    // By id, the filter still applies: the junk letter is not in queue `b`.
    let only_b = DeadFilter {
        queue: Some(b.clone()),
        ..DeadFilter::default()
    };
    assert_eq!(
        ops::dlq_purge(&*fleet.backends.store, &only_b, &[junk.id])
            .await
            .expect("purge"),
        0
    );
    let everything = DeadFilter::default();
    assert_eq!(
        ops::dlq_purge(&*fleet.backends.store, &everything, &[junk.id])
            .await
            .expect("purge"),
        1
    );
    let list = ops::dlq_list(&*fleet.backends.store, &everything, 10)
        .await
        .expect("list");
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|l| l.queue.as_deref() == Some(b.as_str())));
}

#[tokio::test(start_paused = true)]
async fn queue_depths_count_ready_delayed_and_dead_jobs() {
    let fleet = Fleet::started();
    let (ready_q, delayed_q, dead_q) = (queue(), queue(), queue());
    let now = fleet.now();
    fleet
        .backends
        .broker
        .declare(std::slice::from_ref(&ready_q))
        .await
        .expect("declare");
    for _ in 0..2 {
        fleet
            .publish(
                Route::Ready(ready_q.clone()),
                &Job::new(&ready_q, "work", "{}"),
            )
            .await;
    }
    let later = Job::new(&delayed_q, "work", "{}").with_run_at_ms(now + 60_000);
    fleet.publish(Route::Delayed, &later).await;
    fleet
        .wait_for_state(later.id, JobState::Scheduled, Duration::from_secs(1))
        .await;
    let dead = failed_job(&dead_q, 3, 3);
    fleet
        .backends
        .store
        .dead_put(letter_of(&dead, now))
        .await
        .expect("put");

    let depths = ops::queue_depths(
        &*fleet.backends.store,
        &*fleet.backends.broker,
        &*fleet.backends.clock,
        std::slice::from_ref(&ready_q),
    )
    .await
    .expect("depths");
    let row = |q: &str| depths.iter().find(|d| d.queue == q).cloned().expect("row");
    assert_eq!((row(&ready_q).ready, row(&ready_q).delayed), (Some(2), 0));
    assert_eq!(
        (row(&delayed_q).ready, row(&delayed_q).delayed),
        (Some(0), 1)
    );
    assert_eq!((row(&dead_q).dead, row(&dead_q).delayed), (1, 0));
    fleet.stop().await;
}

#[tokio::test(start_paused = true)]
async fn replay_keeps_a_letter_whose_job_breaks_the_limits() {
    let fleet = Fleet::new();
    let store = &fleet.backends.store;
    let stranded = Job::new("bad queue!", "send", "{}");
    store
        .dead_put(letter_of(&stranded, fleet.now()))
        .await
        .expect("put");
    let report = ops::dlq_replay(
        &*fleet.backends.store,
        &*fleet.backends.broker,
        &*fleet.backends.clock,
        &Limits::default(),
        &DeadFilter::default(),
        &[stranded.id],
        10,
    )
    .await
    .expect("replay");
    assert!(report.replayed.is_empty(), "{report:?}");
    let (id, why) = &report.not_replayable[0];
    assert_eq!(*id, stranded.id);
    assert!(why.starts_with("invalid: queue: "), "{why}");
    assert!(
        store.dead_get(stranded.id).await.expect("get").is_some(),
        "the letter stays"
    );
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_waiting_job_frees_its_uniqueness_key() {
    let fleet = Fleet::started();
    let store = &fleet.backends.store;
    let key = format!("u-{}", JobId::new());
    let job = Job::new(queue(), "work", "{}")
        .with_unique_key(&key)
        .with_run_at_ms(fleet.now() + 60_000);
    assert_eq!(
        store
            .unique_claim(&key, job.id, 600_000)
            .await
            .expect("claim"),
        None
    );
    fleet.publish(Route::Delayed, &job).await;
    fleet
        .wait_for_state(job.id, JobState::Scheduled, Duration::from_secs(1))
        .await;
    let outcome = ops::cancel(&*fleet.backends.store, &*fleet.backends.clock, job.id)
        .await
        .expect("cancel");
    assert_eq!(outcome, CancelOutcome::WasWaiting);
    let next = JobId::new();
    assert_eq!(
        store
            .unique_claim(&key, next, 600_000)
            .await
            .expect("claim"),
        None,
        "the cancelled job's key is free"
    );
    fleet.stop().await;
}

#[tokio::test(start_paused = true)]
async fn replay_takes_the_uniqueness_key_again_or_leaves_the_letter() {
    let fleet = Fleet::new();
    let store = &fleet.backends.store;
    let key = format!("u-{}", JobId::new());
    let mut dead = failed_job(&queue(), 3, 3);
    dead.unique_key = Some(key.clone());
    store
        .dead_put(letter_of(&dead, fleet.now()))
        .await
        .expect("put");
    // Another job took the key since: the letter stays.
    let other = JobId::new();
    assert_eq!(
        store
            .unique_claim(&key, other, 600_000)
            .await
            .expect("claim"),
        None
    );
    let filter = DeadFilter::default();
    let limits = Limits::default();
    let report = ops::dlq_replay(
        &*fleet.backends.store,
        &*fleet.backends.broker,
        &*fleet.backends.clock,
        &limits,
        &filter,
        &[dead.id],
        10,
    )
    .await
    .expect("replay");
    assert!(report.replayed.is_empty(), "{report:?}");
    assert!(
        report.not_replayable[0].1.contains("held by job"),
        "{report:?}"
    );
    // Free again: the replayed job holds the key.
    store.unique_release(&key, other).await.expect("release");
    let report = ops::dlq_replay(
        &*fleet.backends.store,
        &*fleet.backends.broker,
        &*fleet.backends.clock,
        &limits,
        &filter,
        &[dead.id],
        10,
    )
    .await
    .expect("replay");
    assert_eq!(report.replayed, [dead.id]);
    assert_eq!(
        store
            .unique_claim(&key, JobId::new(), 600_000)
            .await
            .expect("claim"),
        Some(dead.id)
    );
}

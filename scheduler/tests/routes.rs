//! The failed and dead routes: retries with backoff, dead letters after the last attempt,
//! and messages that are not jobs filed with their reason.

mod support;

use std::time::Duration;

use bytes::Bytes;
use jobfleet_common::job::Backoff;
use jobfleet_common::store::{DeadFilter, JobState};
use jobfleet_common::{codec, dead, ErrorKind, Job, JobId, Message, Route};
use support::{failed_job, queue, recv, Fleet};

#[tokio::test(start_paused = true)]
async fn a_failed_job_is_retried_with_the_next_attempt_within_its_backoff() {
    let fleet = Fleet::started();
    let q = queue();
    let mut ready = fleet.ready(&q).await;
    let mut job = failed_job(&q, 2, 5);
    // The second attempt failed: the delay is at most min(cap, base * 2).
    job.backoff = Some(Backoff {
        base_ms: 20_000,
        cap_ms: 30_000,
    });
    let failed_at = fleet.now();
    fleet.publish(Route::Failed, &job).await;

    tokio::time::sleep(Duration::from_millis(50)).await;
    let record = fleet.record(job.id).await.expect("record");
    if record.state == JobState::Retrying {
        let run_at = record.run_at_ms.expect("run_at");
        assert!(
            (failed_at..=failed_at + 30_000).contains(&run_at),
            "run_at {run_at}"
        );
        assert_eq!(record.attempt, 3);
        assert_eq!(
            record.last_error.as_ref().map(|e| e.message.as_str()),
            Some("e2")
        );
    } else {
        // The jittered delay was short enough to be over already.
        assert_eq!(record.state, JobState::Pending);
    }

    let retried = recv(&mut ready, Duration::from_secs(31))
        .await
        .expect("retried");
    assert!(
        fleet.now() - failed_at <= 30_250,
        "retried after {}ms",
        fleet.now() - failed_at
    );
    assert_eq!(retried.id, job.id);
    assert_eq!(retried.attempt, 3);
    assert_eq!(retried.errors, job.errors);
    assert_eq!(
        fleet.record(job.id).await.expect("record").state,
        JobState::Pending
    );
    fleet.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_last_failed_attempt_becomes_a_dead_letter_with_its_history() {
    let fleet = Fleet::started();
    let q = queue();
    let mut ready = fleet.ready(&q).await;
    let job = failed_job(&q, 3, 3).with_unique_key(format!("u-{q}"));
    let store = &fleet.backends.store;
    let key = job.unique_key.clone().expect("key");
    assert_eq!(
        store
            .unique_claim(&key, job.id, 60_000)
            .await
            .expect("claim"),
        None
    );
    fleet.publish(Route::Failed, &job).await;

    let record = fleet
        .wait_for_state(job.id, JobState::Dead, Duration::from_secs(1))
        .await;
    assert!(record.finished_at_ms.is_some());
    let letter = store
        .dead_get(job.id)
        .await
        .expect("get")
        .expect("dead letter");
    assert_eq!(letter.reason, "attempts exhausted: e3");
    assert_eq!(letter.error_kind, ErrorKind::Failed);
    assert_eq!(letter.errors, job.errors);
    assert_eq!(letter.queue.as_deref(), Some(q.as_str()));
    assert_eq!(
        codec::decode(&letter.body, letter.content_type.as_deref()),
        Ok(job.clone())
    );
    // The uniqueness key is free for a new job.
    assert_eq!(
        store
            .unique_claim(&key, JobId::new(), 60_000)
            .await
            .expect("claim"),
        None
    );
    assert!(
        recv(&mut ready, Duration::from_secs(60)).await.is_none(),
        "dead job ran again"
    );
    fleet.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_is_dead_without_retry() {
    let fleet = Fleet::started();
    let q = queue();
    let mut job = failed_job(&q, 1, 5);
    job.errors[0].kind = ErrorKind::Permanent;
    fleet.publish(Route::Failed, &job).await;

    fleet
        .wait_for_state(job.id, JobState::Dead, Duration::from_secs(1))
        .await;
    let letter = fleet
        .backends
        .store
        .dead_get(job.id)
        .await
        .expect("get")
        .expect("letter");
    assert_eq!(letter.error_kind, ErrorKind::Permanent);
    fleet.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_dead_route_files_undecodable_bytes_and_dead_jobs_with_their_reasons() {
    let fleet = Fleet::started();
    let q = queue();
    let garbage = Bytes::from_static(b"\xff\x00 not a job");
    let garbage_reason = "not a jobfleet envelope";
    let job = failed_job(&q, 1, 3);
    let body = codec::encode(&job, codec::Format::Binary);
    let ct = Some(codec::POSTCARD_CONTENT_TYPE.to_string());
    let messages = vec![
        dead::message(
            garbage.clone(),
            None,
            ErrorKind::Undecodable,
            garbage_reason,
        ),
        dead::message(body, ct, ErrorKind::UnknownKind, "no handler for work"),
    ];
    fleet
        .backends
        .broker
        .publish(messages)
        .await
        .expect("publish");

    let record = fleet
        .wait_for_state(job.id, JobState::Dead, Duration::from_secs(1))
        .await;
    assert_eq!(
        record.last_error.map(|e| e.kind),
        Some(ErrorKind::UnknownKind)
    );
    let letters = fleet
        .backends
        .store
        .dead_list(&DeadFilter::default(), 10)
        .await
        .expect("list");
    assert_eq!(letters.len(), 2);
    let junk = letters
        .iter()
        .find(|l| l.queue.is_none())
        .expect("undecodable letter");
    assert_eq!(
        (junk.error_kind, junk.reason.as_str()),
        (ErrorKind::Undecodable, garbage_reason)
    );
    let whole = fleet.backends.store.dead_get(junk.id).await.expect("get");
    assert_eq!(whole.expect("the letter").body, garbage);
    assert_eq!(junk.body_bytes, garbage.len() as u64);
    let known = letters
        .iter()
        .find(|l| l.id == job.id)
        .expect("job's letter");
    assert_eq!(known.error_kind, ErrorKind::UnknownKind);
    assert_eq!(known.errors.len(), 2, "history plus the final error");
    fleet.stop().await;
}

#[tokio::test(start_paused = true)]
async fn garbage_on_the_delayed_and_failed_routes_ends_as_dead_letters() {
    let fleet = Fleet::started();
    let junk = |text: &'static [u8], route| Message {
        route,
        priority: jobfleet_common::Priority::NORMAL,
        body: Bytes::from_static(text),
        content_type: None,
        reason: None,
        key: None,
    };
    let batch = vec![
        junk(b"delayed junk", Route::Delayed),
        junk(b"failed junk", Route::Failed),
    ];
    fleet.backends.broker.publish(batch).await.expect("publish");

    tokio::time::sleep(Duration::from_secs(1)).await;
    let letters = fleet
        .backends
        .store
        .dead_list(&DeadFilter::default(), 10)
        .await
        .expect("list");
    let mut bodies = Vec::new();
    for letter in &letters {
        let whole = fleet.backends.store.dead_get(letter.id).await.expect("get");
        bodies.push(whole.expect("the letter").body);
    }
    bodies.sort();
    assert_eq!(bodies, [&b"delayed junk"[..], &b"failed junk"[..]]);
    assert!(letters
        .iter()
        .all(|l| l.error_kind == ErrorKind::Undecodable));
    fleet.stop().await;
}

#[tokio::test(start_paused = true)]
async fn invalid_jobs_on_the_delayed_and_failed_routes_are_dead_not_released() {
    let fleet = Fleet::started();
    let now = fleet.now();
    // Published straight to the internal routes, bypassing the producer's checks.
    let bad_queue = Job::new("bad queue!", "send", "{}").with_run_at_ms(now + 100);
    let mut bad_attempts = failed_job(&queue(), 1, 3);
    bad_attempts.max_attempts = 0;
    fleet.publish(Route::Delayed, &bad_queue).await;
    fleet.publish(Route::Failed, &bad_attempts).await;

    tokio::time::sleep(Duration::from_secs(1)).await;
    let store = &fleet.backends.store;
    let letter = store
        .dead_get(bad_queue.id)
        .await
        .expect("store")
        .expect("the bad queue's job is a dead letter");
    assert_eq!(letter.error_kind, ErrorKind::Invalid);
    assert!(letter.reason.contains("queue: "), "{}", letter.reason);
    let letter = store
        .dead_get(bad_attempts.id)
        .await
        .expect("store")
        .expect("the bad retry is a dead letter");
    assert!(letter.reason.contains("max_attempts"), "{}", letter.reason);
    // Nothing waits to be released into a queue nobody consumes.
    let waiting = store.delayed_counts().await.expect("counts");
    assert!(!waiting.contains_key("bad queue!"), "{waiting:?}");
    fleet.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_dead_body_over_the_message_limit_is_filed_as_its_head() {
    let fleet = Fleet::started();
    let huge = Bytes::from(vec![b'j'; 3 * 1024 * 1024]);
    let message = dead::message(huge.clone(), None, ErrorKind::Undecodable, "junk");
    fleet
        .backends
        .broker
        .publish(vec![message])
        .await
        .expect("publish");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let letters = fleet
        .backends
        .store
        .dead_list(&DeadFilter::default(), 10)
        .await
        .expect("list");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].body_bytes, dead::KEPT_HEAD_BYTES as u64);
    let whole = fleet
        .backends
        .store
        .dead_get(letters[0].id)
        .await
        .expect("get");
    assert_eq!(
        whole.expect("the letter").body,
        huge.slice(..dead::KEPT_HEAD_BYTES)
    );
    assert!(
        letters[0].reason.contains("3145728 bytes (sha256 ")
            && letters[0].reason.contains(") is cut"),
        "{}",
        letters[0].reason
    );
    fleet.stop().await;
}

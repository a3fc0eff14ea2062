//! The producer against the embedded backends: routes, priority, validation, uniqueness,
//! state records and batching.

mod support;

use std::time::Duration;

use futures::StreamExt;
use jobfleet_common::codec::{self, Format};
use jobfleet_common::store::JobState;
use jobfleet_common::{Backends, Config, Job, JobId, Priority, Route};
use jobfleet_producer::{Enqueued, ProduceError, Producer};
use support::SpyBroker;

/// A queue name no other test uses.
fn queue() -> String {
    format!("q-{}", JobId::new())
}

fn producer(backends: &Backends) -> Producer {
    Producer::new(backends, &Config::default())
}

async fn ready_depth(backends: &Backends, route: &Route) -> u64 {
    let depth = backends.broker.depth(route).await.expect("depth answers");
    depth.expect("the embedded broker knows its depth").ready
}

/// Takes `n` messages off `route` (acking them), decoded, with their content types.
async fn take(backends: &Backends, route: &Route, n: usize) -> Vec<(Job, Option<String>)> {
    let mut consumer = backends.broker.consume(route, 0).await.expect("consume");
    let mut out = Vec::new();
    for _ in 0..n {
        let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .expect("a message arrives")
            .expect("the stream is open")
            .expect("no broker error");
        let job = codec::decode(&delivery.body, delivery.content_type.as_deref()).expect("decodes");
        out.push((job, delivery.content_type.clone()));
        delivery.ack().await.expect("ack");
    }
    out
}

async fn state_of(backends: &Backends, id: JobId) -> Option<JobState> {
    backends
        .store
        .record(id)
        .await
        .expect("record answers")
        .map(|r| r.state)
}

#[tokio::test]
async fn enqueue_lands_on_the_ready_route_with_its_priority() {
    let backends = Backends::embedded();
    let producer = producer(&backends);
    let q = queue();
    let low = Job::new(&q, "echo", "1").with_priority(Priority::LOW);
    let high = Job::new(&q, "echo", "2").with_priority(Priority::HIGH);

    let before = producer.now_ms();
    let answer = producer.enqueue(low.clone()).await.expect("enqueued");
    assert_eq!(
        answer,
        Enqueued {
            id: low.id,
            duplicate: false,
            delayed: false
        }
    );
    producer.enqueue(high.clone()).await.expect("enqueued");

    // Published second, delivered first: the message carried the job's priority.
    let got = take(&backends, &Route::Ready(q.clone()), 2).await;
    let (first, content_type) = &got[0];
    assert_eq!(first.id, high.id);
    assert_eq!(content_type.as_deref(), Some(codec::POSTCARD_CONTENT_TYPE));
    assert!(first.enqueued_at_ms >= before && first.enqueued_at_ms <= producer.now_ms());
    assert_eq!(
        *first,
        Job {
            enqueued_at_ms: first.enqueued_at_ms,
            ..high
        }
    );
    assert_eq!(got[1].0.id, low.id);
    assert_eq!(state_of(&backends, low.id).await, Some(JobState::Pending));
}

#[tokio::test]
async fn json_format_writes_json_envelopes_and_keeps_given_stamps() {
    let backends = Backends::embedded();
    let producer = producer(&backends).with_format(Format::Json);
    let q = queue();
    let job = Job {
        enqueued_at_ms: 42,
        attempt: 2,
        ..Job::new(&q, "echo", r#"{"n":1}"#)
    };
    producer.enqueue(job.clone()).await.expect("enqueued");

    let got = take(&backends, &Route::Ready(q), 1).await;
    assert_eq!(got[0].1.as_deref(), Some(codec::JSON_CONTENT_TYPE));
    assert_eq!(got[0].0, job, "enqueued_at_ms and attempt stay as given");
}

#[tokio::test]
async fn a_job_due_later_goes_to_the_delayed_route() {
    let backends = Backends::embedded();
    let producer = producer(&backends);
    let q = queue();
    let run_at = producer.now_ms() + 60_000;
    let later = Job::new(&q, "echo", "{}").with_run_at_ms(run_at);
    let overdue = Job::new(&q, "echo", "{}").with_run_at_ms(producer.now_ms() - 1);

    let answers = producer
        .enqueue_many(vec![later.clone(), overdue.clone()])
        .await
        .expect("ok");
    assert!(answers[0].delayed && !answers[1].delayed, "{answers:?}");
    assert_eq!(ready_depth(&backends, &Route::Ready(q.clone())).await, 1);
    let got = take(&backends, &Route::Delayed, 1).await;
    assert_eq!((got[0].0.id, got[0].0.run_at_ms), (later.id, Some(run_at)));
    assert_eq!(
        state_of(&backends, later.id).await,
        Some(JobState::Scheduled)
    );
    assert_eq!(
        state_of(&backends, overdue.id).await,
        Some(JobState::Pending)
    );
}

#[tokio::test]
async fn an_invalid_job_refuses_the_whole_batch_naming_index_and_field() {
    let (backends, spy) = SpyBroker::backends();
    let producer = producer(&backends);
    let q = queue();
    let valid = Job::new(&q, "echo", "{}");
    let invalid = Job::new("", "echo", "{}");

    let err = producer
        .enqueue_many(vec![valid.clone(), invalid])
        .await
        .expect_err("refused");
    assert!(matches!(&err, ProduceError::Invalid { index: 1, source } if source.field == "queue"));
    assert_eq!(
        err.to_string(),
        "job 1: invalid job: queue: must not be empty"
    );
    assert!(!err.is_retryable());
    assert_eq!((spy.publishes(), spy.declares()), (0, 0));
    assert_eq!(state_of(&backends, valid.id).await, None);
    assert_eq!(ready_depth(&backends, &Route::Ready(q)).await, 0);
}

#[tokio::test]
async fn a_second_job_with_a_unique_key_gets_the_first_id() {
    let backends = Backends::embedded();
    let producer = producer(&backends);
    let q = queue();
    let key = format!("report-{}", JobId::new());
    let first = Job::new(&q, "report", "{}").with_unique_key(&key);
    let second = Job::new(&q, "report", "{}").with_unique_key(&key);

    producer.enqueue(first.clone()).await.expect("enqueued");
    let answer = producer.enqueue(second.clone()).await.expect("answered");
    assert_eq!(
        answer,
        Enqueued {
            id: first.id,
            duplicate: true,
            delayed: false
        }
    );
    assert_eq!(ready_depth(&backends, &Route::Ready(q.clone())).await, 1);
    assert_eq!(state_of(&backends, second.id).await, None);

    // Enqueuing the same job again (a retry) is not a duplicate of itself.
    let again = producer.enqueue(first.clone()).await.expect("enqueued");
    assert!(!again.duplicate);
}

#[tokio::test]
async fn within_a_batch_the_first_job_with_a_key_wins() {
    let (backends, spy) = SpyBroker::backends();
    let producer = producer(&backends);
    let q = queue();
    let key = format!("k-{}", JobId::new());
    let jobs: Vec<Job> = (0..3)
        .map(|_| Job::new(&q, "k", "{}").with_unique_key(&key))
        .collect();
    let other = Job::new(&q, "k", "{}");

    let mut batch = jobs.clone();
    batch.push(other.clone());
    let answers = producer.enqueue_many(batch).await.expect("enqueued");
    let ids: Vec<(JobId, bool)> = answers.iter().map(|a| (a.id, a.duplicate)).collect();
    let first = jobs[0].id;
    assert_eq!(
        ids,
        [
            (first, false),
            (first, true),
            (first, true),
            (other.id, false)
        ]
    );
    assert_eq!(ready_depth(&backends, &Route::Ready(q.clone())).await, 2);

    // A later batch with the key holds only duplicates: nothing is published.
    let publishes = spy.publishes();
    let answers = producer
        .enqueue_many(vec![Job::new(&q, "k", "{}").with_unique_key(&key)])
        .await;
    assert_eq!(answers.expect("answered")[0].id, first);
    assert_eq!(spy.publishes(), publishes);
}

#[tokio::test]
async fn a_failed_publish_releases_the_keys_it_claimed_and_leaves_no_pending_record() {
    let (backends, spy) = SpyBroker::backends();
    let producer = producer(&backends);
    let q = queue();
    let key = format!("k-{}", JobId::new());
    spy.fail_publish
        .store(true, std::sync::atomic::Ordering::SeqCst);

    let failed = Job::new(&q, "k", "{}").with_unique_key(&key);
    let err = producer.enqueue(failed.clone()).await;
    let err = err.expect_err("publish failed");
    assert!(
        matches!(err, ProduceError::Broker(_)) && err.is_retryable(),
        "{err}"
    );
    // No record says the unsent job waits.
    assert_eq!(state_of(&backends, failed.id).await, None);

    spy.fail_publish
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let next = Job::new(&q, "k", "{}").with_unique_key(&key);
    let answer = producer.enqueue(next.clone()).await.expect("enqueued");
    assert_eq!(
        answer,
        Enqueued {
            id: next.id,
            duplicate: false,
            delayed: false
        }
    );
}

#[tokio::test]
async fn records_are_written_before_the_publish() {
    let (backends, spy) = SpyBroker::backends();
    let producer = producer(&backends);
    let q = queue();
    let now = producer.now_ms();
    let jobs = vec![
        Job::new(&q, "k", "{}"),
        Job::new(&q, "k", "{}").with_run_at_ms(now + 60_000),
    ];
    producer.enqueue_many(jobs).await.expect("enqueued");
    let seen = spy.states_at_publish.lock().expect("not poisoned").clone();
    assert_eq!(seen, [Some(JobState::Pending), Some(JobState::Scheduled)]);
}

#[tokio::test]
async fn a_batch_of_1000_is_one_publish_and_one_declare() {
    let (backends, spy) = SpyBroker::backends();
    let producer = producer(&backends);
    let q = queue();
    let jobs: Vec<Job> = (0..1000)
        .map(|i| Job::new(&q, "k", format!("{i}")))
        .collect();

    let answers = producer.enqueue_many(jobs).await.expect("enqueued");
    assert_eq!(answers.len(), 1000);
    assert_eq!((spy.publishes(), spy.declares()), (1, 1));
    assert_eq!(ready_depth(&backends, &Route::Ready(q)).await, 1000);
}

#[tokio::test]
async fn each_route_is_declared_once_per_producer() {
    let (backends, spy) = SpyBroker::backends();
    let producer = producer(&backends);
    let (a, b) = (queue(), queue());
    let later = producer.now_ms() + 60_000;

    producer
        .enqueue(Job::new(&a, "k", "{}").with_run_at_ms(later))
        .await
        .expect("ok");
    producer.enqueue(Job::new(&a, "k", "{}")).await.expect("ok");
    producer.enqueue(Job::new(&a, "k", "{}")).await.expect("ok");
    producer
        .enqueue(Job::new(&a, "k", "{}").with_run_at_ms(later))
        .await
        .expect("ok");
    assert_eq!(spy.declares(), 2, "delayed route once, queue a once");
    producer.enqueue(Job::new(&b, "k", "{}")).await.expect("ok");
    assert_eq!(spy.declares(), 3);
    assert_eq!(producer.enqueue_many(Vec::new()).await.expect("ok"), []);
    assert_eq!(spy.publishes(), 5);
}

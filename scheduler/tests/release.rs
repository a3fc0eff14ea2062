//! The delayed route and the release loop: jobs wait for their time, leave in due order,
//! exactly once across schedulers, and come back when a release lease runs out.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use jobfleet_common::codec::{self, Format};
use jobfleet_common::store::{JobState, ScheduledJob};
use jobfleet_common::{Config, Job, Route};
use support::{queue, recv, Fleet};

#[tokio::test(start_paused = true)]
async fn a_delayed_job_waits_for_its_time_then_is_released_promptly() {
    let fleet = Fleet::started();
    let q = queue();
    let mut ready = fleet.ready(&q).await;
    let due = fleet.now() + 10_000;
    let job = Job::new(&q, "work", "{}").with_run_at_ms(due);
    fleet.publish(Route::Delayed, &job).await;

    let record = fleet
        .wait_for_state(job.id, JobState::Scheduled, Duration::from_secs(1))
        .await;
    assert_eq!(record.run_at_ms, Some(due));
    let counts = fleet.backends.store.delayed_counts().await.expect("counts");
    assert_eq!(counts.get(&q), Some(&1));

    assert!(
        recv(&mut ready, Duration::from_millis(9_800))
            .await
            .is_none(),
        "released early"
    );
    assert!(fleet.now() < due);
    let released = recv(&mut ready, Duration::from_secs(1))
        .await
        .expect("released");
    assert_eq!(released, job);
    let late = fleet.now() - due;
    assert!((0..=250).contains(&late), "released {late}ms after due");
    assert_eq!(
        fleet.record(job.id).await.expect("record").state,
        JobState::Pending
    );
    fleet.stop().await;
}

#[tokio::test(start_paused = true)]
async fn many_delayed_jobs_leave_in_due_order() {
    let fleet = Fleet::started();
    let q = queue();
    let mut ready = fleet.ready(&q).await;
    let start = fleet.now();
    // Due times 1s..=6.7s apart by 300ms, published in a scrambled order.
    let jobs: Vec<Job> = (0..20)
        .map(|i| {
            let slot = (i * 7) % 20;
            Job::new(&q, "work", "{}").with_run_at_ms(start + 1_000 + slot * 300)
        })
        .collect();
    for job in &jobs {
        fleet.publish(Route::Delayed, job).await;
    }
    let mut got = Vec::new();
    while let Some(job) = recv(&mut ready, Duration::from_secs(2)).await {
        assert!(
            fleet.now() >= job.run_at_ms.expect("due"),
            "released before due"
        );
        got.push(job.run_at_ms.expect("due"));
    }
    let mut expected: Vec<i64> = jobs.iter().filter_map(|j| j.run_at_ms).collect();
    expected.sort();
    assert_eq!(got, expected);
    fleet.stop().await;
}

#[tokio::test(start_paused = true)]
async fn two_schedulers_release_each_job_exactly_once() {
    let mut config = Config::default();
    config.scheduler.release_batch = 7;
    let mut fleet = Fleet::with_config(config);
    fleet.start_scheduler();
    fleet.start_scheduler();
    let q = queue();
    let mut ready = fleet.ready(&q).await;
    let start = fleet.now();
    let jobs: Vec<Job> = (0..200)
        .map(|i| Job::new(&q, "work", "{}").with_run_at_ms(start + 500 + (i % 10) * 100))
        .collect();
    for job in &jobs {
        fleet.publish(Route::Delayed, job).await;
    }
    let mut seen = HashSet::new();
    while let Some(job) = recv(&mut ready, Duration::from_secs(3)).await {
        assert!(seen.insert(job.id), "job {} released twice", job.id);
    }
    assert_eq!(seen.len(), jobs.len());
    let counts = fleet.backends.store.delayed_counts().await.expect("counts");
    assert_eq!(
        counts.get(&q),
        None,
        "delayed set empty afterwards: {counts:?}"
    );
    fleet.stop().await;
}

#[tokio::test(start_paused = true)]
async fn jobs_of_a_dead_schedulers_expired_lease_are_released_again() {
    let fleet = Fleet::new();
    let q = queue();
    let mut ready = fleet.ready(&q).await;
    let job = Job::new(&q, "work", "{}");
    let store = &fleet.backends.store;
    let entry = ScheduledJob {
        id: job.id,
        queue: q.clone(),
        due_ms: fleet.now(),
        body: codec::encode(&job, Format::Binary),
    };
    store.schedule(vec![entry]).await.expect("schedule");
    // A scheduler claims the job under a 5s lease, then dies before publishing it.
    let claimed = store
        .claim_due(fleet.now(), 10, 5_000)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let lease_ends = fleet.now() + 5_000;

    let mut fleet = fleet;
    fleet.start_scheduler();
    assert!(
        recv(&mut ready, Duration::from_millis(4_900))
            .await
            .is_none(),
        "lease ignored"
    );
    let released = recv(&mut ready, Duration::from_secs(1))
        .await
        .expect("released again");
    assert_eq!(released.id, job.id);
    assert!(fleet.now() >= lease_ends);
    fleet.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_job_cancelled_while_waiting_is_not_released() {
    let fleet = Fleet::started();
    let q = queue();
    let mut ready = fleet.ready(&q).await;
    let job = Job::new(&q, "work", "{}").with_run_at_ms(fleet.now() + 2_000);
    fleet.publish(Route::Delayed, &job).await;
    fleet
        .wait_for_state(job.id, JobState::Scheduled, Duration::from_secs(1))
        .await;
    // Only the flag, as when a cancel races a claim: the release loop must honour it.
    fleet
        .backends
        .store
        .request_cancel(job.id)
        .await
        .expect("cancel");

    assert!(
        recv(&mut ready, Duration::from_secs(5)).await.is_none(),
        "cancelled job released"
    );
    let record = fleet.record(job.id).await.expect("record");
    assert_eq!(record.state, JobState::Cancelled);
    assert!(record.finished_at_ms.is_some());
    let counts = fleet.backends.store.delayed_counts().await.expect("counts");
    assert_eq!(counts.get(&q), None);
    fleet.stop().await;
}

#[tokio::test(start_paused = true)]
async fn released_jobs_keep_their_priority() {
    let fleet = Fleet::started();
    let q = queue();
    let due = fleet.now() + 1_000;
    let low = Job::new(&q, "work", "{}")
        .with_priority(jobfleet_common::Priority::LOW)
        .with_run_at_ms(due);
    let high = Job::new(&q, "work", "{}")
        .with_priority(jobfleet_common::Priority::CRITICAL)
        .with_run_at_ms(due);
    fleet.publish(Route::Delayed, &low).await;
    fleet.publish(Route::Delayed, &high).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Both were released together; the consumer starts only now and sees priority order.
    let mut ready = fleet.ready(&q).await;
    let first = recv(&mut ready, Duration::from_secs(1))
        .await
        .expect("first");
    let second = recv(&mut ready, Duration::from_secs(1))
        .await
        .expect("second");
    assert_eq!((first.id, second.id), (high.id, low.id));
    fleet.stop().await;
}

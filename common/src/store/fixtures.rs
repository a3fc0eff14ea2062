//! Records for the store backends' own tests, so every backend tests the same data.

use bytes::Bytes;

use super::{DeadLetter, ScheduledJob, WorkerInfo};
use crate::job::{ErrorKind, JobId};

/// A dead letter of kind `email` in `queue`, died at `died_at_ms`, with a binary body.
pub fn letter(queue: Option<&str>, kind: ErrorKind, died_at_ms: i64) -> DeadLetter {
    DeadLetter {
        id: JobId::new(),
        queue: queue.map(str::to_string),
        kind: Some("email".into()),
        reason: format!("gave up: {kind}"),
        error_kind: kind,
        errors: Vec::new(),
        died_at_ms,
        body: Bytes::from_static(b"\x00binary\xff"),
        content_type: None,
    }
}

/// A worker named `id` on queue `q`.
pub fn worker(id: &str) -> WorkerInfo {
    WorkerInfo {
        id: id.into(),
        host: "h".into(),
        pid: 1,
        queues: vec!["q".into()],
        concurrency: 4,
        running: 0,
        started_at_ms: 0,
        last_seen_ms: 0,
        running_jobs: Vec::new(),
        completed: 0,
        failed: 0,
        by_queue: Default::default(),
    }
}

/// A job of `queue` due at `due_ms`, its body naming both so bodies tell jobs apart.
pub fn scheduled(queue: &str, due_ms: i64) -> ScheduledJob {
    ScheduledJob {
        id: JobId::new(),
        queue: queue.into(),
        due_ms,
        body: Bytes::from(format!("body of {queue}@{due_ms}")),
    }
}

/// What every store answers for a job's record while the job waits in the delayed set:
/// the record written before it was scheduled, whether the store keeps it as written or
/// (Redis, for a record that says only `scheduled`) answers it from the job itself; a
/// record with more to say (a note) is kept as written; released, the job's next record
/// is read.
pub async fn waiting_records<S>(store: &S) -> super::StoreResult<()>
where
    S: super::DelayedSet + super::JobStates + ?Sized,
{
    use super::{JobRecord, JobState};
    use crate::codec::{self, Format};
    use crate::job::Job;

    let entry = |job: &Job| ScheduledJob {
        id: job.id,
        queue: job.queue.clone(),
        due_ms: 5_000,
        body: codec::encode(job, Format::Binary),
    };
    let waiting = |job: &Job| JobRecord {
        run_at_ms: Some(5_000),
        ..JobRecord::of(job, JobState::Scheduled, job.enqueued_at_ms)
    };
    let plain = Job::new("waiting-q", "k", "{}").with_run_at_ms(5_000);
    let noted = Job::new("waiting-q", "k", "{}").with_run_at_ms(5_000);
    let noted_record = JobRecord {
        note: Some("fired by schedule nightly".into()),
        updated_at_ms: 77,
        ..waiting(&noted)
    };
    store
        .put_records(&[waiting(&plain), noted_record.clone()])
        .await?;
    store.schedule(vec![entry(&plain), entry(&noted)]).await?;
    assert_eq!(store.record(plain.id).await?, Some(waiting(&plain)));
    assert_eq!(store.record(noted.id).await?, Some(noted_record.clone()));

    // Claimed, it still waits until released.
    let claimed = store.claim_due(6_000, 10, 60_000).await?;
    assert_eq!(claimed.len(), 2);
    assert_eq!(store.record(plain.id).await?, Some(waiting(&plain)));
    let pending = JobRecord::of(&plain, JobState::Pending, 6_000);
    store.put_records(std::slice::from_ref(&pending)).await?;
    store.release_done(&[plain.id, noted.id]).await?;
    assert_eq!(store.record(plain.id).await?, Some(pending));
    assert_eq!(store.record(noted.id).await?, Some(noted_record));
    assert_eq!(store.record(JobId::new()).await?, None);
    Ok(())
}

/// The execution-lease behaviour every store must show, on `store`; `sleep(ms)` lets
/// that much of the store's time pass (real time on Redis, paused time when embedded).
pub async fn executions<S, F, Fut>(store: &S, sleep: F) -> super::StoreResult<()>
where
    S: super::Executions + super::JobStates + ?Sized,
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use super::{Admission, JobRecord, JobState, LeaseRequest};
    let req = |holder: &str| LeaseRequest {
        holder: holder.into(),
        ttl_ms: 300,
        max_crashes: 2,
    };
    let id = JobId::new();
    let first = store.admit(id, None, &req("a")).await?;
    assert_eq!(
        first,
        Admission::Clear {
            token: 1,
            crashes: 0
        }
    );
    match store.admit(id, None, &req("b")).await? {
        Admission::Busy { remaining_ms } => assert!(
            (1..=300).contains(&remaining_ms),
            "remaining {remaining_ms}"
        ),
        other => panic!("a live lease refuses others: {other:?}"),
    }
    assert!(store.lease_renew(id, "a", 300).await?, "the holder renews");
    assert!(!store.lease_renew(id, "b", 300).await?, "others do not");
    store.lease_release(id, "b").await?;
    let still = store.admit(id, None, &req("b")).await?;
    assert!(
        matches!(still, Admission::Busy { .. }),
        "only the holder releases: {still:?}"
    );

    store.lease_release(id, "a").await?;
    let second = store.admit(id, None, &req("b")).await?;
    assert_eq!(
        second,
        Admission::Clear {
            token: 2,
            crashes: 0
        },
        "a released lease is no crash"
    );
    sleep(400).await;
    let third = store.admit(id, None, &req("c")).await?;
    assert_eq!(
        third,
        Admission::Clear {
            token: 3,
            crashes: 1
        },
        "b's lease expired unreleased"
    );
    assert!(
        !store.lease_renew(id, "b", 300).await?,
        "b's lease is c's now"
    );
    sleep(400).await;
    let refused = store.admit(id, None, &req("d")).await?;
    assert_eq!(refused, Admission::Crashed { crashes: 2 });
    let again = store.admit(id, None, &req("e")).await?;
    assert_eq!(
        again,
        Admission::Crashed { crashes: 2 },
        "a crash is counted once"
    );

    let job = crate::job::Job::new("q", "k", "{}");
    let running = JobRecord::of(&job, JobState::Running, 5);
    store
        .complete(&JobRecord::of(&job, JobState::Completed, 4))
        .await?;
    let done = store.admit(job.id, Some(&running), &req("a")).await?;
    assert_eq!(done, Admission::Completed);
    assert_eq!(
        store.record(job.id).await?.map(|r| r.state),
        Some(JobState::Completed)
    );

    let job = crate::job::Job::new("q", "k", "{}");
    store.request_cancel(job.id).await?;
    let running = JobRecord::of(&job, JobState::Running, 5);
    let cancelled = store.admit(job.id, Some(&running), &req("a")).await?;
    assert_eq!(cancelled, Admission::CancelRequested);
    assert_eq!(
        store.record(job.id).await?,
        None,
        "a cancelled job is not marked running"
    );

    let job = crate::job::Job::new("q", "k", "{}");
    let busy_id = job.id;
    store.admit(busy_id, None, &req("a")).await?;
    let running = JobRecord::of(&job, JobState::Running, 5);
    let busy = store.admit(busy_id, Some(&running), &req("b")).await?;
    assert!(matches!(busy, Admission::Busy { .. }), "{busy:?}");
    assert_eq!(
        store.record(busy_id).await?,
        None,
        "a busy admission writes nothing"
    );
    Ok(())
}

/// A fire of schedule `name` at `instant_ms` by `leader`, stepping the watermark from
/// `expected_ms` to the instant.
pub fn fire_step(
    name: &str,
    leader: &super::Leadership,
    expected_ms: i64,
    instant_ms: i64,
) -> super::CronStep {
    use super::{CronAction, CronFire, CronStep, JobRecord, JobState};
    use crate::codec::{self, Format};
    use crate::cron::{Schedule, ScheduleSpec};
    let schedule =
        Schedule::new(name, ScheduleSpec::new("* * * * * *", "q", "echo")).expect("valid");
    let job = schedule.job(instant_ms, instant_ms);
    CronStep {
        name: name.into(),
        leader: leader.clone(),
        expected_watermark_ms: expected_ms,
        watermark_ms: instant_ms,
        action: CronAction::Fire(Box::new(CronFire {
            instant_ms,
            record: JobRecord::of(&job, JobState::Scheduled, instant_ms),
            unique_key: job.unique_key.clone().expect("a cron job has a key"),
            unique_ttl_ms: 60_000,
            job: ScheduledJob {
                id: job.id,
                queue: job.queue.clone(),
                due_ms: instant_ms,
                body: codec::encode(&job, Format::Binary),
            },
        })),
    }
}

/// The schedule behaviour every store must show, on `store`; `sleep(ms)` lets that much
/// of the store's time pass (real time on Redis, paused time when embedded).
pub async fn schedules<S, F, Fut>(store: &S, sleep: F) -> super::StoreResult<()>
where
    S: super::Store + ?Sized,
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use super::{
        CronAction, CronOutcome, JobState, Leadership, LockRequest, ScheduleSource, LEADER_LOCK,
    };
    use crate::cron::{instant_job_id, instant_unique_key, ScheduleSpec};
    use crate::job::LockMode;

    let spec = ScheduleSpec::new("* * * * * *", "q", "echo");
    assert!(
        store
            .schedule_put("s", &spec, ScheduleSource::Config)
            .await?
    );
    let created = store.schedule_get("s").await?.expect("created");
    assert_eq!(created.source, ScheduleSource::Config);
    assert_eq!(created.state.watermark_ms, created.state.created_at_ms);
    let start = created.state.watermark_ms;
    let now = store.store_time_ms().await?;
    assert!((start..start + 5_000).contains(&now), "{start} {now}");

    // Replacing the declaration keeps the state.
    let mut changed = spec.clone();
    changed.kind = "other".into();
    assert!(
        !store
            .schedule_put("s", &changed, ScheduleSource::Runtime)
            .await?
    );
    let replaced = store.schedule_get("s").await?.expect("kept");
    assert_eq!(
        (replaced.spec.kind.as_str(), replaced.source),
        ("other", ScheduleSource::Runtime)
    );
    assert_eq!(replaced.state, created.state);

    // Only the holder of the leader lock, with its current token, steps.
    let lease = |holder: &str| LockRequest {
        key: LEADER_LOCK.into(),
        mode: LockMode::Exclusive,
        holder: holder.into(),
        ttl_ms: 1_500,
    };
    let nobody = Leadership {
        holder: "a".into(),
        token: 1,
    };
    let first = start + 1_000;
    assert_eq!(
        store
            .cron_step(&fire_step("s", &nobody, start, first))
            .await?,
        CronOutcome::NotLeader
    );
    let token = store.lock_acquire(&lease("a")).await?.expect("free");
    let a = Leadership {
        holder: "a".into(),
        token,
    };
    let step = fire_step("s", &a, start, first);
    assert_eq!(store.cron_step(&step).await?, CronOutcome::Applied);
    // The same step again finds the watermark moved: one instant, one fire.
    assert_eq!(store.cron_step(&step).await?, CronOutcome::Moved);
    let state = store.schedule_get("s").await?.expect("there").state;
    assert_eq!(state.watermark_ms, first);
    assert_eq!(state.last_instant_ms, Some(first));
    assert_eq!(state.last_job, Some(instant_job_id("s", first)));
    assert_eq!(state.fires, 1);
    // The job waits in the delayed set, recorded as scheduled, holding its key.
    let id = instant_job_id("s", first);
    let claimed = store.claim_due(i64::MAX / 2, 10, 60_000).await?;
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), vec![id]);
    store.release_done(&[id]).await?;
    let record = store.record(id).await?.expect("recorded");
    assert_eq!(record.state, JobState::Scheduled);
    let key = instant_unique_key("s", first);
    assert_eq!(
        store.unique_claim(&key, JobId::new(), 1_000).await?,
        Some(id)
    );

    // A step whose key another job holds does not fire, and moves nothing.
    let second = first + 1_000;
    let mut clash = fire_step("s", &a, first, second);
    if let CronAction::Fire(fire) = &mut clash.action {
        fire.unique_key = key.clone();
    }
    assert_eq!(store.cron_step(&clash).await?, CronOutcome::Taken(id));
    assert_eq!(
        store
            .schedule_get("s")
            .await?
            .expect("there")
            .state
            .watermark_ms,
        first
    );

    // A fire for an instant whose own job already holds the key (its watermark lost,
    // say by a store restored from a backup) fires nothing and moves nothing.
    let mut again = fire_step("s", &a, first, first);
    again.expected_watermark_ms = first;
    assert_eq!(store.cron_step(&again).await?, CronOutcome::Taken(id));
    assert_eq!(
        store.schedule_get("s").await?.expect("there").state.fires,
        1
    );

    // Owing, then advancing, then firing the owed instant clears it.
    let owe = super::CronStep {
        action: CronAction::Owe(second),
        watermark_ms: second,
        ..fire_step("s", &a, first, second)
    };
    assert_eq!(store.cron_step(&owe).await?, CronOutcome::Applied);
    assert_eq!(
        store.schedule_get("s").await?.expect("there").state.owed_ms,
        Some(second)
    );
    let third = second + 1_000;
    let advance = super::CronStep {
        action: CronAction::Advance,
        watermark_ms: third,
        ..fire_step("s", &a, second, third)
    };
    assert_eq!(store.cron_step(&advance).await?, CronOutcome::Applied);
    let owed = super::CronStep {
        watermark_ms: third,
        ..fire_step("s", &a, third, second)
    };
    assert_eq!(store.cron_step(&owed).await?, CronOutcome::Applied);
    let state = store.schedule_get("s").await?.expect("there").state;
    assert_eq!((state.owed_ms, state.watermark_ms), (None, third));
    assert_eq!((state.last_instant_ms, state.fires), (Some(second), 2));
    // An owed instant found fired already is settled: no longer owed, nothing fired.
    let owe_third = super::CronStep {
        action: CronAction::Owe(third),
        ..fire_step("s", &a, third, third)
    };
    assert_eq!(store.cron_step(&owe_third).await?, CronOutcome::Applied);
    let settle = super::CronStep {
        action: CronAction::Settle(third),
        ..fire_step("s", &a, third, third)
    };
    assert_eq!(store.cron_step(&settle).await?, CronOutcome::Applied);
    let state = store.schedule_get("s").await?.expect("there").state;
    assert_eq!((state.owed_ms, state.fires), (None, 2));

    // A deposed leader (its lease ran out and another took the lock) steps no more,
    // though its lease ran out only a moment ago.
    sleep(1_600).await;
    let b_token = store.lock_acquire(&lease("b")).await?.expect("expired");
    assert!(b_token > token);
    assert_eq!(
        store
            .cron_step(&fire_step("s", &a, third, third + 1_000))
            .await?,
        CronOutcome::NotLeader
    );
    let b = Leadership {
        holder: "b".into(),
        token: b_token,
    };

    // Paused: no step applies; a resume moves the watermark to now.
    assert!(store.schedule_pause("s", true).await?);
    assert_eq!(
        store
            .cron_step(&fire_step("s", &b, third, third + 1_000))
            .await?,
        CronOutcome::Paused
    );
    assert!(store.schedule_get("s").await?.expect("there").state.paused);
    sleep(50).await;
    assert!(store.schedule_pause("s", false).await?);
    let resumed = store.schedule_get("s").await?.expect("there").state;
    assert!(!resumed.paused);
    let before_resume = store.store_time_ms().await?;
    assert!(resumed.watermark_ms >= before_resume - 1_000, "{resumed:?}");

    // Re-enabled: like a resume, the instants it was disabled for are not due.
    let disabled = ScheduleSpec {
        enabled: false,
        ..spec.clone()
    };
    assert!(
        store
            .schedule_put("d", &disabled, ScheduleSource::Runtime)
            .await?
    );
    let created = store
        .schedule_get("d")
        .await?
        .expect("there")
        .state
        .watermark_ms;
    sleep(1_100).await;
    assert!(
        !store
            .schedule_put("d", &spec, ScheduleSource::Runtime)
            .await?
    );
    let enabled = store
        .schedule_get("d")
        .await?
        .expect("there")
        .state
        .watermark_ms;
    assert!(enabled >= created + 1_000, "{created} → {enabled}");
    assert!(store.schedule_remove("d").await?);

    // Removed: gone, and so is its state.
    assert!(
        store
            .schedule_put("t", &spec, ScheduleSource::Runtime)
            .await?
    );
    let names: Vec<String> = store
        .schedule_list()
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["s", "t"]);
    assert!(store.schedule_remove("s").await?);
    assert!(!store.schedule_remove("s").await?);
    assert!(!store.schedule_pause("s", true).await?);
    assert_eq!(store.schedule_get("s").await?, None);
    assert_eq!(
        store
            .cron_step(&fire_step(
                "s",
                &b,
                resumed.watermark_ms,
                resumed.watermark_ms + 1_000
            ))
            .await?,
        CronOutcome::Gone
    );
    Ok(())
}

/// The pipeline behaviour every store must show, on `store`.
pub async fn pipelines<S>(store: &S) -> super::StoreResult<()>
where
    S: super::Pipelines + ?Sized,
{
    use super::StoredPipeline;
    use crate::pipeline::PipelineSpec;

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

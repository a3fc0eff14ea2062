//! Cron schedules and the fenced step the leader fires them with.

use std::time::Duration;

use jobfleet_common::cron::{instant_job_id, instant_unique_key, ScheduleSpec};
use jobfleet_common::store::{
    CronAction, CronOutcome, CronStep, JobState, Leadership, LockRequest, ScheduleSource,
    LEADER_LOCK,
};
use jobfleet_common::{JobId, LockMode, Store};
use tokio::time::sleep;

use super::fixtures::fire_step;
use super::Checked;

/// Cron schedules: declared and replaced keeping their state; stepped only by the
/// leader with its current token, one fire per instant; owed, advanced, settled; paused,
/// resumed, disabled and re-enabled without the instants in between; removed.
pub async fn schedules_fire_once_per_instant_under_the_leader(store: &dyn Store) -> Checked {
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
    let owe = CronStep {
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
    let advance = CronStep {
        action: CronAction::Advance,
        watermark_ms: third,
        ..fire_step("s", &a, second, third)
    };
    assert_eq!(store.cron_step(&advance).await?, CronOutcome::Applied);
    let owed = CronStep {
        watermark_ms: third,
        ..fire_step("s", &a, third, second)
    };
    assert_eq!(store.cron_step(&owed).await?, CronOutcome::Applied);
    let state = store.schedule_get("s").await?.expect("there").state;
    assert_eq!((state.owed_ms, state.watermark_ms), (None, third));
    assert_eq!((state.last_instant_ms, state.fires), (Some(second), 2));
    // An owed instant found fired already is settled: no longer owed, nothing fired.
    let owe_third = CronStep {
        action: CronAction::Owe(third),
        ..fire_step("s", &a, third, third)
    };
    assert_eq!(store.cron_step(&owe_third).await?, CronOutcome::Applied);
    let settle = CronStep {
        action: CronAction::Settle(third),
        ..fire_step("s", &a, third, third)
    };
    assert_eq!(store.cron_step(&settle).await?, CronOutcome::Applied);
    let state = store.schedule_get("s").await?.expect("there").state;
    assert_eq!((state.owed_ms, state.fires), (None, 2));

    // A deposed leader (its lease ran out and another took the lock) steps no more,
    // though its lease ran out only a moment ago.
    sleep(Duration::from_millis(1_600)).await;
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
    sleep(Duration::from_millis(50)).await;
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
    sleep(Duration::from_millis(1_100)).await;
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

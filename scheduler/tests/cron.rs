//! Cron on the embedded backend with tokio's clock paused: overlap policies, pause and
//! resume, a manual trigger, and the config file winning over a runtime edit at
//! start-up. (The multi-process cases, with kills and outages, are in
//! `tests/tests/cron_schedulers.rs`.)

mod support;

use std::time::Duration;

use jobfleet_common::broker::Consumer;
use jobfleet_common::cron::{fired_for, instant_job_id, OverlapPolicy, ScheduleSpec};
use jobfleet_common::store::{JobRecord, JobState, ScheduleSource, StoredSchedule};
use jobfleet_common::{Config, Job};
use jobfleet_scheduler::ops;
use support::{queue, recv, Fleet};

const NAME: &str = "every-second";

fn config(queue: &str, overlap: OverlapPolicy) -> Config {
    let mut config = Config::default();
    let mut spec = ScheduleSpec::new("* * * * * *", queue, "work");
    spec.overlap = overlap;
    config.schedules.insert(NAME.into(), spec);
    config
}

async fn schedule(fleet: &Fleet) -> StoredSchedule {
    fleet
        .backends
        .store
        .schedule_get(NAME)
        .await
        .expect("store")
        .expect("the config's schedule is in the store")
}

/// Marks the schedule's last job completed, as a worker would.
async fn finish_last_job(fleet: &Fleet) {
    let id = schedule(fleet).await.state.last_job.expect("fired");
    let mut record = fleet.record(id).await.expect("recorded");
    record.state = JobState::Completed;
    fleet.backends.store.complete(&record).await.expect("store");
}

/// A scheduler firing an every-second schedule with `overlap`, its first job received
/// (and left unfinished), then 3 s later.
async fn first_fire_then_wait(overlap: OverlapPolicy) -> (Fleet, Consumer, Job) {
    let q = queue();
    let mut fleet = Fleet::with_config(config(&q, overlap));
    fleet.start_scheduler();
    let mut ready = fleet.ready(&q).await;
    let first = recv(&mut ready, Duration::from_secs(2))
        .await
        .expect("the first instant fired");
    sleep_ms(3_000).await;
    (fleet, ready, first)
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[tokio::test(start_paused = true)]
async fn a_fired_jobs_records_name_the_schedule_and_instant_until_it_finishes() {
    let (fleet, _ready, first) = first_fire_then_wait(OverlapPolicy::Allow).await;
    let fired = fired_for(&first).expect("a schedule's job");
    let expected = format!(
        "fired by schedule {NAME} for {}",
        jobfleet_common::cron::rfc3339(fired.instant_ms)
    );
    let record = fleet.record(first.id).await.expect("recorded");
    assert_eq!(record.state, JobState::Pending, "released");
    assert_eq!(record.note.as_deref(), Some(expected.as_str()));
    // What a worker writes as it runs and completes it (`running_record`, then the
    // running record completed) starts from `JobRecord::of`, so it says the same.
    let running = JobRecord {
        started_at_ms: Some(1),
        ..JobRecord::of(&first, JobState::Running, 1)
    };
    let completed = JobRecord {
        state: JobState::Completed,
        finished_at_ms: Some(2),
        ..running
    };
    fleet
        .backends
        .store
        .complete(&completed)
        .await
        .expect("store");
    let record = fleet.record(first.id).await.expect("recorded");
    assert_eq!(record.state, JobState::Completed);
    assert_eq!(record.note.as_deref(), Some(expected.as_str()));
    fleet.stop().await;
}

#[tokio::test(start_paused = true)]
async fn overlap_allow_fires_every_instant_while_runs_are_unfinished() {
    let q = queue();
    let mut fleet = Fleet::with_config(config(&q, OverlapPolicy::Allow));
    fleet.start_scheduler();
    sleep_ms(4_100).await;
    let s = schedule(&fleet).await;
    assert!((4..=5).contains(&s.state.fires), "{s:?}");
    fleet.stop().await;
}

#[tokio::test(start_paused = true)]
async fn overlap_skip_fires_nothing_until_the_previous_run_finishes() {
    let (fleet, mut ready, first) = first_fire_then_wait(OverlapPolicy::Skip).await;
    let s = schedule(&fleet).await;
    assert_eq!(s.state.fires, 1, "skipped while the first runs: {s:?}");
    assert!(s.state.watermark_ms >= s.state.last_instant_ms.expect("fired") + 2_000);
    assert_eq!(s.state.last_job, Some(first.id));

    finish_last_job(&fleet).await;
    let second = recv(&mut ready, Duration::from_millis(1_100))
        .await
        .expect("fires at the next instant once the first finished");
    let (a, b) = (fired_for(&first), fired_for(&second));
    let (a, b) = (a.expect("cron job"), b.expect("cron job"));
    // The instants between were skipped (the one at the finish may fire).
    assert!(b.instant_ms >= a.instant_ms + 3_000, "{a:?} {b:?}");
    assert_eq!(second.id, instant_job_id(NAME, b.instant_ms));
    fleet.stop().await;
}

#[tokio::test(start_paused = true)]
async fn overlap_queue_fires_the_latest_owed_instant_when_the_previous_run_finishes() {
    let (fleet, mut ready, _) = first_fire_then_wait(OverlapPolicy::Queue).await;
    let s = schedule(&fleet).await;
    assert_eq!(s.state.fires, 1, "{s:?}");
    let owed = s.state.owed_ms.expect("a fire is owed");
    assert_eq!(
        owed, s.state.watermark_ms,
        "the latest instant is the one owed"
    );

    finish_last_job(&fleet).await;
    // Owed fires are looked at every tick (200 ms).
    let queued = recv(&mut ready, Duration::from_millis(300))
        .await
        .expect("the owed instant fired once the previous run finished");
    let fired = fired_for(&queued).expect("cron job");
    assert_eq!(fired.instant_ms, owed);
    let s = schedule(&fleet).await;
    assert_eq!(s.state.fires, 2, "{s:?}");
    assert_eq!(s.state.last_instant_ms, Some(owed), "{s:?}");
    // The owed fire's run is unfinished in turn: a later instant may be owed now.
    assert!(s.state.owed_ms.is_none_or(|o| o > owed), "{s:?}");
    fleet.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_paused_schedule_fires_nothing_and_resumes_without_catching_up() {
    let q = queue();
    let mut fleet = Fleet::with_config(config(&q, OverlapPolicy::Allow));
    fleet.start_scheduler();
    sleep_ms(1_500).await;
    assert!(ops::schedule_pause(&*fleet.backends.store, NAME, true)
        .await
        .expect("store"));
    let before = schedule(&fleet).await.state.fires;
    sleep_ms(5_000).await;
    assert_eq!(schedule(&fleet).await.state.fires, before, "paused");
    assert!(ops::schedule_pause(&*fleet.backends.store, NAME, false)
        .await
        .expect("store"));
    sleep_ms(2_100).await;
    let after = schedule(&fleet).await.state.fires;
    // Two or three instants since the resume, none of the five while paused.
    assert!(
        (before + 2..=before + 3).contains(&after),
        "{before} → {after}"
    );
    fleet.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_trigger_fires_once_now_outside_the_instants() {
    let q = queue();
    let mut config = config(&q, OverlapPolicy::Allow);
    config.schedules.get_mut(NAME).expect("declared").enabled = false;
    let mut fleet = Fleet::with_config(config);
    fleet.start_scheduler();
    let mut ready = fleet.ready(&q).await;
    sleep_ms(2_000).await;
    let id = ops::schedule_trigger(&*fleet.backends.store, NAME)
        .await
        .expect("store")
        .expect("the schedule exists");
    let job = recv(&mut ready, Duration::from_secs(1))
        .await
        .expect("released");
    assert_eq!(job.id, id);
    let fired = fired_for(&job).expect("a schedule's job");
    assert!(fired.manual && fired.schedule == NAME, "{fired:?}");
    // Released, its record (`pending` now) still says where it came from.
    let record = fleet.record(id).await.expect("recorded");
    assert_eq!(record.state, JobState::Pending);
    let note = record.note.unwrap_or_default();
    assert!(
        note.starts_with(&format!("triggered by hand from schedule {NAME} at ")),
        "{note}"
    );
    let s = schedule(&fleet).await;
    assert_eq!(
        s.state.fires, 0,
        "a trigger is not an instant of a disabled schedule"
    );
    assert!(recv(&mut ready, Duration::from_secs(2)).await.is_none());
    assert_eq!(
        ops::schedule_trigger(&*fleet.backends.store, "nope")
            .await
            .expect("store"),
        None
    );
    fleet.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_config_file_wins_over_a_runtime_edit_at_start_up_and_the_state_stays() {
    let q = queue();
    let mut fleet = Fleet::with_config(config(&q, OverlapPolicy::Allow));
    fleet.start_scheduler();
    sleep_ms(2_100).await;
    let mut edited = schedule(&fleet).await.spec;
    edited.kind = "edited".into();
    let limits = fleet.config.limits.clone();
    ops::schedule_add(&*fleet.backends.store, &limits, NAME, &edited, true)
        .await
        .expect("replaced");
    let refused = ops::schedule_add(&*fleet.backends.store, &limits, NAME, &edited, false).await;
    assert!(
        refused.is_err_and(|e| e.to_string().contains("exists")),
        "a taken name needs --replace"
    );
    let s = schedule(&fleet).await;
    assert_eq!(
        (s.spec.kind.as_str(), s.source),
        ("edited", ScheduleSource::Runtime)
    );
    fleet.stop_roles().await;
    let before = schedule(&fleet).await.state;

    fleet.start_scheduler();
    sleep_ms(100).await;
    let s = schedule(&fleet).await;
    assert_eq!(
        (s.spec.kind.as_str(), s.source),
        ("work", ScheduleSource::Config)
    );
    // The state was kept: same creation, same or later watermark, as many fires or more.
    assert_eq!(s.state.created_at_ms, before.created_at_ms);
    assert!(
        s.state.watermark_ms >= before.watermark_ms,
        "{before:?} → {s:?}"
    );
    assert!(
        s.state.fires >= before.fires && before.fires >= 2,
        "{before:?} → {s:?}"
    );

    assert!(ops::schedule_list(&*fleet.backends.store)
        .await
        .expect("store")
        .iter()
        .all(|v| v.next_fire_ms.is_some()));
    fleet.stop().await;
}

/// `Config::validate` cannot read a cron expression (common has no cron parser), so the
/// scheduler's own entry point refuses one that does not compile, naming the key, before
/// it starts anything: a library caller that skipped the CLI's check is still told.
#[tokio::test]
async fn a_schedule_that_does_not_compile_stops_the_scheduler_at_start_with_its_key() {
    let mut config = config("cron-bad", OverlapPolicy::Skip);
    if let Some(spec) = config.schedules.get_mut(NAME) {
        spec.cron = "61 * * * *".into();
    }
    let backends = jobfleet_common::Backends::embedded();
    let stop = tokio_util::sync::CancellationToken::new();
    let run = jobfleet_scheduler::run(std::sync::Arc::new(config), backends, stop);
    let result = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the scheduler returns at start instead of running");
    let error = result.expect_err("an invalid cron expression is refused");
    assert!(
        matches!(&error, jobfleet_scheduler::SchedulerError::Config(e) if e.key == "schedules.every-second.cron"),
        "{error}"
    );
}

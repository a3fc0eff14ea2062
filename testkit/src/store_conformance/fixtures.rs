//! The records the store checks are made of, so every backend tests the same data; the
//! backends' own tests (and the CLI's renderings) use them too.

use bytes::Bytes;
use jobfleet_common::codec::{self, Format};
use jobfleet_common::cron::ScheduleSpec;
use jobfleet_common::store::{
    CronAction, CronFire, CronStep, DeadLetter, JobRecord, JobState, Leadership, ScheduledJob,
    WorkerInfo,
};
use jobfleet_common::{ErrorKind, JobId};

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

/// A fire of schedule `name` at `instant_ms` by `leader`, stepping the watermark from
/// `expected_ms` to the instant.
pub fn fire_step(name: &str, leader: &Leadership, expected_ms: i64, instant_ms: i64) -> CronStep {
    let job =
        ScheduleSpec::new("* * * * * *", "q", "echo").instant_job(name, instant_ms, instant_ms);
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

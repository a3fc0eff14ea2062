//! A job's state record while it waits in the delayed set.

use jobfleet_common::codec::{self, Format};
use jobfleet_common::store::{JobRecord, JobState, ScheduledJob};
use jobfleet_common::{Job, JobId, Store};

use super::Checked;

/// What every store answers for a job's record while the job waits in the delayed set:
/// the record written before it was scheduled, whether the store keeps it as written or
/// (Redis, for a record that says only `scheduled`) answers it from the job itself; a
/// record with more to say (a note) is kept as written; released, the job's next record
/// is read.
pub async fn a_waiting_job_reads_as_scheduled_until_released(store: &dyn Store) -> Checked {
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

//! Redis execution leases: one hash per job (`ns:lease:{id}`: `holder`, `until` in server
//! ms, `token`, `crashes`), taken by the admission script together with the completion
//! marker, cancel flag and `running` record checks, in one round trip.
//!
//! Expiry is judged by the server's clock, as for locks. The hash itself expires with the
//! job's records, so the token increases per job for as long as the job is remembered.

use crate::IntoStore as _;
use async_trait::async_trait;

use super::scripts::{ADMIT, LEASE_RELEASE, LEASE_RENEW};
use super::{encode_json, px, RedisStore};
use jobfleet_common::job::JobId;
use jobfleet_common::store::{
    Admission, Executions, JobRecord, LeaseRequest, StoreError, StoreResult,
};

#[async_trait]
impl Executions for RedisStore {
    async fn admit(
        &self,
        id: JobId,
        running: Option<&JobRecord>,
        lease: &LeaseRequest,
    ) -> StoreResult<Admission> {
        let json = match running {
            Some(record) => encode_json("job record", record)?,
            None => String::new(),
        };
        let reply: Vec<i64> = ADMIT
            .key(self.keys.of_job("done", id))
            .key(self.keys.of_job("cancel", id))
            .key(self.keys.of_job("job", id))
            .key(self.keys.of_job("lease", id))
            .arg(json)
            .arg(self.record_ttl_ms())
            .arg(&lease.holder)
            .arg(px(lease.ttl_ms))
            .arg(lease.max_crashes)
            .invoke_async(&mut self.conn())
            .await
            .store()?;
        admission(&reply)
    }

    async fn lease_renew(&self, id: JobId, holder: &str, ttl_ms: u64) -> StoreResult<bool> {
        let held: i64 = LEASE_RENEW
            .key(self.keys.of_job("lease", id))
            .arg(holder)
            .arg(px(ttl_ms))
            .invoke_async(&mut self.conn())
            .await
            .store()?;
        Ok(held == 1)
    }

    async fn lease_release(&self, id: JobId, holder: &str) -> StoreResult<()> {
        let _: i64 = LEASE_RELEASE
            .key(self.keys.of_job("lease", id))
            .arg(holder)
            .invoke_async(&mut self.conn())
            .await
            .store()?;
        Ok(())
    }
}

/// The admission script's reply as an [`Admission`].
fn admission(reply: &[i64]) -> StoreResult<Admission> {
    let count = |i: usize| {
        reply
            .get(i)
            .and_then(|n| u64::try_from(*n).ok())
            .ok_or_else(|| StoreError::Corrupt(format!("admit script returned {reply:?}")))
    };
    let small = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    match reply.first() {
        Some(0) => Ok(Admission::Clear {
            token: count(1)?,
            crashes: small(count(2)?),
        }),
        Some(1) => Ok(Admission::Completed),
        Some(2) => Ok(Admission::CancelRequested),
        Some(3) => Ok(Admission::Busy {
            remaining_ms: count(1)?,
        }),
        Some(4) => Ok(Admission::Crashed {
            crashes: small(count(1)?),
        }),
        _ => Err(StoreError::Corrupt(format!(
            "admit script returned {reply:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use redis::AsyncCommands;

    use super::*;
    use crate::test_store::TestStore;
    use jobfleet_common::store::{JobState, JobStates};

    fn lease(holder: &str, ttl_ms: u64) -> LeaseRequest {
        LeaseRequest {
            holder: holder.into(),
            ttl_ms,
            max_crashes: 2,
        }
    }

    #[tokio::test]
    async fn the_lease_expires_with_the_records_and_goes_with_completion() -> StoreResult<()> {
        let t = TestStore::new().await;
        let job = jobfleet_common::job::Job::new("q", "k", "{}");
        let running = JobRecord::of(&job, JobState::Running, 1);
        let admitted = t.admit(job.id, Some(&running), &lease("a", 10_000)).await?;
        assert_eq!(
            admitted,
            Admission::Clear {
                token: 1,
                crashes: 0
            }
        );
        assert_eq!(t.record(job.id).await?, Some(running));
        let ttl: i64 = t
            .conn()
            .pttl(t.keys.of_job("lease", job.id))
            .await
            .store()?;
        assert!(ttl > 0, "the lease hash expires like the records: {ttl}");
        t.complete(&JobRecord::of(&job, JobState::Completed, 2))
            .await?;
        let lease_left: bool = t
            .conn()
            .exists(t.keys.of_job("lease", job.id))
            .await
            .store()?;
        assert!(!lease_left, "a completed job keeps no lease");
        t.cleanup().await;
        Ok(())
    }

    #[test]
    fn odd_replies_are_corrupt() {
        assert!(matches!(admission(&[]), Err(StoreError::Corrupt(_))));
        assert!(matches!(admission(&[9]), Err(StoreError::Corrupt(_))));
        assert!(matches!(admission(&[0, 1]), Err(StoreError::Corrupt(_))));
        assert!(matches!(admission(&[3, -1]), Err(StoreError::Corrupt(_))));
    }
}

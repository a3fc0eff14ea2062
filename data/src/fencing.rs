//! The lock a data job holds and the fence its publication passes: each kind writes
//! under one exclusive lock (`dataset:{name}`, `model:{name}`, `predict:{output}`), and
//! just before it publishes passes the store's fenced write with that lock's token, so a
//! holder that lost the lock can never publish after a newer one.

use bytes::Bytes;
use jobfleet_common::LockMode;
use jobfleet_worker::JobContext;

use crate::catalog::{self, Catalogued};
use crate::error::DataError;
use crate::storage::Storage;

/// The fencing token of the job's exclusive lock `key`; a job holding another lock (its
/// producer set one) is refused, since its token says nothing about what it writes.
pub(crate) fn lock_token(ctx: &JobContext, key: &str) -> Result<u64, DataError> {
    match (ctx.job().lock.as_ref(), ctx.fence()) {
        (Some(lock), Some(token)) if lock.key == key && lock.mode == LockMode::Exclusive => {
            Ok(token)
        }
        _ => Err(DataError::invalid(
            "lock",
            format!(
                "this kind writes under the exclusive lock {key:?}; leave the job's lock \
                 unset and the worker takes it"
            ),
        )),
    }
}

/// Passes the store's fence at `data:{key}` with the job's token for the lock `key`,
/// recording `value`: [`DataError::Stale`] if a holder with a newer token passed first.
pub(crate) async fn fence(ctx: &JobContext, key: &str, value: u64) -> Result<(), DataError> {
    lock_token(ctx, key)?;
    match ctx
        .fenced_write(&format!("data:{key}"), Bytes::from(value.to_string()))
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(DataError::Stale(format!(
            "a newer holder of {key:?} published first; this attempt lost its lock"
        ))),
        Err(e) => Err(DataError::Io(e.to_string())),
    }
}

/// Publishes `manifest` in the catalog once the job's token for the lock `lock` passed the
/// store's fence (recording the manifest's version): the last step of ingest and train.
pub(crate) async fn publish<M: Catalogued>(
    ctx: &JobContext,
    storage: &Storage,
    lock: &str,
    manifest: &M,
) -> Result<(), DataError> {
    fence(ctx, lock, manifest.version()).await?;
    catalog::publish(
        storage,
        M::KIND,
        manifest.name(),
        manifest.version(),
        manifest.job_id(),
        manifest,
    )
    .await
}

//! Redis locks with fencing tokens: an exclusive holder in a string with `PX`, shared
//! holders in a ZSET scored by expiry, and a per-key counter that issues the tokens.
//!
//! Each call is one script, and the scripts judge expiry by the server's `TIME`, so
//! grants stay mutually exclusive whatever the clients' clocks say. The counter is shared
//! by both modes and never expires, which is what makes every token greater than all
//! before it for that key.

use crate::IntoStore as _;
use async_trait::async_trait;
use bytes::Bytes;
use redis::AsyncCommands;

use super::scripts::{FENCED_WRITE, LOCK_ACQUIRE, LOCK_RELEASE, LOCK_RENEW};
use super::{px, RedisStore};
use jobfleet_common::job::LockMode;
use jobfleet_common::store::{LockRequest, Locks, StoreError, StoreResult};

impl RedisStore {
    /// A lock's exclusive key and shared set.
    pub(super) fn lock_keys(&self, key: &str) -> [String; 2] {
        [
            self.keys.key(&format!("lock:{key}:x")),
            self.keys.key(&format!("lock:{key}:s")),
        ]
    }
}

#[async_trait]
impl Locks for RedisStore {
    async fn lock_acquire(&self, req: &LockRequest) -> StoreResult<Option<u64>> {
        let [exclusive, shared] = self.lock_keys(&req.key);
        let mode = match req.mode {
            LockMode::Exclusive => "x",
            LockMode::Shared => "s",
        };
        Ok(LOCK_ACQUIRE
            .key(exclusive)
            .key(shared)
            .key(self.keys.key(&format!("fence:{}", req.key)))
            .arg(mode)
            .arg(&req.holder)
            .arg(px(req.ttl_ms))
            .invoke_async(&mut self.conn())
            .await
            .store()?)
    }

    async fn lock_renew(&self, req: &LockRequest) -> StoreResult<bool> {
        let [exclusive, shared] = self.lock_keys(&req.key);
        let renewed: i64 = LOCK_RENEW
            .key(exclusive)
            .key(shared)
            .arg(&req.holder)
            .arg(px(req.ttl_ms))
            .invoke_async(&mut self.conn())
            .await
            .store()?;
        Ok(renewed == 1)
    }

    async fn lock_release(&self, req: &LockRequest) -> StoreResult<()> {
        let [exclusive, shared] = self.lock_keys(&req.key);
        let _: i64 = LOCK_RELEASE
            .key(exclusive)
            .key(shared)
            .arg(&req.holder)
            .invoke_async(&mut self.conn())
            .await
            .store()?;
        Ok(())
    }

    async fn fenced_write(&self, resource: &str, token: u64, value: Bytes) -> StoreResult<bool> {
        let written: i64 = FENCED_WRITE
            .key(self.keys.key(&format!("fenced:{resource}")))
            .arg(token.to_string())
            .arg(value.as_ref())
            .invoke_async(&mut self.conn())
            .await
            .store()?;
        Ok(written == 1)
    }

    async fn fenced_read(&self, resource: &str) -> StoreResult<Option<(u64, Bytes)>> {
        let key = self.keys.key(&format!("fenced:{resource}"));
        let (token, value): (Option<String>, Option<Vec<u8>>) =
            self.conn().hmget(key, &["token", "value"]).await.store()?;
        match (token, value) {
            (Some(token), Some(value)) => {
                let token = token.parse().map_err(|e| {
                    StoreError::Corrupt(format!("fenced resource {resource}: token {token:?}: {e}"))
                })?;
                Ok(Some((token, Bytes::from(value))))
            }
            (None, None) => Ok(None),
            _ => Err(StoreError::Corrupt(format!(
                "fenced resource {resource}: half written"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::sleep;

    use super::*;
    use crate::test_store::TestStore;

    fn req(holder: &str, mode: LockMode, ttl_ms: u64) -> LockRequest {
        LockRequest {
            key: "k".into(),
            mode,
            holder: holder.into(),
            ttl_ms,
        }
    }

    fn exclusive(holder: &str) -> LockRequest {
        req(holder, LockMode::Exclusive, 10_000)
    }

    fn shared(holder: &str) -> LockRequest {
        req(holder, LockMode::Shared, 10_000)
    }

    #[tokio::test]
    async fn exclusive_excludes_everyone_and_shared_holders_coexist() -> StoreResult<()> {
        let t = TestStore::new().await;
        let t1 = t.lock_acquire(&exclusive("a")).await?.expect("granted");
        assert_eq!(t.lock_acquire(&exclusive("b")).await?, None);
        assert_eq!(t.lock_acquire(&shared("b")).await?, None);
        t.lock_release(&exclusive("a")).await?;

        let t2 = t.lock_acquire(&shared("b")).await?.expect("granted");
        let t3 = t
            .lock_acquire(&shared("c"))
            .await?
            .expect("shared holders coexist");
        assert_eq!(t.lock_acquire(&exclusive("d")).await?, None);
        t.lock_release(&shared("b")).await?;
        assert_eq!(
            t.lock_acquire(&exclusive("d")).await?,
            None,
            "c still holds"
        );
        t.lock_release(&shared("c")).await?;
        let t4 = t.lock_acquire(&exclusive("d")).await?.expect("granted");
        assert!(
            t1 < t2 && t2 < t3 && t3 < t4,
            "tokens grow across modes: {t1} {t2} {t3} {t4}"
        );

        let t5 = t
            .lock_acquire(&exclusive("d"))
            .await?
            .expect("the holder may ask again");
        assert!(t5 > t4);
        t.lock_release(&exclusive("nobody")).await?;
        assert_eq!(
            t.lock_acquire(&exclusive("e")).await?,
            None,
            "only the holder releases"
        );
        t.cleanup().await;
        Ok(())
    }

    #[tokio::test]
    async fn locks_expire_and_renewal_after_loss_fails() -> StoreResult<()> {
        let t = TestStore::new().await;
        let a = req("a", LockMode::Exclusive, 100);
        let token_a = t.lock_acquire(&a).await?.expect("granted");
        assert!(t.lock_renew(&a).await?, "held: renewed");
        sleep(Duration::from_millis(150)).await;
        let b = req("b", LockMode::Exclusive, 10_000);
        let token_b = t.lock_acquire(&b).await?.expect("a's lock expired");
        assert!(token_b > token_a);
        assert!(!t.lock_renew(&a).await?, "a lost the lock");
        t.lock_release(&b).await?;

        let s = req("s", LockMode::Shared, 100);
        t.lock_acquire(&s).await?.expect("granted");
        assert!(t.lock_renew(&s).await?);
        assert_eq!(t.lock_acquire(&exclusive("x")).await?, None);
        sleep(Duration::from_millis(150)).await;
        assert!(!t.lock_renew(&s).await?, "the shared hold expired");
        assert!(t.lock_acquire(&exclusive("x")).await?.is_some());
        t.cleanup().await;
        Ok(())
    }

    #[tokio::test]
    async fn fenced_write_refuses_stale_tokens() -> StoreResult<()> {
        let t = TestStore::new().await;
        assert_eq!(t.fenced_read("r").await?, None);
        assert!(t.fenced_write("r", 5, Bytes::from_static(b"five")).await?);
        assert!(!t.fenced_write("r", 4, Bytes::from_static(b"four")).await?);
        assert!(t.fenced_write("r", 5, Bytes::from_static(b"again")).await?);
        assert_eq!(
            t.fenced_read("r").await?,
            Some((5, Bytes::from_static(b"again")))
        );
        // Past 2^53 and across digit counts, compared exactly.
        assert!(t.fenced_write("r", 10, Bytes::new()).await?);
        assert!(t.fenced_write("r", u64::MAX - 1, Bytes::new()).await?);
        assert!(!t.fenced_write("r", u64::MAX - 2, Bytes::new()).await?);
        assert!(
            t.fenced_write("r", u64::MAX, Bytes::from_static(b"max"))
                .await?
        );
        assert_eq!(
            t.fenced_read("r").await?,
            Some((u64::MAX, Bytes::from_static(b"max")))
        );
        assert!(
            t.fenced_write("other", 1, Bytes::new()).await?,
            "resources are independent"
        );
        t.cleanup().await;
        Ok(())
    }

    #[tokio::test]
    async fn a_stale_holder_is_fenced_out() -> StoreResult<()> {
        let t = TestStore::new().await;
        let a = req("a", LockMode::Exclusive, 100);
        let token_a = t.lock_acquire(&a).await?.expect("granted");
        sleep(Duration::from_millis(150)).await;
        let token_b = t.lock_acquire(&exclusive("b")).await?.expect("granted");
        assert!(
            t.fenced_write("r", token_b, Bytes::from_static(b"b"))
                .await?
        );
        assert!(
            !t.fenced_write("r", token_a, Bytes::from_static(b"a"))
                .await?
        );
        assert_eq!(
            t.fenced_read("r").await?,
            Some((token_b, Bytes::from_static(b"b")))
        );
        t.cleanup().await;
        Ok(())
    }
}

//! Embedded locks with fencing tokens, and the fenced resources they guard.
//!
//! Each key keeps a counter that only grows, whether its holders come and go or expire,
//! so every grant's token is greater than all before it for that key. Each holder has its
//! own expiry; an expired holder is treated as gone. Times are passed in.

use std::collections::HashMap;

use bytes::Bytes;

use crate::job::LockMode;
use crate::store::LockRequest;

#[derive(Debug, Default)]
struct KeyState {
    last_token: u64,
    mode: LockMode,
    /// Holder id → expiry, Unix ms.
    holders: HashMap<String, i64>,
}

impl KeyState {
    fn forget_expired(&mut self, now_ms: i64) {
        self.holders.retain(|_, until| *until > now_ms);
    }
}

/// Every lock key and every fenced resource.
#[derive(Debug, Default)]
pub(super) struct LockTable {
    keys: HashMap<String, KeyState>,
    /// Resource → (token of the last accepted write, its value).
    fenced: HashMap<String, (u64, Bytes)>,
}

impl LockTable {
    /// Grants the lock and a new token unless another live holder excludes `req`. A
    /// holder asking again for what it holds is renewed with a new token.
    pub fn acquire(&mut self, req: &LockRequest, now_ms: i64) -> Option<u64> {
        let key = self.keys.entry(req.key.clone()).or_default();
        key.forget_expired(now_ms);
        let others = key.holders.keys().filter(|h| **h != req.holder).count();
        let compatible =
            others == 0 || (req.mode == LockMode::Shared && key.mode == LockMode::Shared);
        if !compatible {
            return None;
        }
        key.mode = req.mode;
        key.holders
            .insert(req.holder.clone(), expiry(now_ms, req.ttl_ms));
        key.last_token += 1;
        Some(key.last_token)
    }

    pub fn renew(&mut self, req: &LockRequest, now_ms: i64) -> bool {
        let Some(key) = self.keys.get_mut(&req.key) else {
            return false;
        };
        key.forget_expired(now_ms);
        match key.holders.get_mut(&req.holder) {
            Some(until) => {
                *until = expiry(now_ms, req.ttl_ms);
                true
            }
            None => false,
        }
    }

    /// Whether `holder` holds `key` now with `token` as the last token issued for it.
    pub fn holds(&self, key: &str, holder: &str, token: u64, now_ms: i64) -> bool {
        self.keys.get(key).is_some_and(|k| {
            k.last_token == token && k.holders.get(holder).is_some_and(|until| *until > now_ms)
        })
    }

    pub fn release(&mut self, req: &LockRequest) {
        if let Some(key) = self.keys.get_mut(&req.key) {
            key.holders.remove(&req.holder);
        }
    }

    /// Accepts the write unless a greater token already wrote to `resource`.
    pub fn fenced_write(&mut self, resource: &str, token: u64, value: Bytes) -> bool {
        if let Some((last, _)) = self.fenced.get(resource) {
            if token < *last {
                return false;
            }
        }
        self.fenced.insert(resource.to_string(), (token, value));
        true
    }

    pub fn fenced_read(&self, resource: &str) -> Option<(u64, Bytes)> {
        self.fenced.get(resource).cloned()
    }
}

fn expiry(now_ms: i64, ttl_ms: u64) -> i64 {
    now_ms.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(holder: &str, mode: LockMode) -> LockRequest {
        LockRequest {
            key: "k".into(),
            mode,
            holder: holder.into(),
            ttl_ms: 100,
        }
    }

    #[test]
    fn exclusive_excludes_everyone_and_tokens_grow() {
        let mut t = LockTable::default();
        let a = req("a", LockMode::Exclusive);
        let t1 = t.acquire(&a, 0).expect("granted");
        assert_eq!(t.acquire(&req("b", LockMode::Exclusive), 10), None);
        assert_eq!(t.acquire(&req("b", LockMode::Shared), 10), None);
        t.release(&a);
        let t2 = t.acquire(&req("b", LockMode::Shared), 20).expect("granted");
        assert!(t2 > t1);
    }

    #[test]
    fn shared_holders_coexist_but_exclude_exclusive() {
        let mut t = LockTable::default();
        let t1 = t.acquire(&req("a", LockMode::Shared), 0).expect("granted");
        let t2 = t.acquire(&req("b", LockMode::Shared), 0).expect("granted");
        assert!(t2 > t1);
        assert_eq!(t.acquire(&req("c", LockMode::Exclusive), 0), None);
        t.release(&req("a", LockMode::Shared));
        assert_eq!(
            t.acquire(&req("c", LockMode::Exclusive), 0),
            None,
            "b still holds"
        );
        t.release(&req("b", LockMode::Shared));
        assert!(
            t.acquire(&req("c", LockMode::Exclusive), 0)
                .expect("granted")
                > t2
        );
    }

    #[test]
    fn expiry_frees_the_lock_and_renew_only_works_while_held() {
        let mut t = LockTable::default();
        let a = req("a", LockMode::Exclusive);
        let t1 = t.acquire(&a, 0).expect("granted");
        assert!(t.renew(&a, 90), "renewed until 190");
        assert_eq!(t.acquire(&req("b", LockMode::Exclusive), 150), None);
        let t2 = t
            .acquire(&req("b", LockMode::Exclusive), 190)
            .expect("granted");
        assert!(t2 > t1);
        assert!(!t.renew(&a, 191), "a lost the lock");
        assert!(!t.renew(&req("x", LockMode::Exclusive), 0));
    }

    #[test]
    fn same_holder_reacquiring_is_a_renewal_with_a_new_token() {
        let mut t = LockTable::default();
        let a = req("a", LockMode::Exclusive);
        let t1 = t.acquire(&a, 0).expect("granted");
        let t2 = t.acquire(&a, 50).expect("granted");
        assert!(t2 > t1);
        assert_eq!(
            t.acquire(&req("b", LockMode::Exclusive), 120),
            None,
            "held until 150"
        );
    }

    #[test]
    fn fenced_write_refuses_stale_tokens() {
        let mut t = LockTable::default();
        assert_eq!(t.fenced_read("r"), None);
        assert!(t.fenced_write("r", 5, Bytes::from_static(b"five")));
        assert!(!t.fenced_write("r", 4, Bytes::from_static(b"four")));
        assert!(t.fenced_write("r", 5, Bytes::from_static(b"again")));
        assert_eq!(t.fenced_read("r"), Some((5, Bytes::from_static(b"again"))));
        assert!(
            t.fenced_write("other", 1, Bytes::new()),
            "resources are independent"
        );
    }
}

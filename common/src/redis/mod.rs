//! The Redis store (placeholder while it is written).
use crate::clock::SharedClock;
use crate::store::StoreError;
/// Redis store.
#[derive(Debug)]
pub struct RedisStore;
impl RedisStore {
    /// Connects.
    pub async fn connect(
        _url: &str,
        _namespace: &str,
        _clock: SharedClock,
    ) -> Result<Self, StoreError> {
        Err(StoreError::Invalid("redis store not built yet".into()))
    }
}

//! The RabbitMQ broker (placeholder while it is written).
use crate::broker::BrokerError;
/// RabbitMQ broker.
#[derive(Debug)]
pub struct RabbitBroker;
impl RabbitBroker {
    /// Connects.
    pub async fn connect(_url: &str, _namespace: &str) -> Result<Self, BrokerError> {
        Err(BrokerError::Invalid("rabbitmq broker not built yet".into()))
    }
}

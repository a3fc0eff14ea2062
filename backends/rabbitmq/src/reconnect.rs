//! The broker's current connection, re-made with exponential backoff when it is lost.
//!
//! One [`Session`] is one AMQP connection plus a small pool of publishing channels in
//! confirm mode. Callers ask [`Shared::session`] for the current one; a session whose
//! connection is no longer open is replaced, and the replacement re-declares every queue
//! declared so far before anyone uses it. Replacing is serialised by a lock held for one
//! attempt only, so callers that wait with different patience never block each other for
//! longer than one connection attempt.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use lapin::options::ConfirmSelectOptions;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use super::{broker_error, lost, Shared};
use jobfleet_common::broker::BrokerError;

/// Publishing channels per connection: enough that concurrent publishers rarely wait for
/// each other's sends, few enough to keep the server's per-channel cost small.
const PUBLISH_CHANNELS: usize = 4;
/// How long one connection attempt (TCP, TLS, AMQP handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long closing a connection may wait for the server's answer.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect attempts a call makes before it fails; the caller's own retry takes over.
const CALL_RETRIES: usize = 5;
/// Backoff bounds between reconnect attempts.
const MIN_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// How long a caller waits for a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Patience {
    /// One attempt: [`RabbitBroker::connect`](super::RabbitBroker::connect) reports an
    /// unreachable server at once.
    Once,
    /// A few attempts over a few seconds: publishes, declares, new consumers.
    Call,
    /// Until the broker is closed: consumer streams resuming after a loss.
    Forever,
}

/// The server to connect to and the current session.
pub(super) struct Link {
    uri: AMQPUri,
    /// The URL with its password masked, for logs and errors.
    server: String,
    /// Shown by `rabbitmqctl list_connections client_properties` and the management UI.
    connection_name: String,
    current: Mutex<Option<Arc<Session>>>,
}

impl Link {
    pub fn new(uri: AMQPUri, server: String, connection_name: String) -> Self {
        Self {
            uri,
            server,
            connection_name,
            current: Mutex::new(None),
        }
    }

    /// The server's URL, password masked.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Closes the current connection, if any.
    pub async fn close(&self) {
        if let Some(session) = self.current.lock().await.take() {
            // Bounded: a connection whose socket already died can wait for the server's
            // close-ok forever, and a stopping role must not.
            let close = session.connection.close(200, "jobfleet closing".into());
            match tokio::time::timeout(CLOSE_TIMEOUT, close).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(server = %self.server, error = %e, "rabbitmq close"),
                Err(_) => tracing::warn!(
                    server = %self.server,
                    "rabbitmq close: no answer within {CLOSE_TIMEOUT:?}; dropping the connection"
                ),
            }
        }
    }

    async fn open(&self) -> Result<Session, BrokerError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(self.connection_name.clone().into());
        let connect = Connection::connect_uri(self.uri.clone(), properties);
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| {
                BrokerError::Connection(format!(
                    "{}: no answer within {CONNECT_TIMEOUT:?}",
                    self.server
                ))
            })?
            .map_err(|e| broker_error(&self.server, &e))?;
        Ok(Session {
            connection,
            publishers: (0..PUBLISH_CHANNELS).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        })
    }
}

/// One connection and its publishing channels.
pub(super) struct Session {
    connection: Connection,
    /// Opened on first use and re-opened when the server closed them.
    publishers: Vec<Mutex<Option<Channel>>>,
    next: AtomicUsize,
}

impl Session {
    /// The largest frame this connection agreed on with the server.
    #[cfg(test)]
    pub fn frame_max(&self) -> u32 {
        self.connection.configuration().frame_max()
    }

    fn is_open(&self) -> bool {
        self.connection.status().connected()
    }

    /// A new channel, e.g. for declares or a consumer.
    pub async fn channel(&self) -> Result<Channel, BrokerError> {
        self.connection
            .create_channel()
            .await
            .map_err(|e| lost("open channel", &e))
    }

    /// The next publishing slot, round robin. Hold its lock only while sending.
    pub fn publisher(&self) -> &Mutex<Option<Channel>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.publishers.len();
        &self.publishers[i]
    }

    /// The slot's channel, opened in confirm mode if it has none or lost it.
    pub async fn confirming(&self, slot: &mut Option<Channel>) -> Result<Channel, BrokerError> {
        if let Some(channel) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        let channel = self.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| lost("confirm.select", &e))?;
        *slot = Some(channel.clone());
        Ok(channel)
    }
}

impl Shared {
    /// The current session, connecting (and re-declaring the known queues) if it was
    /// lost, with `patience`. [`BrokerError::Closed`] once the broker is closed.
    pub(super) async fn session(&self, patience: Patience) -> Result<Arc<Session>, BrokerError> {
        if self.closed.is_cancelled() {
            return Err(BrokerError::Closed);
        }
        let backoff = ExponentialBuilder::default()
            .with_min_delay(MIN_DELAY)
            .with_max_delay(MAX_DELAY)
            .with_jitter();
        let backoff = match patience {
            Patience::Once => backoff.with_max_times(0),
            Patience::Call => backoff.with_max_times(CALL_RETRIES),
            Patience::Forever => backoff.without_max_times(),
        };
        let attempts = (|| self.try_session())
            .retry(backoff)
            // A refused login or vhost will be refused again, unless we wait it out.
            .when(|e| patience == Patience::Forever || e.is_retryable())
            .notify(|e, delay| {
                tracing::warn!(
                    server = %self.link.server, error = %e, retry_in = ?delay,
                    "rabbitmq connection failed; retrying"
                );
            });
        tokio::select! {
            () = self.closed.cancelled() => Err(BrokerError::Closed),
            session = attempts => session,
        }
    }

    /// One attempt: the open session, or a new one.
    async fn try_session(&self) -> Result<Arc<Session>, BrokerError> {
        let mut current = self.link.current.lock().await;
        if let Some(session) = current.as_ref().filter(|s| s.is_open()) {
            return Ok(session.clone());
        }
        if current.take().is_some() {
            tracing::warn!(server = %self.link.server, "rabbitmq connection lost; reconnecting");
        }
        let session = Arc::new(self.link.open().await?);
        let queues = self.topology.redeclare(&session).await?;
        if queues > 0 {
            tracing::info!(server = %self.link.server, queues, "rabbitmq reconnected");
        }
        *current = Some(session.clone());
        Ok(session)
    }
}

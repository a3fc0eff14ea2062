//! The broker's current connection, re-made with exponential backoff when it is lost.
//!
//! One [`Session`] is one AMQP connection, to one node of the list (`nodes`), plus a
//! small pool of publishing channels in confirm mode. One connection attempt goes round
//! the list once, from the node after the one last lost, and takes the first that
//! answers; every (re)connect is logged with its node and sets the connected-node gauge
//! ([`telemetry::broker_connected`]). Callers ask [`Shared::session`] for the current
//! one; a session whose connection is no longer open is replaced, and the replacement
//! re-declares every queue declared so far before anyone uses it. Replacing is
//! serialised by a lock held for one attempt only, so callers that wait with different
//! patience never block each other for longer than one connection attempt.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::Mutex as SyncMutex;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use super::nodes::{self, Node};
use super::{broker_error, lock, lost, Shared};
use jobfleet_common::broker::BrokerError;
use jobfleet_common::telemetry;

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

/// The nodes to connect to and the current session.
pub(super) struct Link {
    /// Never empty.
    nodes: Vec<Node>,
    /// The URLs with their passwords masked, for logs and errors.
    server: String,
    /// Shown by `rabbitmqctl list_connections client_properties` and the management UI.
    connection_name: String,
    /// Where the next connection attempt starts in `nodes`.
    start: AtomicUsize,
    /// The node of the last connection made, for the gauge to clear when it changes.
    connected: SyncMutex<Option<usize>>,
    current: Mutex<Option<Arc<Session>>>,
}

impl Link {
    /// A link to `nodes` (not empty), starting at a random one.
    pub fn new(nodes: Vec<Node>, connection_name: String) -> Self {
        let server = nodes
            .iter()
            .map(|n| n.shown.as_str())
            .collect::<Vec<_>>()
            .join(",");
        Self {
            start: AtomicUsize::new(nodes::random_start(nodes.len())),
            nodes,
            server,
            connection_name,
            connected: SyncMutex::new(None),
            current: Mutex::new(None),
        }
    }

    /// The servers' URLs, passwords masked.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The node the current session is connected to (`host:port`), if any.
    #[cfg(test)]
    pub fn connected_node(&self) -> Option<&str> {
        let at = (*lock(&self.connected))?;
        Some(&self.nodes[at].name)
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

    /// One round of the list from `start`: the first node that accepts a connection.
    /// When none does, the error names each node's reason; it is retryable if any
    /// node's is (a refused login on one node must not stop the search for the others).
    async fn open(&self) -> Result<Session, BrokerError> {
        let start = self.start.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        let mut retryable = false;
        for step in 0..self.nodes.len() {
            let at = (start + step) % self.nodes.len();
            match self.open_node(at).await {
                Ok(session) => return Ok(session),
                Err(e) => {
                    retryable |= e.is_retryable();
                    failures.push(e.to_string());
                }
            }
        }
        let reason = failures.join("; ");
        Err(if retryable {
            BrokerError::Connection(reason)
        } else {
            BrokerError::Invalid(reason)
        })
    }

    async fn open_node(&self, at: usize) -> Result<Session, BrokerError> {
        let node = &self.nodes[at];
        let properties = ConnectionProperties::default()
            .with_connection_name(self.connection_name.clone().into());
        let connect = Connection::connect_uri(node.uri.clone(), properties);
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| {
                BrokerError::Connection(format!(
                    "{}: no answer within {CONNECT_TIMEOUT:?}",
                    node.shown
                ))
            })?
            .map_err(|e| broker_error(&node.shown, &e))?;
        Ok(Session {
            connection,
            node: at,
            publishers: (0..PUBLISH_CHANNELS).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// A session on `session.node` is lost: the next attempt starts at the node after it.
    fn lost(&self, session: &Session) {
        let next = (session.node + 1) % self.nodes.len();
        self.start.store(next, Ordering::Relaxed);
        tracing::warn!(
            node = %self.nodes[session.node].name,
            "rabbitmq connection lost; reconnecting"
        );
    }

    /// A session on `session.node` is made: logs it and moves the gauge to its node.
    fn connected(&self, session: &Session, queues: usize) {
        self.start.store(session.node, Ordering::Relaxed);
        let node = &self.nodes[session.node].name;
        tracing::info!(node = %node, queues, "rabbitmq connected");
        let previous = lock(&self.connected).replace(session.node);
        let previous = previous
            .filter(|&p| p != session.node)
            .map(|p| self.nodes[p].name.as_str());
        telemetry::broker_connected(node, previous);
    }
}

/// One connection and its publishing channels.
pub(super) struct Session {
    connection: Connection,
    /// Its node's index in the link's list.
    node: usize,
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
        if let Some(gone) = current.take() {
            self.link.lost(&gone);
        }
        let session = Arc::new(self.link.open().await?);
        let queues = self.topology.redeclare(&session).await?;
        self.link.connected(&session, queues);
        *current = Some(session.clone());
        Ok(session)
    }
}

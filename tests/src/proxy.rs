//! A TCP fault proxy for the fault tests: it sits between one process and a real service
//! (RabbitMQ, Redis) and makes the network between them fail on command, the way a
//! middlebox or a partition would, while the service itself stays up for everyone else.
//!
//! - [`Proxy::reset`] aborts every open connection with a TCP RST on both sides (linger
//!   zero, then close) and keeps accepting new ones: a reset of one client's connection.
//! - [`Proxy::block`] / [`Proxy::unblock`]: a partition. No byte is forwarded either way
//!   and new connections are accepted but never reach the service, while every socket
//!   stays open, so the client only notices through its own time-outs. Bytes read before
//!   or during the block are held and delivered after [`Proxy::unblock`], as TCP would
//!   retransmit them.
//! - [`Proxy::block_replies`]: a half-open partition. The client's bytes still reach the
//!   service but nothing comes back, e.g. a publish the broker receives and routes whose
//!   confirmation never arrives.
//! - [`Proxy::set_delay`]: latency. Every chunk of bytes waits this long before it is
//!   forwarded, each way, so a round trip takes at least twice as long.
//! - [`Proxy::close`] (and dropping the proxy) stops listening and closes everything.
//!
//! The proxy runs on the Tokio runtime that starts it.

use jobfleet_common::{BrokerAddr, StoreAddr};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[cfg(test)]
mod tests;

/// Bytes read from one side before they are written to the other.
const BUFFER: usize = 16 * 1024;

/// A running proxy; see the module documentation.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    target: SocketAddr,
    /// Cancelled by [`Proxy::close`]: the listener and every connection stop.
    closed: CancellationToken,
    /// Whether forwarding from the clients to the service is blocked.
    requests: watch::Sender<bool>,
    /// Whether forwarding from the service to the clients is blocked.
    replies: watch::Sender<bool>,
    /// The reset switch of every open connection.
    conns: Mutex<HashMap<u64, CancellationToken>>,
    next: AtomicU64,
    /// Added latency per forwarded chunk, in ms.
    delay_ms: AtomicU64,
    /// Connections accepted so far.
    accepted: AtomicU64,
}

impl Proxy {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards every connection to
    /// `target`.
    pub async fn start(target: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            closed: CancellationToken::new(),
            requests: watch::channel(false).0,
            replies: watch::channel(false).0,
            conns: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        });
        tokio::spawn(accept(listener, shared.clone()));
        Ok(Self { addr, shared })
    }

    /// Starts a proxy to the host and port of `url` (`scheme://[user@]host:port/...`).
    /// Panics on a URL without an explicit `host:port`.
    pub async fn for_url(url: &str) -> io::Result<Self> {
        let (_, authority, _) = split_url(url);
        let target = tokio::net::lookup_host(authority)
            .await?
            .next()
            .ok_or_else(|| io::Error::other(format!("no address for {authority}")))?;
        Self::start(target).await
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url(&self, url: &str) -> String {
        let (head, _, tail) = split_url(url);
        format!("{head}{}{tail}", self.addr)
    }

    /// The broker address `addr` with its host and port replaced by the proxy's.
    pub fn broker(&self, addr: &BrokerAddr) -> BrokerAddr {
        BrokerAddr::parse(&self.url(addr.url())).expect("the same scheme, another host")
    }

    /// The store address `addr` with its host and port replaced by the proxy's.
    pub fn store(&self, addr: &StoreAddr) -> StoreAddr {
        StoreAddr::parse(&self.url(addr.url())).expect("the same scheme, another host")
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.shared.conns().len()
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Aborts every open connection with an RST to both ends; returns how many. New
    /// connections are accepted as before.
    pub fn reset(&self) -> usize {
        let conns: Vec<_> = self.shared.conns().drain().collect();
        for (_, reset) in &conns {
            reset.cancel();
        }
        conns.len()
    }

    /// Stops forwarding both ways, on open connections and new ones, keeping every
    /// socket open.
    pub fn block(&self) {
        self.shared.requests.send_replace(true);
        self.shared.replies.send_replace(true);
    }

    /// Stops forwarding from the service to the clients only.
    pub fn block_replies(&self) {
        self.shared.replies.send_replace(true);
    }

    /// Forwards again both ways, held bytes first.
    pub fn unblock(&self) {
        self.shared.requests.send_replace(false);
        self.shared.replies.send_replace(false);
    }

    /// Delays every chunk forwarded from now on by `delay`, each way.
    pub fn set_delay(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Stops listening and closes every connection.
    pub fn close(&self) {
        self.shared.closed.cancel();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, CancellationToken>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Splits `scheme://[userinfo@]host:port/rest` into (`scheme://[userinfo@]`, `host:port`,
/// `/rest`).
fn split_url(url: &str) -> (&str, &str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find(['/', '?'])
        .map_or(url.len(), |i| after_scheme + i);
    let start = url[after_scheme..end]
        .rfind('@')
        .map_or(after_scheme, |i| after_scheme + i + 1);
    let authority = &url[start..end];
    assert!(
        authority.contains(':'),
        "the proxied URL needs an explicit host:port: {url}"
    );
    (&url[..start], authority, &url[end..])
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            _ = shared.closed.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((client, _)) = accepted else {
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let id = shared.next.fetch_add(1, Ordering::SeqCst);
        let reset = shared.closed.child_token();
        shared.conns().insert(id, reset.clone());
        let shared = shared.clone();
        tokio::spawn(async move {
            serve(client, &shared, &reset).await;
            shared.conns().remove(&id);
        });
    }
}

/// Forwards one connection until either end closes it, an error, or a reset.
async fn serve(mut client: TcpStream, shared: &Shared, reset: &CancellationToken) {
    let mut blocked = shared.requests.subscribe();
    // A new connection made during a partition hangs until it heals.
    let upstream = tokio::select! {
        _ = reset.cancelled() => return abort(&client, None),
        () = wait_unblocked(&mut blocked) => TcpStream::connect(shared.target).await,
    };
    let Ok(mut upstream) = upstream else {
        return abort(&client, None);
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let up = pump(
            client_read,
            upstream_write,
            shared,
            shared.requests.subscribe(),
        );
        let down = pump(
            upstream_read,
            client_write,
            shared,
            shared.replies.subscribe(),
        );
        tokio::select! {
            _ = reset.cancelled() => {}
            _ = async { tokio::join!(up, down) } => return,
        }
    }
    if !shared.closed.is_cancelled() {
        abort(&client, Some(&upstream));
    }
}

/// Copies `from` to `to` while not blocked; passes an end of stream on as a half-close.
async fn pump(
    mut from: tokio::net::tcp::ReadHalf<'_>,
    mut to: tokio::net::tcp::WriteHalf<'_>,
    shared: &Shared,
    mut blocked: watch::Receiver<bool>,
) {
    let mut buf = vec![0; BUFFER];
    loop {
        wait_unblocked(&mut blocked).await;
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = shared.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        // Read before the block began: held until it ends.
        wait_unblocked(&mut blocked).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

async fn wait_unblocked(blocked: &mut watch::Receiver<bool>) {
    // The sender lives in `Shared`, which outlives every connection task.
    let _ = blocked.wait_for(|b| !*b).await;
}

/// Makes the coming close of each socket an RST instead of a FIN.
fn abort(client: &TcpStream, upstream: Option<&TcpStream>) {
    // Linger zero never blocks the thread on close: the kernel drops the socket at once
    // and sends the RST.
    let _ = client.set_zero_linger();
    if let Some(upstream) = upstream {
        let _ = upstream.set_zero_linger();
    }
}

//! [`StoreConn`]: the one connection a [`RedisStore`](crate::RedisStore) and its clones
//! share, either to one server (a self-reconnecting `ConnectionManager`) or to whichever
//! server the sentinels name as the primary ([`FollowPrimary`]).
//!
//! The redis crate's `ConnectionManager` reconnects to the address it was built with, so
//! it cannot follow a failover; `FollowPrimary` can. It asks the sentinels for the primary
//! (the crate checks with `ROLE` that the node says it is one), keeps one multiplexed
//! connection to it, and forgets it when a call fails in a way that says the primary may
//! have moved: a broken or refused connection, a timeout, or a `READONLY`/`MASTERDOWN`
//! reply (a demoted primary). The failing call returns its error (retryable: callers
//! retry as they do after a blip); the next call asks the sentinels again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, Pipeline, RedisError, RedisFuture, RedisResult,
    TlsMode, Value,
};

use crate::sentinel_url::SentinelUrl;

/// The store's connection: cheap to clone, clones share it.
#[derive(Clone)]
pub(crate) enum StoreConn {
    /// One server at a fixed address (`redis://`, `rediss://`).
    Direct(ConnectionManager),
    /// The primary the sentinels name (`redis+sentinel://`, `rediss+sentinel://`).
    Following(FollowPrimary),
}

impl ConnectionLike for StoreConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Direct(c) => c.req_packed_command(cmd),
            Self::Following(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Direct(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Following(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Direct(c) => c.get_db(),
            Self::Following(c) => c.db,
        }
    }
}

/// A connection to the primary the sentinels name, re-asked after a failure.
#[derive(Clone)]
pub(crate) struct FollowPrimary {
    inner: Arc<Following>,
    db: i64,
}

struct Following {
    /// Held while asking, so concurrent calls after a failure ask once.
    sentinels: tokio::sync::Mutex<SentinelClient>,
    /// The connection in use and its generation (bumped at each new primary).
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
    /// The primary's address last connected to, for the log line of a change.
    primary: Mutex<Option<String>>,
    config: AsyncConnectionConfig,
    /// How long asking the sentinels and connecting may take.
    connect_timeout: Duration,
}

impl FollowPrimary {
    /// A follower of the service `url` names; connects on first use.
    pub(crate) fn new(
        url: &SentinelUrl,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> RedisResult<Self> {
        let tls = url.tls.then_some(TlsMode::Secure);
        let addrs = url.sentinels.iter().map(|(host, port)| match tls {
            Some(_) => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            },
            None => ConnectionAddr::Tcp(host.clone(), *port),
        });
        let mut builder =
            SentinelClientBuilder::new(addrs, &url.service, SentinelServerType::Master)?
                .set_client_to_redis_db(url.db);
        if let Some(mode) = tls {
            builder = builder
                .set_client_to_redis_tls_mode(mode)
                .set_client_to_sentinel_tls_mode(mode);
        }
        if let Some(user) = &url.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = &url.password {
            builder = builder.set_client_to_redis_password(password);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        Ok(Self {
            inner: Arc::new(Following {
                sentinels: tokio::sync::Mutex::new(builder.build()?),
                current: Mutex::new(None),
                generation: AtomicU64::new(0),
                primary: Mutex::new(None),
                config,
                connect_timeout,
            }),
            db: url.db,
        })
    }

    /// The connection in use, or a new one to the primary the sentinels name now.
    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(current) = self.inner.current() {
            return Ok(current);
        }
        let mut sentinels = self.inner.sentinels.lock().await;
        // Another call may have connected while this one waited for the sentinels.
        if let Some(current) = self.inner.current() {
            return Ok(current);
        }
        let ask = async {
            let client = sentinels.async_get_client().await?;
            let address = client.get_connection_info().addr().to_string();
            let conn = client
                .get_multiplexed_async_connection_with_config(&self.inner.config)
                .await?;
            Ok::<_, RedisError>((address, conn))
        };
        let (address, conn) = tokio::time::timeout(self.inner.connect_timeout, ask)
            .await
            .map_err(|_| {
                RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the sentinels named no reachable primary in time",
                ))
            })??;
        let generation = self.inner.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.adopt(generation, conn.clone(), address);
        Ok((generation, conn))
    }

    /// Forgets connection `generation` when `failure` says the primary may have moved.
    fn judge(&self, generation: u64, failure: Option<&str>) {
        let Some(reason) = failure else { return };
        let mut current = lock(&self.inner.current);
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            tracing::warn!(reason, "lost the Redis primary; asking the sentinels again");
            *current = None;
        }
    }

    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut conn) = self.connection().await?;
            let result = conn.req_packed_command(cmd).await;
            self.judge(generation, moved(result.as_ref().map(std::slice::from_ref)));
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut conn) = self.connection().await?;
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            self.judge(generation, moved(result.as_ref().map(Vec::as_slice)));
            result
        })
    }
}

impl Following {
    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        lock(&self.current).clone()
    }

    /// Makes `conn` (to `address`) the connection in use; logs a new primary.
    fn adopt(&self, generation: u64, conn: MultiplexedConnection, address: String) {
        *lock(&self.current) = Some((generation, conn));
        let mut primary = lock(&self.primary);
        match primary.as_deref() {
            Some(old) if old != address => {
                tracing::warn!(from = old, to = %address, "the Redis primary changed (failover)");
            }
            Some(_) => {}
            None => tracing::info!(primary = %address, "connected to the Redis primary"),
        }
        *primary = Some(address);
    }
}

/// Why a reply says the primary may have moved, if it does.
fn moved(result: Result<&[Value], &RedisError>) -> Option<&'static str> {
    match result {
        Err(e)
            if e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.is_unrecoverable_error() =>
        {
            Some("the connection failed")
        }
        Err(e) if matches!(e.code(), Some("READONLY" | "MASTERDOWN")) => {
            Some("the server is no longer the primary")
        }
        Err(_) => None,
        Ok(values) => values
            .iter()
            .any(|v| {
                matches!(v, Value::ServerError(e) if matches!(e.code(), "READONLY" | "MASTERDOWN"))
            })
            .then_some("the server is no longer the primary"),
    }
}

/// A std mutex's guard; a panic elsewhere while holding it leaves a usable value.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

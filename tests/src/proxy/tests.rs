//! The fault proxy against a local echo server: it forwards, its reset is an RST that
//! leaves it accepting, its block holds bytes both ways and hangs new connections until
//! the unblock, its reply block lets requests through and holds the answers, and closing
//! it ends every connection.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use super::{split_url, Proxy};

/// Long enough for a forwarded byte to come back on a loaded machine.
const ANSWER: Duration = Duration::from_secs(5);
/// How long a blocked proxy is watched for a byte that must not come.
const SILENCE: Duration = Duration::from_millis(300);

/// An echo server on an ephemeral port; it runs until the test's runtime ends.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = conn.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

async fn proxy() -> Proxy {
    Proxy::start(echo_server().await).await.expect("proxy")
}

/// Sends `msg` and reads it back within [`ANSWER`].
async fn round_trip(conn: &mut TcpStream, msg: &[u8]) {
    conn.write_all(msg).await.expect("write");
    let mut back = vec![0; msg.len()];
    timeout(ANSWER, conn.read_exact(&mut back))
        .await
        .expect("echoed in time")
        .expect("read");
    assert_eq!(back, msg);
}

/// Waits until the proxy has `n` open connections.
async fn wait_open(proxy: &Proxy, n: usize) {
    let waited = timeout(ANSWER, async {
        while proxy.open_connections() != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    waited.await.expect("connections open in time");
}

#[tokio::test]
async fn forwards_both_ways() {
    let proxy = proxy().await;
    let mut conn = TcpStream::connect(proxy.addr()).await.expect("connect");
    round_trip(&mut conn, b"hello").await;
    round_trip(&mut conn, &vec![7; 100_000]).await;
    assert_eq!(proxy.accepted(), 1);
}

#[tokio::test]
async fn reset_is_an_rst_and_new_connections_still_work() {
    let proxy = proxy().await;
    let mut first = TcpStream::connect(proxy.addr()).await.expect("connect");
    let mut second = TcpStream::connect(proxy.addr()).await.expect("connect");
    round_trip(&mut first, b"a").await;
    round_trip(&mut second, b"b").await;
    assert_eq!(proxy.reset(), 2);
    for conn in [&mut first, &mut second] {
        let mut buf = [0; 1];
        let read = timeout(ANSWER, conn.read(&mut buf))
            .await
            .expect("answered");
        let err = read.expect_err("a reset connection reads an error, not an end of stream");
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    }
    let mut third = TcpStream::connect(proxy.addr()).await.expect("connect");
    round_trip(&mut third, b"again").await;
    assert_eq!(proxy.open_connections(), 1);
}

#[tokio::test]
async fn block_holds_bytes_and_new_connections_until_unblock() {
    let proxy = proxy().await;
    let mut open = TcpStream::connect(proxy.addr()).await.expect("connect");
    round_trip(&mut open, b"before").await;
    proxy.block();
    open.write_all(b"during")
        .await
        .expect("the socket stays open");
    let mut buf = [0; 6];
    assert!(
        timeout(SILENCE, open.read_exact(&mut buf)).await.is_err(),
        "nothing crosses a blocked proxy"
    );
    // A new connection is accepted by the kernel but reaches nothing.
    let mut new = TcpStream::connect(proxy.addr()).await.expect("connect");
    new.write_all(b"new").await.expect("write");
    let mut new_buf = [0; 3];
    assert!(
        timeout(SILENCE, new.read_exact(&mut new_buf))
            .await
            .is_err(),
        "a new connection hangs while blocked"
    );
    assert_eq!(proxy.open_connections(), 2, "both sockets stay open");

    proxy.unblock();
    timeout(ANSWER, open.read_exact(&mut buf))
        .await
        .expect("held bytes arrive after the unblock")
        .expect("read");
    assert_eq!(&buf, b"during");
    timeout(ANSWER, new.read_exact(&mut new_buf))
        .await
        .expect("the new connection goes through after the unblock")
        .expect("read");
    assert_eq!(&new_buf, b"new");
    round_trip(&mut open, b"after").await;
}

#[tokio::test]
async fn block_replies_lets_requests_through_and_holds_answers() {
    // A server that reports what it receives and answers "ok" to each read.
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (seen, mut received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        let mut buf = [0; 64];
        while let Ok(n @ 1..) = conn.read(&mut buf).await {
            let _ = seen.send(buf[..n].to_vec());
            let _ = conn.write_all(b"ok").await;
        }
    });
    let proxy = Proxy::start(addr).await.expect("proxy");
    let mut conn = TcpStream::connect(proxy.addr()).await.expect("connect");
    proxy.block_replies();
    conn.write_all(b"publish").await.expect("write");
    let got = timeout(ANSWER, received.recv())
        .await
        .expect("the request arrives");
    assert_eq!(got.as_deref(), Some(&b"publish"[..]));
    let mut answer = [0; 2];
    assert!(
        timeout(SILENCE, conn.read_exact(&mut answer))
            .await
            .is_err(),
        "the answer is held"
    );
    proxy.unblock();
    timeout(ANSWER, conn.read_exact(&mut answer))
        .await
        .expect("the answer arrives after the unblock")
        .expect("read");
    assert_eq!(&answer, b"ok");
}

#[tokio::test]
async fn a_delay_slows_every_round_trip() {
    let proxy = proxy().await;
    let mut conn = TcpStream::connect(proxy.addr()).await.expect("connect");
    proxy.set_delay(Duration::from_millis(100));
    let started = std::time::Instant::now();
    round_trip(&mut conn, b"slow").await;
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "one round trip took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_blocked_connection_can_still_be_reset() {
    let proxy = proxy().await;
    let mut conn = TcpStream::connect(proxy.addr()).await.expect("connect");
    round_trip(&mut conn, b"x").await;
    proxy.block();
    assert_eq!(proxy.reset(), 1);
    let mut buf = [0; 1];
    let read = timeout(ANSWER, conn.read(&mut buf))
        .await
        .expect("answered");
    assert!(read.is_err(), "reset while blocked: {read:?}");
}

#[tokio::test]
async fn close_ends_every_connection_and_stops_listening() {
    let proxy = proxy().await;
    let addr = proxy.addr();
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    round_trip(&mut conn, b"x").await;
    wait_open(&proxy, 1).await;
    drop(proxy);
    let mut buf = [0; 1];
    let read = timeout(ANSWER, conn.read(&mut buf))
        .await
        .expect("answered");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the connection ended: {read:?}"
    );
    // The listener is gone once its task saw the close.
    let refused = timeout(ANSWER, async {
        loop {
            if TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    refused
        .await
        .expect("new connections are refused after the close");
}

#[test]
fn urls_are_rewritten_to_the_proxy() {
    let url = "amqp://guest:guest@127.0.0.1:5672/%2f";
    assert_eq!(
        split_url(url),
        ("amqp://guest:guest@", "127.0.0.1:5672", "/%2f")
    );
    assert_eq!(
        split_url("redis://127.0.0.1:6379/"),
        ("redis://", "127.0.0.1:6379", "/")
    );
    assert_eq!(
        split_url("redis://localhost:6379"),
        ("redis://", "localhost:6379", "")
    );
}

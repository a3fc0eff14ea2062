//! Talking to a role's HTTP endpoint without an HTTP client: a free address to serve on
//! and a plain `GET`.

use std::time::Duration;

/// A loopback address (`127.0.0.1:PORT`) nothing listens on right now.
pub fn free_addr() -> String {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    probe.local_addr().expect("its address").to_string()
}

/// `GET path` over plain HTTP/1.1 with `Connection: close`: the status code (0 when the
/// status line does not parse) and the body. The connect is retried for up to 2 s, for an
/// endpoint whose task has not started listening yet.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = None;
    for _ in 0..100 {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let mut stream = stream.unwrap_or_else(|| panic!("nothing listens on {addr} after 2 s"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_string())
}

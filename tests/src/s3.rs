//! An S3-compatible server of a test's own: `moto` (from PyPI, in the venv that
//! [`crate::python::venv_python`] makes) on a free loopback port with one bucket, killed when
//! dropped. It stands in for S3 the way tansu stands in for Kafka: the data store's
//! client is object_store's real S3 client, speaking signed HTTP to it.
//!
//! The bucket is made with one unsigned HTTP/1.1 request; tests read and write objects
//! through `jobfleet_data::Storage::open_with` and [`S3Server::options`] (moto keeps an
//! object private to the signer, so anonymous reads are refused).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server with one bucket.
pub struct S3Server {
    /// `127.0.0.1:port`.
    pub addr: String,
    /// The bucket the test's store lives in.
    pub bucket: String,
    child: Child,
    log: PathBuf,
}

impl S3Server {
    /// Starts moto on a free port, waits until it answers and creates `bucket`.
    pub fn start(bucket: &str) -> Self {
        let python = crate::python::venv_python();
        let addr = jobfleet_common::testing::free_addr();
        let port = addr.rsplit_once(':').expect("host:port").1.to_owned();
        let log = std::env::temp_dir().join(format!("jobfleet-moto-{}.log", uuid::Uuid::now_v7()));
        let out = std::fs::File::create(&log).expect("create moto's log");
        let err = out.try_clone().expect("a second handle on moto's log");
        let child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto with {}: {e}", python.display()));
        let mut server = Self {
            addr,
            bucket: bucket.to_owned(),
            child,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&server.addr).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "moto exited ({status}) before listening: {}",
                    server.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "moto did not listen on {} within 30 s: {}",
                server.addr,
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let (status, body) = server.request("PUT", &format!("/{bucket}"), &[]);
        assert_eq!(
            status,
            200,
            "create bucket {bucket}: {}",
            String::from_utf8_lossy(&body)
        );
        server
    }

    /// The object_store settings that reach the bucket (`Storage::open_with`), by their
    /// lower-case names; [`S3Server::env`] has the same as environment variables.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("aws_access_key_id", "jobfleet-test".into()),
            ("aws_secret_access_key", "jobfleet-test".into()),
            ("aws_region", "us-east-1".into()),
            ("aws_endpoint", format!("http://{}", self.addr)),
            ("aws_allow_http", "true".into()),
        ]
    }

    /// The environment a process needs to use the bucket through object_store's S3 client.
    pub fn env(&self) -> Vec<(String, String)> {
        self.options()
            .into_iter()
            .map(|(k, v)| (k.to_uppercase(), v))
            .collect()
    }

    /// One unsigned HTTP/1.1 request with `Connection: close`: the status and the body.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut stream = TcpStream::connect(&self.addr).expect("connect to moto");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("set a read timeout");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\
             Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("send the request");
        stream.write_all(body).expect("send the body");
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).expect("read the reply");
        let split = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a reply with headers");
        let head = String::from_utf8_lossy(&reply[..split]).to_lowercase();
        assert!(
            !head.contains("transfer-encoding: chunked"),
            "moto replied chunked; this helper reads plain bodies: {head}"
        );
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, reply[split + 4..].to_vec())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

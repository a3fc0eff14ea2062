//! A cloud service's emulator run by a test as a child process: [`crate::s3`]'s moto and
//! [`crate::gcs`]'s fake-gcs-server. Its output goes to a temporary log file, shown when it
//! fails to start and (its tail) when the test panics; it is killed when dropped, so it never
//! outlives its test. Setting it up (a bucket) takes plain HTTP/1.1 requests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Lines of the log shown when a test panics while the emulator runs.
const TAIL_LINES: usize = 40;

/// A running emulator.
pub struct Emulator {
    name: &'static str,
    addr: String,
    child: Child,
    log: PathBuf,
}

impl Emulator {
    /// Runs `command` (its stdout and stderr to a new log file) and waits up to 30 s until
    /// `addr` (`127.0.0.1:port`) takes connections. `name` is how messages call it.
    pub fn start(name: &'static str, mut command: Command, addr: &str) -> Self {
        let log =
            std::env::temp_dir().join(format!("jobfleet-{name}-{}.log", uuid::Uuid::now_v7()));
        let out = std::fs::File::create(&log).expect("create the emulator's log");
        let err = out
            .try_clone()
            .expect("a second handle on the emulator's log");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        let mut emulator = Self {
            name,
            addr: addr.to_owned(),
            child,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = emulator.child.try_wait() {
                panic!(
                    "{name} exited ({status}) before listening: {}",
                    emulator.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not listen on {addr} within 30 s: {}",
                emulator.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        emulator
    }

    /// One unsigned HTTP/1.1 request with `Connection: close`: the status and the body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let name = self.name;
        let mut stream = TcpStream::connect(&self.addr)
            .unwrap_or_else(|e| panic!("connect to {name}: {e}: {}", self.log_text()));
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("set a read timeout");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\
             Content-Type: {content_type}\r\nConnection: close\r\n\r\n",
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
            "{name} replied chunked; this helper reads plain bodies: {head}"
        );
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, reply[split + 4..].to_vec())
    }

    /// Everything it has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
            eprintln!("--- the last lines of {}'s log ---\n{tail}", self.name);
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

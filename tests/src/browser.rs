//! A headless Chromium driven through ChromeDriver's W3C WebDriver protocol, for the
//! dashboard's end-to-end test. The protocol is JSON over HTTP, so a few plain HTTP/1.1
//! requests on a `TcpStream` do; no WebDriver crate is needed.
//!
//! Debian's `chromium` and `chromium-driver` (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`) are used; `scripts/test.sh` installs them when missing. The
//! browser runs with a fresh profile and every background network feature off, because
//! these machines reach no internet.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where Debian puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian puts its driver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How to get them.
pub const HOW_TO_INSTALL: &str = "install Debian's chromium and chromium-driver \
     (apt-get install -y chromium chromium-driver); scripts/test.sh does this itself";

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session; the driver (and with it the browser) is killed on drop.
pub struct Browser {
    driver: Child,
    addr: String,
    session: String,
    _profile: TempDir,
}

/// A page element, by its WebDriver reference.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts ChromeDriver on a free port and opens a headless session.
    pub async fn start() -> Self {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: {HOW_TO_INSTALL}"
            );
        }
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            probe.local_addr().expect("addr").port()
        };
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}; {HOW_TO_INSTALL}"));
        let addr = format!("127.0.0.1:{port}");
        let profile = TempDir::new("jobfleet-chromium");
        let mut browser = Self {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        for _ in 0..100 {
            if TcpStream::connect(&browser.addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1280,1400",
            &format!("--user-data-dir={}", browser._profile.0.display()),
        ];
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
            }}
        });
        let created = browser.call("POST", "/session", Some(capabilities)).await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session in {created}"))
            .to_string();
        browser
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.command("POST", "url", json!({ "url": url })).await;
    }

    /// The page's title.
    pub async fn title(&self) -> String {
        self.command("GET", "title", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The first element matching `css`, if any.
    pub async fn find(&self, css: &str) -> Option<Element> {
        let body = json!({ "using": "css selector", "value": css });
        let found = self.try_command("POST", "element", body).await.ok()?;
        found[ELEMENT].as_str().map(|id| Element(id.to_string()))
    }

    /// The first element matching `css`, waiting up to `within` for it to appear.
    pub async fn wait_for(&self, css: &str, within: Duration) -> Element {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(e) = self.find(css).await {
                return e;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {css:?} on the page after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits up to `within` until the text of the element matching `css` satisfies
    /// `check`; returns the text.
    pub async fn wait_text(
        &self,
        css: &str,
        within: Duration,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + within;
        let mut last = String::new();
        loop {
            if let Some(e) = self.find(css).await {
                if let Ok(text) = self.try_text(&e).await {
                    if check(&text) {
                        return text;
                    }
                    last = text;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{css:?} never showed what was expected in {within:?}; last text {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether no element matches `css` within `within`.
    pub async fn wait_gone(&self, css: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.find(css).await.is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{css:?} still on the page after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks `element`.
    pub async fn click(&self, element: &Element) {
        let path = format!("element/{}/click", element.0);
        self.command("POST", &path, json!({})).await;
    }

    /// Types `text` into `element`.
    pub async fn type_into(&self, element: &Element, text: &str) {
        let path = format!("element/{}/value", element.0);
        self.command("POST", &path, json!({ "text": text })).await;
    }

    /// The visible text of `element`.
    pub async fn text(&self, element: &Element) -> String {
        self.try_text(element).await.expect("element text")
    }

    async fn try_text(&self, element: &Element) -> Result<String, Value> {
        let path = format!("element/{}/text", element.0);
        let text = self.try_command("GET", &path, Value::Null).await?;
        Ok(text.as_str().unwrap_or_default().to_string())
    }

    /// Runs `script` in the page and returns its value.
    pub async fn execute(&self, script: &str) -> Value {
        let body = json!({ "script": script, "args": [] });
        self.command("POST", "execute/sync", body).await
    }

    /// Saves a PNG screenshot of the window to `path`.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let png = self.command("GET", "screenshot", Value::Null).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 PNG"))
            .expect("valid base64");
        std::fs::write(path, bytes).expect("write the screenshot");
    }

    async fn command(&self, method: &str, path: &str, body: Value) -> Value {
        match self.try_command(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        }
    }

    async fn try_command(&self, method: &str, path: &str, body: Value) -> Result<Value, Value> {
        let path = format!("/session/{}/{path}", self.session);
        let body = (method == "POST").then_some(body);
        let reply = self.call(method, &path, body).await;
        if reply.get("error").is_some() {
            return Err(reply);
        }
        Ok(reply)
    }

    /// One WebDriver request; the reply's `value`.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let (_, reply) = http(&self.addr, request.as_bytes()).await;
        let reply: Value = serde_json::from_slice(&reply)
            .unwrap_or_else(|e| panic!("WebDriver reply is not JSON ({e}): {reply:?}"));
        reply["value"].clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Killing the driver ends the browser it started.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Sends a raw HTTP/1.1 `request` to `addr`: the status code and the body (de-chunked).
/// Reads until the body's `Content-Length` (ChromeDriver keeps the connection open), the
/// end of the chunks, or the end of the stream.
pub async fn http(addr: &str, request: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.write_all(request).await.expect("write");
    let mut response = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no reply from {addr} within 60 s"))
            .expect("read");
        response.extend_from_slice(&buf[..n]);
        if n == 0 || complete(&response) {
            break;
        }
    }
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let mut body = response[split + 4..].to_vec();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    if chunked(&head) {
        body = dechunk(&body);
    }
    (status, body)
}

fn chunked(head: &str) -> bool {
    head.to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
}

/// Whether `response` holds a whole message (headers and all the body they announce).
fn complete(response: &[u8]) -> bool {
    let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let body = &response[split + 4..];
    if chunked(&head) {
        return body.ends_with(b"0\r\n\r\n");
    }
    let length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    length.is_some_and(|n| body.len() >= n)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&data[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// A directory removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

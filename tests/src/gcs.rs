//! A Google Cloud Storage emulator of a test's own: fake-gcs-server
//! (github.com/fsouza/fake-gcs-server, a Go binary, pinned at [`VERSION`]) on a free loopback
//! port, keeping objects in memory, with one bucket; killed when dropped. The data store's
//! client is object_store's real GCS client, which reaches it through a service-account
//! file naming the emulator (`gcs_base_url`) and turning OAuth off (`disable_oauth`).
//!
//! object_store speaks GCS's XML API (path-style: `http://host/bucket/object`), which the
//! emulator routes only for requests whose `Host` is its `-public-host`, so that is set to
//! its own address. What [`VERSION`] does not do: it answers object_store's uploads, whole
//! (`PUT /bucket/object`) or in parts (`POST /bucket/object?uploads`), with `400 invalid
//! uploadType`, because it takes an upload to `/bucket/object` only as a signed URL's
//! (`X-Goog-Algorithm` in the query); and it has no XML multipart upload. Reads, heads,
//! listings (`GET /bucket?list-type=2`) and deletes work, so tests put objects there
//! through its JSON API ([`GcsServer::insert`]) and read them through object_store.

use std::path::PathBuf;
use std::process::Command;

use crate::emulator::Emulator;

/// The fake-gcs-server release the tests are written against.
pub const VERSION: &str = "v1.56.1";

/// What to tell someone whose machine has no fake-gcs-server.
pub const HOW_TO_GET: &str = "run scripts/services.sh up gcs (or: \
    GOBIN=$HOME/.cache/jobfleet/bin go install github.com/fsouza/fake-gcs-server@v1.56.1)";

/// The variable naming the fake-gcs-server binary, ahead of PATH and the cache.
pub const BINARY_VAR: &str = "TEST_FAKE_GCS_SERVER";

/// A running fake-gcs-server with one bucket.
pub struct GcsServer {
    /// `127.0.0.1:port`.
    pub addr: String,
    /// The bucket the test's store lives in.
    pub bucket: String,
    /// The service-account file that points object_store at the emulator.
    key_file: PathBuf,
    server: Emulator,
}

impl GcsServer {
    /// Starts fake-gcs-server on a free port, waits until it answers and creates `bucket`.
    /// Panics with how to get the binary if there is none.
    pub fn start(bucket: &str) -> Self {
        let binary = binary();
        let addr = jobfleet_testkit::free_addr();
        let port = addr.rsplit_once(':').expect("host:port").1;
        let mut command = Command::new(&binary);
        command.args(["-scheme", "http", "-host", "127.0.0.1", "-port", port]);
        command.args(["-backend", "memory", "-public-host", &addr]);
        let server = Emulator::start("fake-gcs-server", command, &addr);
        let body = serde_json::json!({ "name": bucket }).to_string();
        let (status, reply) =
            server.request("POST", "/storage/v1/b", "application/json", body.as_bytes());
        assert_eq!(
            status,
            200,
            "create bucket {bucket}: {}",
            String::from_utf8_lossy(&reply)
        );
        let key_file =
            std::env::temp_dir().join(format!("jobfleet-gcs-{}.json", uuid::Uuid::now_v7()));
        let key = serde_json::json!({
            "gcs_base_url": format!("http://{addr}"),
            "disable_oauth": true,
            "client_email": "",
            "private_key": "",
            "private_key_id": "",
        });
        std::fs::write(&key_file, key.to_string()).expect("write the service-account file");
        Self {
            addr,
            bucket: bucket.to_owned(),
            key_file,
            server,
        }
    }

    /// The object_store settings that reach the bucket (`Storage::open_with`), by their
    /// lower-case names; [`GcsServer::env`] has the same as environment variables.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        vec![(
            "google_service_account",
            self.key_file.display().to_string(),
        )]
    }

    /// The environment a process needs to use the bucket through object_store's GCS client.
    pub fn env(&self) -> Vec<(String, String)> {
        self.options()
            .into_iter()
            .map(|(k, v)| (k.to_uppercase(), v))
            .collect()
    }

    /// Puts `bytes` at `name` (a key from the bucket's root) through the emulator's JSON
    /// API, which takes the uploads its XML API refuses.
    pub fn insert(&self, name: &str, bytes: &[u8]) {
        let path = format!(
            "/upload/storage/v1/b/{}/o?uploadType=media&name={}",
            self.bucket,
            query_escape(name)
        );
        let (status, reply) = self
            .server
            .request("POST", &path, "application/octet-stream", bytes);
        assert_eq!(
            status,
            200,
            "insert {name}: {}",
            String::from_utf8_lossy(&reply)
        );
    }
}

impl Drop for GcsServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.key_file);
    }
}

/// The fake-gcs-server to run: [`BINARY_VAR`], else `fake-gcs-server` on PATH, else the one
/// `scripts/services.sh` installs in `~/.cache/jobfleet/bin` (`$XDG_CACHE_HOME/jobfleet/bin`
/// when that is set, as the script does).
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os(BINARY_VAR) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{BINARY_VAR}={} is not a file: {HOW_TO_GET}",
            path.display()
        );
        return path;
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("fake-gcs-server"));
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")));
    let cached = cache.map(|cache| cache.join("jobfleet/bin/fake-gcs-server"));
    on_path
        .chain(cached)
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "this test starts its own fake-gcs-server and finds none \
                 ({BINARY_VAR}, PATH, ~/.cache/jobfleet/bin): {HOW_TO_GET}"
            )
        })
}

/// `name` with everything but unreserved characters and `/` percent-encoded.
fn query_escape(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

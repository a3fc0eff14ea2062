//! A job kind of your own on jobfleet, end to end: `checksum` computes the SHA-256 of a
//! file and writes it beside the file as `FILE.sha256`, in the format `sha256sum -c`
//! reads. The handler is here; `src/bin/checksum-worker.rs` runs it as a worker process
//! (the README's "Write your own job kinds"), and `tests/checksum.rs` enqueues jobs to it
//! on RabbitMQ + Redis.
//!
//! What a handler of a real kind has to get right, and how this one does:
//!
//! - **Bad input is permanent**: a payload that does not parse or a file that does not
//!   exist fails with [`JobError::permanent`] (the job goes to the dead route at once);
//!   other I/O errors are retryable.
//! - **Running twice is harmless**: the same file gives the same output, written to a
//!   temporary name and renamed, so a retry after a crash never leaves half a file.
//! - **Cancellation is honoured**: the file is read in 64 KiB chunks off the async
//!   runtime, and a cancel request, a timeout or a shutdown stops it between chunks.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use jobfleet_worker::{Handler, JobContext, JobError};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The job kind this crate registers.
pub const KIND: &str = "checksum";

/// Bytes read per chunk.
const CHUNK: usize = 64 * 1024;

/// The payload of a `checksum` job: `{"path": "/data/file.bin"}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksumJob {
    /// The file to checksum; the result goes to the same path with `.sha256` appended.
    pub path: PathBuf,
}

/// The `checksum` handler.
#[derive(Clone, Copy, Debug, Default)]
pub struct Checksum;

#[async_trait]
impl Handler for Checksum {
    async fn run(&self, ctx: JobContext) -> Result<(), JobError> {
        let job: ChecksumJob = ctx.payload_json()?;
        let cancelled = ctx.cancelled().clone();
        let path = job.path.clone();
        let digest =
            tokio::task::spawn_blocking(move || sha256_file(&path, || cancelled.is_cancelled()))
                .await
                .map_err(|e| JobError::retryable(format!("the checksum task failed: {e}")))?;
        let digest = match digest {
            Ok(Some(digest)) => digest,
            Ok(None) => return Err(JobError::retryable("stopped before the end of the file")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(JobError::permanent(format!(
                    "{} does not exist",
                    job.path.display()
                )))
            }
            Err(e) => return Err(JobError::retryable(format!("{}: {e}", job.path.display()))),
        };
        write_checksum(&job.path, &digest, &ctx.job().id.to_string())
            .map_err(|e| JobError::retryable(format!("writing the checksum: {e}")))?;
        ctx.progress(1.0).await;
        Ok(())
    }
}

/// Where the checksum of `path` is written: `path` with `.sha256` appended.
pub fn checksum_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// The SHA-256 of the file at `path` in lower-case hex, read in chunks; `None` if `stop`
/// said to stop first.
pub fn sha256_file(path: &Path, stop: impl Fn() -> bool) -> io::Result<Option<String>> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        if stop() {
            return Ok(None);
        }
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let digest = hasher.finalize();
    Ok(Some(digest.iter().map(|b| format!("{b:02x}")).collect()))
}

/// Writes `DIGEST  NAME\n` to [`checksum_path`], through a temporary file (named with
/// `writer`, so two jobs on one file never share it) renamed into place, so readers never
/// see half a line.
fn write_checksum(path: &Path, digest: &str, writer: &str) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = checksum_path(path);
    let mut tmp_name = target.as_os_str().to_owned();
    tmp_name.push(format!(".tmp-{writer}"));
    let tmp = PathBuf::from(tmp_name);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(format!("{digest}  {name}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_sha256sum_and_stop_is_honoured() {
        let dir = std::env::temp_dir().join(format!("jobfleet-checksum-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("hello.txt");
        std::fs::write(&path, "hello\n").expect("write");
        // `printf 'hello\n' | sha256sum`
        let want = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
        assert_eq!(
            sha256_file(&path, || false).expect("read").as_deref(),
            Some(want)
        );
        assert_eq!(sha256_file(&path, || true).expect("read"), None);
        write_checksum(&path, want, "test").expect("write checksum");
        let written = std::fs::read_to_string(checksum_path(&path)).expect("read checksum");
        assert_eq!(written, format!("{want}  hello.txt\n"));
        let missing = sha256_file(&dir.join("missing"), || false).expect_err("missing");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let _ = std::fs::remove_dir_all(dir);
    }
}

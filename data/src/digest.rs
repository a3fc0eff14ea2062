//! SHA-256 of files, in hex: a dataset file's `sha256` in its manifest, and the bytes
//! behind a version's fingerprint and a prediction's run key.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::DataError;

/// `bytes` in lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The SHA-256 of the file at `path`, hex, read a MiB at a time.
pub(crate) fn file_sha256(path: &Path) -> Result<String, DataError> {
    let mut file =
        File::open(path).map_err(|e| DataError::Io(format!("{}: {e}", path.display())))?;
    let mut hash = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| DataError::Io(format!("{}: {e}", path.display())))?;
        if n == 0 {
            return Ok(hex(&hash.finalize()));
        }
        hash.update(&buffer[..n]);
    }
}

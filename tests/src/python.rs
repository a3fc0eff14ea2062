//! The test venv's Python (`scripts/python-venv.sh`: pika for the Python producer's
//! tests, moto for the S3 server of [`crate::s3`]), and the helpers its callers share.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace's root directory.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits inside the workspace")
}

/// A command's status and output, for failure messages.
pub fn show(output: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The test venv's python (pika and moto), making the venv first if needed; fails the
/// test with the helper's advice (what to install) if it cannot.
pub fn venv_python() -> PathBuf {
    let script = repo_root().join("scripts/python-venv.sh");
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (is bash installed?)", script.display()));
    assert!(
        output.status.success(),
        "these tests need Python 3 with its venv module and pika and moto from PyPI; {} said: {}",
        script.display(),
        show(&output)
    );
    let stdout = String::from_utf8(output.stdout).expect("a UTF-8 path");
    PathBuf::from(stdout.trim())
}

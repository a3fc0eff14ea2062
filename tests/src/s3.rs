//! An S3-compatible server of a test's own: `moto` (from PyPI, in the venv that
//! [`crate::python::venv_python`] makes) on a free loopback port with one bucket, killed when
//! dropped. The data store's client is object_store's real S3 client, speaking signed HTTP
//! to it.
//!
//! The bucket is made with one unsigned HTTP/1.1 request; tests read and write objects
//! through `jobfleet_data::Storage::open_with` and [`S3Server::options`] (moto keeps an
//! object private to the signer, so anonymous reads are refused).

use std::process::Command;

use crate::emulator::Emulator;

/// A running moto server with one bucket.
pub struct S3Server {
    /// `127.0.0.1:port`.
    pub addr: String,
    /// The bucket the test's store lives in.
    pub bucket: String,
    _moto: Emulator,
}

impl S3Server {
    /// Starts moto on a free port, waits until it answers and creates `bucket`.
    pub fn start(bucket: &str) -> Self {
        let python = crate::python::venv_python();
        let addr = jobfleet_testkit::free_addr();
        let port = addr.rsplit_once(':').expect("host:port").1.to_owned();
        let mut command = Command::new(&python);
        command.args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port]);
        let moto = Emulator::start("moto", command, &addr);
        let (status, body) = moto.request(
            "PUT",
            &format!("/{bucket}"),
            "application/octet-stream",
            &[],
        );
        assert_eq!(
            status,
            200,
            "create bucket {bucket}: {}",
            String::from_utf8_lossy(&body)
        );
        Self {
            addr,
            bucket: bucket.to_owned(),
            _moto: moto,
        }
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
}

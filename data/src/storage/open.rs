//! Opening the store at `[data] url`: a directory (a path or `file://`), or a bucket of
//! S3 (`s3://bucket[/prefix]`) or Google Cloud Storage (`gs://bucket[/prefix]`) with
//! object_store settings from the environment and the caller. A URL or setting that
//! cannot work stops start-up here, naming `data.url`; nothing is read or written yet.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;

use super::{path, Place, Storage};
use crate::error::DataError;

impl Storage {
    /// The store at `url`: a directory path, relative or absolute, or `file://…`; or
    /// `s3://bucket[/prefix]` (credentials, region and endpoint from the `AWS_*`
    /// environment variables) or `gs://bucket[/prefix]` (`GOOGLE_SERVICE_ACCOUNT` or
    /// `GOOGLE_APPLICATION_CREDENTIALS`). Nothing is touched until the first read or
    /// write, which creates a directory if missing.
    pub fn open(url: &str) -> Result<Self, DataError> {
        Self::open_with(url, &[])
    }

    /// [`Storage::open`], with object_store settings for a bucket on top of the
    /// environment's: `("aws_endpoint", "http://…")`, `("aws_allow_http", "true")`,
    /// `("google_service_account", "/path/key.json")`, … (the names of object_store's
    /// `AmazonS3ConfigKey` and `GoogleConfigKey`). A directory takes none.
    pub fn open_with(url: &str, options: &[(&str, &str)]) -> Result<Self, DataError> {
        let dir = match url.split_once("://") {
            None => PathBuf::from(url),
            Some(("file", path)) => PathBuf::from(path),
            Some((scheme @ ("s3" | "gs"), rest)) => return Self::cloud(url, scheme, rest, options),
            Some((scheme, _)) => {
                return Err(DataError::Config(format!(
                    "data.url: {scheme}:// is not supported; use a directory, file://, \
                     s3://bucket[/prefix] or gs://bucket[/prefix]"
                )))
            }
        };
        if dir.as_os_str().is_empty() {
            return Err(DataError::Config("data.url: name a directory".into()));
        }
        if let Some((key, _)) = options.first() {
            return Err(DataError::Config(format!(
                "data.url: {key}: a directory takes no object store settings"
            )));
        }
        let root = std::path::absolute(&dir)
            .map_err(|e| DataError::Config(format!("data.url: {dir:?}: {e}")))?;
        Ok(Self {
            store: Arc::new(OnceLock::new()),
            place: Place::Dir(root),
        })
    }

    /// A bucket of S3 or Google Cloud Storage, under an optional prefix. The client is
    /// built here (it makes no request), so a bad URL or credential setting stops start-up.
    fn cloud(
        url: &str,
        scheme: &str,
        rest: &str,
        options: &[(&str, &str)],
    ) -> Result<Self, DataError> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        if bucket.is_empty() {
            return Err(DataError::Config(format!(
                "data.url: {scheme}:// needs a bucket: {scheme}://bucket[/prefix]"
            )));
        }
        // reqwest takes the process's default TLS provider and panics without one: ring,
        // the one provider this build has (a provider installed first is kept).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let unknown = |key: &str, e: object_store::Error| {
            DataError::Config(format!("data.url: {scheme}:// setting {key:?}: {e}"))
        };
        let built: Result<Arc<dyn ObjectStore>, object_store::Error> = match scheme {
            "s3" => {
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                for (key, value) in options {
                    let key: AmazonS3ConfigKey = key.parse().map_err(|e| unknown(key, e))?;
                    builder = builder.with_config(key, *value);
                }
                builder.build().map(|s| Arc::new(s) as _)
            }
            _ => {
                let mut builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
                for (key, value) in options {
                    let key: GoogleConfigKey = key.parse().map_err(|e| unknown(key, e))?;
                    builder = builder.with_config(key, *value);
                }
                builder.build().map(|s| Arc::new(s) as _)
            }
        };
        let mut store =
            built.map_err(|e| DataError::Config(format!("data.url: {scheme}://{bucket}: {e}")))?;
        if !prefix.is_empty() {
            let prefix = path(prefix).map_err(|e| DataError::Config(format!("data.url: {e}")))?;
            store = Arc::new(PrefixStore::new(store, prefix));
        }
        Ok(Self {
            store: Arc::new(OnceLock::from(store)),
            place: Place::Cloud(url.trim_end_matches('/').to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str, options: &[(&str, &str)]) -> String {
        match Storage::open_with(url, options) {
            Err(DataError::Config(message)) => message,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn bad_urls_and_settings_are_refused_naming_the_key() {
        assert!(refused("ftp://host/x", &[]).contains("data.url: ftp:// is not supported"));
        assert!(refused("s3://", &[]).contains("needs a bucket"));
        assert!(refused("gs:///prefix", &[]).contains("needs a bucket"));
        let message = refused("s3://bucket", &[("aws_no_such_key", "1")]);
        assert!(message.contains("aws_no_such_key"), "{message}");
        let message = refused("./dir", &[("aws_region", "x")]);
        assert!(
            message.contains("takes no object store settings"),
            "{message}"
        );
    }

    #[test]
    fn a_bucket_url_opens_without_a_request() {
        let s3 = Storage::open_with(
            "s3://bucket/some/prefix/",
            &[
                ("aws_region", "eu-west-1"),
                ("aws_endpoint", "http://127.0.0.1:9"),
            ],
        )
        .expect("an S3 store");
        assert_eq!(s3.location(), "s3://bucket/some/prefix");
        assert_eq!(
            s3.location_of("datasets/d/quarantine/j.csv"),
            "s3://bucket/some/prefix/datasets/d/quarantine/j.csv"
        );
        let secret = Storage::open_with(
            "s3://bucket",
            &[
                ("aws_access_key_id", "AKIDCANARY"),
                ("aws_secret_access_key", "CANARY-SECRET"),
            ],
        )
        .expect("an S3 store");
        let shown = format!("{secret:?}");
        assert!(!shown.contains("CANARY"), "{shown}");
        let dir = Storage::open("file:///tmp/x").expect("a directory");
        assert_eq!(dir.location(), "/tmp/x");
        assert_eq!(
            dir.location_of("datasets/d/q.csv"),
            "/tmp/x/datasets/d/q.csv"
        );
        // A relative directory is named from where the process runs.
        let relative = Storage::open("jobfleet-data").expect("a directory");
        let here = std::env::current_dir().expect("a working directory");
        assert_eq!(
            relative.location_of("a/b.csv"),
            here.join("jobfleet-data/a/b.csv").display().to_string()
        );
    }
}

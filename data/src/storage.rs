//! Where datasets, models and outputs live: `[data] url`, through `object_store`.
//!
//! The URL is a directory (`file://` or a path; a shared volume for a fleet on many
//! machines), `s3://bucket[/prefix]` or `gs://bucket[/prefix]`. Keys are `/`-separated
//! paths under it. Every write of a whole object is atomic (the local store writes aside
//! and renames; a bucket shows an object only once its upload completes), and
//! [`Storage::create_json`] fails when the key exists (a conditional put: `If-None-Match:
//! *` on S3, generation 0 on GCS), which is how a version is published once. Large files
//! are written to a local temporary file first and uploaded in parts, and readers of CSV
//! and Parquet read a bucket's object from a downloaded copy, so memory stays bounded.

use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::DataError;

/// Upload part size for large files.
const PART_BYTES: usize = 8 * 1024 * 1024;

/// The data store of a fleet.
#[derive(Clone)]
pub struct Storage {
    /// Opened on first use, so a worker that never runs a data job creates nothing.
    store: Arc<OnceLock<Arc<dyn ObjectStore>>>,
    /// Where the objects are.
    place: Place,
}

/// Only where it is: a bucket client's debug output could hold its credentials.
impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("location", &self.location())
            .finish_non_exhaustive()
    }
}

/// A store's place: a directory here, or a bucket (and prefix) of an object store.
#[derive(Clone, Debug)]
enum Place {
    /// The directory the objects are files in; readers read them in place.
    Dir(PathBuf),
    /// `s3://…` or `gs://…`: readers read a downloaded copy.
    Cloud(String),
}

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

    /// The object store, created (with its directory) on first use.
    fn store(&self) -> Result<&Arc<dyn ObjectStore>, DataError> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        let Place::Dir(root) = &self.place else {
            unreachable!("a cloud store is built when opened")
        };
        std::fs::create_dir_all(root)
            .map_err(|e| DataError::Io(format!("data.url: cannot create {root:?}: {e}")))?;
        // Empty directories go with their last object (a predict's checkpoints).
        let store = LocalFileSystem::new_with_prefix(root)
            .map_err(|e| DataError::Io(format!("data.url: {root:?}: {e}")))?
            .with_automatic_cleanup(true);
        Ok(self.store.get_or_init(|| Arc::new(store)))
    }

    /// Where the store is, for messages: its directory or its URL.
    pub fn location(&self) -> String {
        match &self.place {
            Place::Dir(root) => root.display().to_string(),
            Place::Cloud(url) => url.clone(),
        }
    }

    /// Where the object at `key` is for a person to open: its absolute path in a
    /// directory store, its full URL (`s3://bucket/prefix/key`) in a bucket.
    pub fn location_of(&self, key: &str) -> String {
        match &self.place {
            Place::Dir(root) => root.join(key).display().to_string(),
            Place::Cloud(url) => format!("{url}/{key}"),
        }
    }

    /// The object at `key`, whole; `None` if there is none.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, DataError> {
        match self.store()?.get(&path(key)?).await {
            Ok(got) => Ok(Some(got.bytes().await.map_err(io(key))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io(key)(e)),
        }
    }

    /// The object at `key` parsed as JSON; `None` if there is none.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, DataError> {
        let Some(bytes) = self.get(key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| DataError::Corrupt(format!("{key}: {e}")))
    }

    /// Writes `bytes` at `key`, replacing what was there.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), DataError> {
        self.store()?
            .put(&path(key)?, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(io(key))
    }

    /// Writes `value` as JSON at `key` only if nothing is there; false if something was.
    pub async fn create_json<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<bool, DataError> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| DataError::Corrupt(format!("{key}: {e}")))?;
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store()?
            .put_opts(&path(key)?, PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(io(key)(e)),
        }
    }

    /// Writes `value` as JSON at `key`, replacing what was there.
    pub async fn put_json<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), DataError> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| DataError::Corrupt(format!("{key}: {e}")))?;
        self.put(key, Bytes::from(bytes)).await
    }

    /// Uploads the local file `file` to `key` in parts, replacing what was there.
    pub async fn upload(&self, file: &FsPath, key: &str) -> Result<(), DataError> {
        let upload = self
            .store()?
            .put_multipart(&path(key)?)
            .await
            .map_err(io(key))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut reader = tokio::fs::File::open(file)
            .await
            .map_err(|e| DataError::Io(format!("{}: {e}", file.display())))?;
        let mut buffer = vec![0u8; PART_BYTES];
        loop {
            let n = reader
                .read(&mut buffer)
                .await
                .map_err(|e| DataError::Io(format!("{}: {e}", file.display())))?;
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(2).await.map_err(io(key))?;
            writer.write(&buffer[..n]);
        }
        writer.finish().await.map(|_| ()).map_err(io(key))
    }

    /// Whether an object is at `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, DataError> {
        match self.store()?.head(&path(key)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(io(key)(e)),
        }
    }

    /// The keys under `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, DataError> {
        let mut keys: Vec<String> = self
            .store()?
            .list(Some(&path(prefix)?))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .map_err(io(prefix))?;
        keys.sort();
        Ok(keys)
    }

    /// Deletes the object at `key`, if there is one.
    pub async fn delete(&self, key: &str) -> Result<(), DataError> {
        match self.store()?.delete(&path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io(key)(e)),
        }
    }

    /// Deletes every object under `prefix`.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), DataError> {
        let keys: Vec<_> = self
            .store()?
            .list(Some(&path(prefix)?))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(io(prefix))?;
        for key in keys {
            match self.store()?.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(io(prefix)(e)),
            }
        }
        Ok(())
    }

    /// A local file with the object at `key`, for readers that take one (CSV, Parquet):
    /// a directory store's own file, read in place, or a copy downloaded from a bucket to
    /// a scratch file that goes when the copy is dropped. `None` if there is no object.
    pub async fn local_copy(&self, key: &str) -> Result<Option<LocalCopy>, DataError> {
        let p = path(key)?;
        if let Place::Dir(root) = &self.place {
            let file = root.join(p.as_ref());
            return Ok(file.is_file().then(|| LocalCopy::local(file)));
        }
        let mut stream = match self.store()?.get(&p).await {
            Ok(got) => got.into_stream(),
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(io(key)(e)),
        };
        let scratch = Scratch::new("copy");
        let failed =
            |e: std::io::Error| DataError::Io(format!("{}: {e}", scratch.path().display()));
        let mut file = tokio::fs::File::create(scratch.path())
            .await
            .map_err(failed)?;
        while let Some(bytes) = stream.try_next().await.map_err(io(key))? {
            file.write_all(&bytes).await.map_err(failed)?;
        }
        file.flush().await.map_err(failed)?;
        Ok(Some(LocalCopy {
            path: scratch.path().to_path_buf(),
            _scratch: Some(scratch),
        }))
    }

    /// [`Storage::local_copy`] of an object that must be there (one a manifest names).
    pub async fn local_copy_of(&self, key: &str) -> Result<LocalCopy, DataError> {
        self.local_copy(key)
            .await?
            .ok_or_else(|| DataError::Corrupt(format!("{key}: missing from {}", self.location())))
    }
}

/// A local file holding an object; a downloaded copy is removed when this is dropped.
#[derive(Debug)]
pub struct LocalCopy {
    path: PathBuf,
    _scratch: Option<Scratch>,
}

impl LocalCopy {
    /// A file of this machine, read in place.
    pub(crate) fn local(path: PathBuf) -> Self {
        Self {
            path,
            _scratch: None,
        }
    }

    /// The file.
    pub fn path(&self) -> &FsPath {
        &self.path
    }
}

/// A key as an object store path, refusing `..` and empty parts.
fn path(key: &str) -> Result<Path, DataError> {
    Path::parse(key).map_err(|e| DataError::Invalid {
        field: "path".into(),
        reason: format!("{key:?}: {e}"),
    })
}

fn io(key: &str) -> impl Fn(object_store::Error) -> DataError + '_ {
    move |e| DataError::Io(format!("{key}: {e}"))
}

/// A scratch file that is removed when dropped.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    /// A new, not yet created, file name in the system's temporary directory.
    pub fn new(what: &str) -> Self {
        Self(std::env::temp_dir().join(format!("jobfleet-{what}-{}", uuid::Uuid::now_v7())))
    }

    /// Its path.
    pub fn path(&self) -> &FsPath {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
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

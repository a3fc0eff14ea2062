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
//!
//! # Layout
//!
//! - this file: [`Storage`] and its objects (get, put, create once, upload, list, delete).
//! - `open`: [`Storage::open`], a directory or a bucket from the URL.
//! - `local`: local files for the readers ([`LocalCopy`], [`Scratch`], a payload's file).

mod local;
mod open;

use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

use crate::error::DataError;

pub(crate) use local::resolve;
pub use local::{LocalCopy, Scratch};

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

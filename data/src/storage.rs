//! Where datasets, models and outputs live: `[data] url`, through `object_store`.
//!
//! Keys are `/`-separated paths under the data URL. Every write of a whole object is
//! atomic (the local store writes aside and renames), and [`Storage::create`] fails when
//! the key exists, which is how a version is published once. Large files are written to
//! a local temporary file first and uploaded in parts, so memory stays bounded.

use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

use crate::error::DataError;

/// Upload part size for large files.
const PART_BYTES: usize = 8 * 1024 * 1024;

/// The data store of a fleet.
#[derive(Clone, Debug)]
pub struct Storage {
    /// Opened on first use, so a worker that never runs a data job creates nothing.
    store: Arc<OnceLock<Arc<dyn ObjectStore>>>,
    /// The directory, for readers that take a local file.
    root: PathBuf,
}

impl Storage {
    /// The store at `url`: a directory path, relative or absolute, or `file://…`. Nothing
    /// is touched until the first read or write, which creates the directory if missing.
    pub fn open(url: &str) -> Result<Self, DataError> {
        let dir = match url.split_once("://") {
            None => PathBuf::from(url),
            Some(("file", path)) => PathBuf::from(path),
            Some((scheme, _)) => {
                return Err(DataError::Config(format!(
                    "data.url: {scheme}:// is not built in; use a directory (a shared volume \
                     for a fleet on many machines)"
                )))
            }
        };
        if dir.as_os_str().is_empty() {
            return Err(DataError::Config("data.url: name a directory".into()));
        }
        let root = std::path::absolute(&dir)
            .map_err(|e| DataError::Config(format!("data.url: {dir:?}: {e}")))?;
        Ok(Self {
            store: Arc::new(OnceLock::new()),
            root,
        })
    }

    /// The object store, created (with its directory) on first use.
    fn store(&self) -> Result<&Arc<dyn ObjectStore>, DataError> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        let root = &self.root;
        std::fs::create_dir_all(root)
            .map_err(|e| DataError::Io(format!("data.url: cannot create {root:?}: {e}")))?;
        // Empty directories go with their last object (a predict's checkpoints).
        let store = LocalFileSystem::new_with_prefix(root)
            .map_err(|e| DataError::Io(format!("data.url: {root:?}: {e}")))?
            .with_automatic_cleanup(true);
        Ok(self.store.get_or_init(|| Arc::new(store)))
    }

    /// The directory the store keeps its objects in.
    pub fn root(&self) -> &FsPath {
        &self.root
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

    /// A local file with the object at `key`: the store's own file (this store is a
    /// directory), read in place.
    pub fn local_file(&self, key: &str) -> Result<PathBuf, DataError> {
        let p = path(key)?;
        Ok(self.root.join(p.as_ref()))
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

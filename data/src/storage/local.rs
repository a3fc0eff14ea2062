//! Local files for the readers that take one (CSV, JSON Lines, Parquet): an object of a
//! directory store read in place, a bucket's object downloaded to a scratch file that
//! goes when dropped, or a file a payload names by path.

use std::path::{Path as FsPath, PathBuf};

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use tokio::io::AsyncWriteExt;

use super::{io, path, Place, Storage};
use crate::error::DataError;

impl Storage {
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

/// A file named by a payload's `field`: a key under the data URL (read from a downloaded
/// copy when the store is a bucket), an absolute path, or `file://`.
pub(crate) async fn resolve(
    storage: &Storage,
    field: &str,
    name: &str,
) -> Result<LocalCopy, DataError> {
    let local = if let Some(p) = name.strip_prefix("file://") {
        Some(LocalCopy::local(PathBuf::from(p)))
    } else if FsPath::new(name).is_absolute() {
        Some(LocalCopy::local(PathBuf::from(name)))
    } else {
        storage
            .local_copy(name)
            .await
            .map_err(|e| DataError::invalid(field, e.to_string()))?
    };
    match local {
        Some(copy) if copy.path().is_file() => Ok(copy),
        _ => Err(DataError::invalid(field, format!("{name:?}: no such file"))),
    }
}

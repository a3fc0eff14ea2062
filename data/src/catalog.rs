//! Versions of datasets and models in storage, published once each and never changed.
//!
//! A version is a manifest at `{datasets|models}/{name}/v{N}/…`, created only if absent
//! ([`Storage::create_json`]), so two writers can never both publish `N`; the latest
//! version is the highest `N`. Before it publishes, a job writes an intent at
//! `…/{name}/jobs/{job id}.json` naming the version it is about to publish, so a
//! redelivered job finds what it already published instead of publishing again.
//!
//! The writers hold the kind's lock (`dataset:{name}`, `model:{name}`), and pass its
//! fencing token through the store's fenced write at `data:{kind}:{name}` before they
//! publish: the store refuses a token older than the last accepted, so a worker that
//! lost its lock (paused, cut off) and a newer holder took over can never publish over
//! the newer one's work.

use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::storage::Storage;

/// What is versioned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `datasets/`.
    Dataset,
    /// `models/`.
    Model,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Self::Dataset => "datasets",
            Self::Model => "models",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Self::Dataset => "manifest.json",
            Self::Model => "model.json",
        }
    }

    /// The lock key and fenced resource of `name`: `dataset:{name}` or `model:{name}`.
    pub fn lock_key(self, name: &str) -> String {
        match self {
            Self::Dataset => format!("dataset:{name}"),
            Self::Model => format!("model:{name}"),
        }
    }
}

/// Checks a dataset or model name: letters, digits, `-`, `_`, `.`, at most 100.
pub fn check_name(field: &str, name: &str) -> Result<(), DataError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(DataError::invalid(
            field,
            format!("{name:?}: use 1–100 letters, digits, - _ . (not first)"),
        ))
    }
}

/// The key of version `version` of `name`.
pub fn version_key(kind: Kind, name: &str, version: u64) -> String {
    format!("{}/{name}/v{version:06}/{}", kind.dir(), kind.file())
}

/// A key beside the versions of `name`: `{dir}/{name}/{rest}`.
pub fn key(kind: Kind, name: &str, rest: &str) -> String {
    format!("{}/{name}/{rest}", kind.dir())
}

/// The published versions of `name`, ascending.
pub async fn versions(storage: &Storage, kind: Kind, name: &str) -> Result<Vec<u64>, DataError> {
    let prefix = format!("{}/{name}/", kind.dir());
    let mut versions: Vec<u64> = storage
        .list(&prefix)
        .await?
        .iter()
        .filter_map(|k| {
            let rest = k.strip_prefix(&prefix)?;
            let (v, file) = rest.split_once('/')?;
            (file == kind.file()).then_some(())?;
            v.strip_prefix('v')?.parse().ok()
        })
        .collect();
    versions.sort_unstable();
    Ok(versions)
}

/// The manifest of `version` of `name`, or of the latest version when `None`; an error
/// names the payload's `field`.
pub async fn load<T: serde::de::DeserializeOwned>(
    storage: &Storage,
    kind: Kind,
    field: &str,
    name: &str,
    version: Option<u64>,
) -> Result<(u64, T), DataError> {
    let what = field;
    let version = match version {
        Some(v) => v,
        None => *versions(storage, kind, name).await?.last().ok_or_else(|| {
            DataError::invalid(what, format!("{name:?} has no published version"))
        })?,
    };
    let manifest = storage
        .get_json(&version_key(kind, name, version))
        .await?
        .ok_or_else(|| DataError::invalid(what, format!("{name:?} has no version {version}")))?;
    Ok((version, manifest))
}

/// A job's note of the version it publishes.
#[derive(Debug, Serialize, Deserialize)]
struct Intent {
    version: u64,
}

/// What an earlier attempt of `job_id` published, if it got that far: its version, whose
/// manifest names `job_id`.
pub async fn published_by<T: serde::de::DeserializeOwned + Published>(
    storage: &Storage,
    kind: Kind,
    name: &str,
    job_id: &str,
) -> Result<Option<(u64, T)>, DataError> {
    let Some(intent) = storage
        .get_json::<Intent>(&key(kind, name, &format!("jobs/{job_id}.json")))
        .await?
    else {
        return Ok(None);
    };
    let manifest: Option<T> = storage
        .get_json(&version_key(kind, name, intent.version))
        .await?;
    Ok(manifest
        .filter(|m| m.job_id() == job_id)
        .map(|m| (intent.version, m)))
}

/// A manifest that says which job published it.
pub trait Published {
    /// The publishing job's id.
    fn job_id(&self) -> &str;
}

/// A manifest that knows its place in the catalog: what it is a version of, so the one
/// publication every kind ends with ([`crate::fencing::publish`]) needs nothing else.
pub trait Catalogued: Published + Serialize {
    /// The kind of thing it versions.
    const KIND: Kind;
    /// The name of the dataset or model.
    fn name(&self) -> &str;
    /// Its version.
    fn version(&self) -> u64;
}

/// The next free version of `name` (one past the latest).
pub async fn next_version(storage: &Storage, kind: Kind, name: &str) -> Result<u64, DataError> {
    Ok(versions(storage, kind, name)
        .await?
        .last()
        .map_or(1, |v| v + 1))
}

/// Publishes `manifest` as `version` of `name` for `job_id`: the intent, then the
/// manifest, created only if absent. [`DataError::Stale`] if `version` was taken.
pub async fn publish<T: Serialize>(
    storage: &Storage,
    kind: Kind,
    name: &str,
    version: u64,
    job_id: &str,
    manifest: &T,
) -> Result<(), DataError> {
    storage
        .put_json(
            &key(kind, name, &format!("jobs/{job_id}.json")),
            &Intent { version },
        )
        .await?;
    if storage
        .create_json(&version_key(kind, name, version), manifest)
        .await?
    {
        Ok(())
    } else {
        Err(DataError::Stale(format!(
            "version {version} of {name:?} was published by another job meanwhile"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct M {
        job_id: String,
    }

    impl Published for M {
        fn job_id(&self) -> &str {
            &self.job_id
        }
    }

    #[tokio::test]
    async fn versions_publish_once_and_a_job_finds_its_own() -> Result<(), DataError> {
        let dir = crate::storage::Scratch::new("catalog");
        let storage = Storage::open(&dir.path().display().to_string())?;
        let m = |j: &str| M { job_id: j.into() };
        assert_eq!(next_version(&storage, Kind::Dataset, "g").await?, 1);
        publish(&storage, Kind::Dataset, "g", 1, "a", &m("a")).await?;
        publish(&storage, Kind::Dataset, "g", 2, "b", &m("b")).await?;
        let taken = publish(&storage, Kind::Dataset, "g", 2, "c", &m("c")).await;
        assert!(matches!(taken, Err(DataError::Stale(_))), "{taken:?}");
        assert_eq!(versions(&storage, Kind::Dataset, "g").await?, vec![1, 2]);
        let (v, latest): (u64, M) = load(&storage, Kind::Dataset, "dataset", "g", None).await?;
        assert_eq!((v, latest), (2, m("b")));
        let found: Option<(u64, M)> = published_by(&storage, Kind::Dataset, "g", "a").await?;
        assert_eq!(found, Some((1, m("a"))));
        // `c` wrote its intent for 2, but 2 is `b`'s: `c` published nothing.
        let found: Option<(u64, M)> = published_by(&storage, Kind::Dataset, "g", "c").await?;
        assert_eq!(found, None);
        std::fs::remove_dir_all(dir.path()).ok();
        Ok(())
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("dataset", "games-2026.v1").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(check_name("dataset", bad).is_err(), "{bad}");
        }
    }
}

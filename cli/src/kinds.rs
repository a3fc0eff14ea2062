//! The job kinds of the `jobfleet` command's workers (`worker`, `dev`, `run`): the
//! built-in ones, and with the `data` feature (on by default) `ingest`, `train` and
//! `predict` on `[data] url`.

use jobfleet_common::Config;
use jobfleet_worker::Registry;

use crate::error::Result;

/// The built-in kinds, and the data kinds where this build has them.
pub fn registry(config: &Config) -> Result<Registry> {
    #[allow(unused_mut)]
    let mut registry = Registry::with_builtins();
    #[cfg(feature = "data")]
    jobfleet_data::register(&mut registry, &config.data)?;
    #[cfg(not(feature = "data"))]
    let _ = config;
    Ok(registry)
}

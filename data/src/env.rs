//! What every data kind runs with: the storage under `[data] url` and the `[data]`
//! settings, built once by [`crate::register`] and shared by the three handlers.

use jobfleet_common::config::DataConfig;

use crate::storage::Storage;

/// What the data kinds share: the storage and `[data]`.
#[derive(Debug)]
pub(crate) struct Env {
    pub storage: Storage,
    pub config: DataConfig,
}

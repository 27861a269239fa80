//! [`HostBuilder`]: the data dir, the compiled-component cache and the retention of a new
//! [`Host`], and what a host does once at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{DEFAULT_DATA_DIR, Host, Inner};
use crate::Error;
use crate::capabilities::Services;
use crate::engine::Runtime;
use crate::executions::{Executions, Retention, SledExecutions};
use crate::storage::blobs::local::LocalBlobs;
use crate::storage::datasets::SledDatasets;
use crate::storage::kv::sled::SledKv;
use crate::storage::queues::{Queues, SledQueues};
use crate::storage::topics::{SledTopics, Topics};
use crate::store::Store;

/// Configures a [`Host`].
#[derive(Debug, Clone)]
pub struct HostBuilder {
    data_dir: PathBuf,
    cache_dir: Option<PathBuf>,
    retention: Retention,
}

impl HostBuilder {
    pub(super) fn new() -> HostBuilder {
        HostBuilder { data_dir: PathBuf::from(DEFAULT_DATA_DIR), cache_dir: None, retention: Retention::default() }
    }

    /// Where the host keeps its store, buckets and compiled-component cache (default `.host`).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = dir.into();
        self
    }

    /// Where compiled components are kept (default: `cache` in the data dir). Hosts with different
    /// data dirs may share one: entries are keyed by the component's hash and the engine's settings.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// How long and how many execution records to keep (default: [`Retention::default`]).
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Create the data dir if needed, open the store and start the engine.
    pub fn build(self) -> Result<Host, Error> {
        let data_dir = self.data_dir;
        let cache_dir = self.cache_dir.unwrap_or_else(|| data_dir.join("cache"));
        let data_error = |message: String| Error::DataDir { path: data_dir.clone(), message };
        crate::files::create_dir_all_synced(&data_dir).map_err(|e| data_error(e.to_string()))?;
        let store = Store::open(&data_dir.join("db")).map_err(|e| match e {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") => {
                data_error(format!("{io}; is another `host` process using it? Use `--data` to pick another folder"))
            }
            e => data_error(e.to_string()),
        })?;
        remove_orphans(&data_dir);
        let runtime = Runtime::new(cache_dir).map_err(|e| Error::Engine(format!("{e:#}")))?;
        let store = Arc::new(store);
        // The embedded backends; another store goes behind the same traits.
        let executions = SledExecutions::open(&store, self.retention).map_err(|e| data_error(e.to_string()))?;
        let executions = Arc::new(Executions::new(executions));
        let services = Services {
            kv: Arc::new(SledKv::new(store.clone())),
            blobs: Arc::new(LocalBlobs::new(data_dir.join("buckets"))),
            datasets: Arc::new(SledDatasets::new(store.clone(), data_dir.join("items"))),
            topics: Topics::new(Arc::new(SledTopics::new(store.clone()))),
            queues: Arc::new(Queues::new(Arc::new(SledQueues::new(store.clone())))),
            buckets_root: data_dir.join("buckets"),
            models: Arc::default(),
        };
        let inner = Inner { runtime, store, data_dir, metrics: Arc::default(), executions, services };
        Ok(Host { inner: Arc::new(inner) })
    }
}

/// Remove the temporary files of item uploads and bucket writes that a crash interrupted. Done
/// once the store is open: its lock keeps other hosts off the data dir, so no write is in flight.
fn remove_orphans(data_dir: &Path) {
    let removed = crate::storage::datasets::remove_orphans(&data_dir.join("items"))
        .and_then(|()| crate::storage::blobs::local::remove_orphans(&data_dir.join("buckets")));
    if let Err(error) = removed {
        tracing::warn!(%error, "cannot remove temporary files left by an interrupted write");
    }
}

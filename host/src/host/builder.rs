//! [`HostBuilder`]: the data dir, the compiled-component cache and the retention of a new
//! [`Host`], and what a host does once at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{DEFAULT_DATA_DIR, Host, Inner, Secrets};
use crate::Error;
use crate::capabilities::Services;
use crate::engine::Runtime;
use crate::executions::{ExecutionBackend, Executions, NatsExecutions, Retention, SledExecutions};
use crate::storage::blobs::local::LocalBlobs;
use crate::storage::blobs::nats::NatsBlobs;
use crate::storage::datasets::{NatsDatasets, SledDatasets};
use crate::storage::kv::nats::NatsKv;
use crate::storage::kv::sled::SledKv;
use crate::storage::nats::Nats;
use crate::storage::queues::{NatsQueues, Queues, SledQueues};
use crate::storage::topics::{NatsTopics, SledTopics, Topics};
use crate::store::Store;

/// Configures a [`Host`].
#[derive(Debug, Clone)]
pub struct HostBuilder {
    data_dir: PathBuf,
    cache_dir: Option<PathBuf>,
    retention: Retention,
    nats: Option<Nats>,
    secrets: Option<PathBuf>,
}

impl HostBuilder {
    pub(super) fn new() -> HostBuilder {
        HostBuilder {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            cache_dir: None,
            retention: Retention::default(),
            nats: None,
            secrets: None,
        }
    }

    /// Keep every store (key-value, buckets, items, queues, topics, executions, schedules) in
    /// the JetStream cluster of `nats`, shared with every host connected to it, instead of the
    /// data dir (which then holds only the compiled-component cache).
    pub fn nats(mut self, nats: Nats) -> Self {
        self.nats = Some(nats);
        self
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

    /// Read values of the apps' `[variables]` from the TOML file `path` (`name = "value"` lines)
    /// when [`HostBuilder::build`] runs, which fails when group or others can read the file. The
    /// environment (`HOST_VAR_<NAME>`) overrides the file; a variable's `default` is used when
    /// neither has it.
    pub fn secrets_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.secrets = Some(path.into());
        self
    }

    /// Create the data dir if needed, open the backends and start the engine.
    pub fn build(self) -> Result<Host, Error> {
        let secrets = self.secrets.as_deref().map(Secrets::read).transpose()?;
        let data_dir = self.data_dir;
        let cache_dir = self.cache_dir.unwrap_or_else(|| data_dir.join("cache"));
        crate::files::create_dir_all_synced(&data_dir).map_err(|e| data_error(&data_dir, e))?;
        let (store, executions, services) = match self.nats {
            Some(nats) => {
                let (executions, services) = nats_backends(&nats, self.retention, &data_dir);
                (None, executions, services)
            }
            None => {
                let (store, (executions, services)) = embedded_backends(&data_dir, self.retention)?;
                (Some(store), executions, services)
            }
        };
        let runtime = Runtime::new(cache_dir).map_err(|e| Error::Engine(format!("{e:#}")))?;
        let executions = Arc::new(Executions::new(executions));
        let inner = Inner { runtime, store, data_dir, metrics: Arc::default(), executions, services, secrets };
        Ok(Host { inner: Arc::new(inner) })
    }
}

/// The execution store and the services of a host's backends.
type Backends = (Arc<dyn ExecutionBackend>, Services);

fn data_error(data_dir: &Path, message: impl ToString) -> Error {
    Error::DataDir { path: data_dir.to_path_buf(), message: message.to_string() }
}

/// The embedded backends: the sled store and folders of the data dir, which one host at a time
/// may use (the store's lock says so).
fn embedded_backends(data_dir: &Path, retention: Retention) -> Result<(Arc<Store>, Backends), Error> {
    let store = Store::open(&data_dir.join("db")).map_err(|e| match e {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") => {
            data_error(
                data_dir,
                format!("{io}; is another `host` process using it? Use `--data` to pick another folder"),
            )
        }
        e => data_error(data_dir, e),
    })?;
    remove_orphans(data_dir);
    let store = Arc::new(store);
    let executions = SledExecutions::open(&store, retention).map_err(|e| data_error(data_dir, e))?;
    let services = Services {
        kv: Arc::new(SledKv::new(store.clone())),
        blobs: Arc::new(LocalBlobs::new(data_dir.join("buckets"))),
        datasets: Arc::new(SledDatasets::new(store.clone(), data_dir.join("items"))),
        topics: Topics::new(Arc::new(SledTopics::new(store.clone()))),
        queues: Arc::new(Queues::new(Arc::new(SledQueues::new(store.clone())))),
        buckets_root: data_dir.join("buckets"),
        models: Arc::default(),
    };
    Ok((store, (executions, services)))
}

/// The NATS backends: every store in the JetStream cluster, shared by every host connected to
/// it. Nothing is read or written before first use.
fn nats_backends(nats: &Nats, retention: Retention, data_dir: &Path) -> Backends {
    let services = Services {
        kv: Arc::new(NatsKv::new(nats.clone())),
        blobs: Arc::new(NatsBlobs::new(nats.clone())),
        datasets: Arc::new(NatsDatasets::new(nats.clone())),
        topics: Topics::new(Arc::new(NatsTopics::new(nats.clone()))),
        queues: Arc::new(Queues::new(Arc::new(NatsQueues::new(nats.clone())))),
        buckets_root: data_dir.join("buckets"),
        models: Arc::default(),
    };
    (NatsExecutions::new(nats.clone(), retention), services)
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

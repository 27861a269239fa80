//! The embedding API: [`Host`] owns the engine and the data dir, [`App`] is one loaded manifest,
//! [`Function`] is one callable export.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Error;
use crate::call::{CallTarget, Guest};
use crate::capabilities::http::AppOutbound;
use crate::capabilities::{Contexts, Services, Setup};
use crate::engine::{self, Runtime};
use crate::exports;
use crate::function::Function;
use crate::manifest::{Manifest, ManifestError, ModelSource};
use crate::metrics::Metrics;
use crate::models::Models;
use crate::storage::blobs::BlobBackend;
use crate::storage::datasets::DatasetBackend;
use crate::storage::executions::Executions;
use crate::storage::kv::KvBackend;
use crate::storage::queues::{Queue, QueueError, Queues};
use crate::storage::topics::Topics;
use crate::store::{CommitStats, Store};
use crate::triggers::http::HttpHandler;

mod builder;
mod variables;

pub use builder::HostBuilder;
use variables::Secrets;
pub use variables::VariableError;

/// Default data dir, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = ".host";

/// A function host: one engine, one set of storage backends (embedded, or a NATS cluster shared
/// with other hosts), any number of loaded apps. Cheap to clone.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Runtime,
    /// The embedded store, when the embedded backends are in use.
    store: Option<Arc<Store>>,
    data_dir: PathBuf,
    metrics: Arc<Metrics>,
    executions: Arc<Executions>,
    /// The backends and shared state every function's capability contexts are built from.
    services: Services,
    /// The secrets file's values, when the host has one.
    secrets: Option<Secrets>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Records of direct calls still in memory go to the store, which flushes as it closes.
        self.executions.close();
    }
}

impl Host {
    /// Start configuring a host.
    pub fn builder() -> HostBuilder {
        HostBuilder::new()
    }

    /// The data dir in use.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Whether instances come from the pooling allocator (false: on-demand fallback).
    pub fn pooling(&self) -> bool {
        self.inner.runtime.pooling
    }

    /// Components compiled from Wasm since this host started (cache hits do not count).
    pub fn compilations(&self) -> u64 {
        self.inner.runtime.compilations.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Group-commit counters of the embedded store (zero on a networked backend).
    pub fn commit_stats(&self) -> CommitStats {
        self.inner.store.as_ref().map(|store| store.commit_stats()).unwrap_or_default()
    }

    /// Counters of every call made through this host (for `/metrics` and the dashboard).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Every execution record: list, get, wait, logs.
    pub fn executions(&self) -> &Arc<Executions> {
        &self.inner.executions
    }

    /// Write everything the store holds to disk now (done on shutdown).
    pub fn flush(&self) -> Result<(), Error> {
        let Some(store) = &self.inner.store else { return Ok(()) };
        store.flush().map_err(|e| Error::DataDir { path: self.inner.data_dir.clone(), message: e.to_string() })
    }

    /// The embedded sled store, when the host uses the embedded backends (for tests and tools
    /// that inspect its trees).
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.inner.store.as_ref()
    }

    /// Load an app from its manifest: resolve its `[variables]` (see [`HostBuilder::secrets_file`]),
    /// compile (or fetch from cache) every component and prepare it for fast instantiation.
    pub fn load(&self, manifest: impl AsRef<Path>) -> Result<App, Error> {
        let manifest = Manifest::load(manifest)?;
        let values = variables::resolve(&manifest, self.inner.secrets.as_ref(), |name| std::env::var_os(name))?;
        let runtime = &self.inner.runtime;
        let model_specs = Arc::new(manifest.models.clone());
        let queue_specs = Arc::new(manifest.queues.clone());
        let outbound = AppOutbound::new(&manifest.outbound)
            .map(Arc::new)
            .map_err(|message| ManifestError::Invalid { path: manifest.path.clone(), message })?;
        let model_error = |message: String| Error::Model { path: manifest.path.clone(), message };
        for (name, spec) in model_specs.iter() {
            crate::models::check_engine(name, spec.engine).map_err(|e| model_error(e.to_string()))?;
            if spec.warm {
                let buckets_dir = self.buckets_dir(&manifest.app);
                let loaded = self.inner.services.models.named(&manifest.app, name, spec, &buckets_dir);
                loaded.map_err(|e| model_error(e.to_string()))?;
            } else if let ModelSource::Path(path) = &spec.source
                && !path.is_file()
            {
                return Err(model_error(format!("model `{name}`: no file {}", path.display())));
            }
        }
        let mut guests = Vec::new();
        let mut functions = Vec::new();
        for (name, spec) in &manifest.functions {
            let caps = Arc::new(Contexts::build(&Setup {
                app: &manifest.app,
                function: name,
                grants: &Arc::new(spec.grants.clone()),
                config: &variables::render_config(&spec.config, &values),
                model_specs: &model_specs,
                queue_specs: &queue_specs,
                outbound: &outbound,
                metrics: &self.inner.metrics,
                services: &self.inner.services,
            }));
            let pre = runtime.load(&spec.source)?;
            let guest = Arc::new(
                Guest::new(
                    &manifest.app,
                    name,
                    pre,
                    spec.limits,
                    caps,
                    self.inner.metrics.clone(),
                    self.inner.executions.clone(),
                )
                .with_record(spec.record),
            );
            let exports = exports::exports(guest.pre.component());
            let names: Vec<&str> = exports.iter().map(|e| e.name.as_str()).collect();
            // Export names are known only now, from the component.
            spec.public
                .check_exports(&format!("function.{name}.public"), &names)
                .map_err(|message| ManifestError::Invalid { path: manifest.path.clone(), message })?;
            for export in exports {
                let target = CallTarget {
                    guest: guest.clone(),
                    export: export.index,
                    result_count: usize::from(export.result.is_some()),
                };
                functions.push(Function {
                    name: format!("{name}.{}", export.name),
                    export: Arc::new(export),
                    target: Arc::new(target),
                });
            }
            guests.push(guest);
        }
        let mut routes = Vec::new();
        for route in &manifest.http_routes {
            let guest = guests.iter().find(|g| g.name == route.function).expect("manifest checked the function");
            routes.push(HttpHandler::new(route.clone(), guest.clone()).map_err(|message| {
                engine::LoadError::Invalid { path: manifest.functions[&route.function].source.clone(), message }
            })?);
        }
        Ok(App { manifest, guests, functions, routes })
    }

    /// The folder holding the bytes of items, by app and dataset.
    pub fn items_dir(&self) -> PathBuf {
        self.inner.data_dir.join("items")
    }

    /// The datasets of every app (items, annotations, item events).
    pub fn datasets(&self) -> &Arc<dyn DatasetBackend> {
        &self.inner.services.datasets
    }

    /// Open dataset `name` of `app` (created on first use).
    pub async fn dataset(
        &self,
        app: &str,
        name: &str,
    ) -> Result<crate::storage::datasets::Dataset, crate::storage::datasets::ItemsError> {
        crate::storage::datasets::Dataset::new(&*self.inner.services.datasets, app, name).await
    }

    /// The models loaded by this host's apps (shared by all their calls).
    pub fn models(&self) -> &Arc<Models> {
        &self.inner.services.models
    }

    /// Queue `name` of `app` with the settings of `spec` (see [`crate::manifest::QueueSpec::of`]).
    pub fn queue(&self, app: &str, name: &str, spec: &crate::manifest::QueueSpec) -> Result<Arc<Queue>, QueueError> {
        self.inner.services.queues.open(app, name, spec)
    }

    /// The topics of every app.
    pub fn topics(&self) -> &Topics {
        &self.inner.services.topics
    }

    /// Every queue opened so far (dead-lettering needs them all).
    pub fn queues(&self) -> &Arc<Queues> {
        &self.inner.services.queues
    }

    /// The folder holding `app`'s buckets.
    pub fn buckets_dir(&self, app: &str) -> PathBuf {
        self.inner.data_dir.join("buckets").join(app)
    }

    /// Every app's key-value stores.
    pub fn kv(&self) -> &Arc<dyn KvBackend> {
        &self.inner.services.kv
    }

    /// Every app's buckets.
    pub fn blobs(&self) -> &Arc<dyn BlobBackend> {
        &self.inner.services.blobs
    }
}

/// A loaded app: its manifest, its components, every callable export and its http routes.
pub struct App {
    manifest: Manifest,
    guests: Vec<Arc<Guest>>,
    functions: Vec<Function>,
    routes: Vec<HttpHandler>,
}

impl App {
    /// The app's name from the manifest.
    pub fn name(&self) -> &str {
        &self.manifest.app
    }

    /// The validated manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Every callable export, named `function.export`.
    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    /// The `[[trigger.http]]` routes, ready to serve requests.
    pub fn routes(&self) -> &[HttpHandler] {
        &self.routes
    }

    /// The loaded `[function.NAME]` components.
    pub fn guests(&self) -> &[Arc<Guest>] {
        &self.guests
    }

    /// The component behind `name`: a manifest function (`counter`) or one of its exports
    /// (`counter.increment`). Pausing applies to the whole component.
    pub fn guest(&self, name: &str) -> Result<&Arc<Guest>, Error> {
        let component = match self.guests.iter().find(|g| g.name == name) {
            Some(guest) => return Ok(guest),
            None => self.function(name)?.target.guest.name.clone(),
        };
        Ok(self.guests.iter().find(|g| g.name == component).expect("every export has its guest"))
    }

    /// Find a callable export by name: `counter.increment`, `types.math.add`, the full export name
    /// after the function (`types.test:types/math@0.1.0#add`), or just `hello` when the function
    /// has a single export.
    pub fn function(&self, name: &str) -> Result<Function, Error> {
        let (component, export) = name.split_once('.').unwrap_or((name, ""));
        let in_component = |f: &&Function| f.name.split_once('.').is_some_and(|(c, _)| c == component);
        let found = if export.is_empty() {
            let mut all = self.functions.iter().filter(in_component);
            match (all.next(), all.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        } else {
            self.functions.iter().filter(in_component).find(|f| f.export.name == export || f.export.full_name == export)
        };
        found.cloned().ok_or_else(|| Error::UnknownFunction {
            app: self.manifest.app.clone(),
            name: name.to_string(),
            available: self.functions.iter().map(|f| f.name.clone()).collect(),
        })
    }
}

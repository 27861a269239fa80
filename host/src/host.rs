//! The embedding API: [`Host`] owns the engine and the data dir, [`App`] is one loaded manifest,
//! [`Function`] is one callable export.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::component::{Type, Val};

use crate::Error;
use crate::call::{self, CallError, CallTarget, Guest, Logs};
use crate::capabilities::{Contexts, Services, Setup};
use crate::engine::{self, Runtime};
use crate::executions::{Execution, Executions};
use crate::exports::{self, Export};
use crate::manifest::{Manifest, ModelSource};
use crate::metrics::Metrics;
use crate::models::Models;
use crate::runner;
use crate::storage::blobs::BlobBackend;
use crate::storage::datasets::{Cause, DatasetBackend};
use crate::storage::kv::KvBackend;
use crate::storage::queues::{Queue, QueueError, Queues};
use crate::storage::topics::Topics;
use crate::store::{CommitStats, Store};
use crate::triggers::http::HttpHandler;
use crate::values::{self, ArgumentError};

mod builder;

pub use builder::HostBuilder;

/// Default data dir, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = ".host";

/// A function host: one engine, one embedded store, any number of loaded apps. Cheap to clone.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Runtime,
    store: Arc<Store>,
    data_dir: PathBuf,
    metrics: Arc<Metrics>,
    executions: Arc<Executions>,
    models: Arc<Models>,
    queues: Arc<Queues>,
    kv: Arc<dyn KvBackend>,
    blobs: Arc<dyn BlobBackend>,
    topics: Topics,
    datasets: Arc<dyn DatasetBackend>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Records of direct calls still in memory go to the store, which flushes as it closes.
        self.executions.stop_writer();
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

    /// Group-commit counters of the embedded store.
    pub fn commit_stats(&self) -> CommitStats {
        self.inner.store.commit_stats()
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
        self.inner
            .store
            .flush()
            .map_err(|e| Error::DataDir { path: self.inner.data_dir.clone(), message: e.to_string() })
    }

    /// The embedded store (KV trees of every app).
    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    /// Load an app from its manifest: compile (or fetch from cache) every component and prepare it
    /// for fast instantiation.
    pub fn load(&self, manifest: impl AsRef<Path>) -> Result<App, Error> {
        let manifest = Manifest::load(manifest)?;
        let runtime = &self.inner.runtime;
        let model_specs = Arc::new(manifest.models.clone());
        let queue_specs = Arc::new(manifest.queues.clone());
        let model_error = |message: String| Error::Model { path: manifest.path.clone(), message };
        for (name, spec) in model_specs.iter() {
            if spec.warm {
                let buckets_dir = self.buckets_dir(&manifest.app);
                let loaded = self.inner.models.named(&manifest.app, name, spec, &buckets_dir);
                loaded.map_err(|e| model_error(e.to_string()))?;
            } else if let ModelSource::Path(path) = &spec.source
                && !path.is_file()
            {
                return Err(model_error(format!("model `{name}`: no file {}", path.display())));
            }
        }
        let services = Services {
            kv: self.inner.kv.clone(),
            blobs: self.inner.blobs.clone(),
            datasets: self.inner.datasets.clone(),
            topics: self.inner.topics.clone(),
            buckets_root: self.inner.data_dir.join("buckets"),
            models: self.inner.models.clone(),
            queues: self.inner.queues.clone(),
        };
        let mut guests = Vec::new();
        let mut functions = Vec::new();
        for (name, spec) in &manifest.functions {
            let caps = Arc::new(Contexts::build(&Setup {
                app: &manifest.app,
                grants: &Arc::new(spec.grants.clone()),
                config: &spec.config,
                model_specs: &model_specs,
                queue_specs: &queue_specs,
                services: &services,
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
            for export in exports::exports(guest.pre.component()) {
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

    /// Open dataset `name` of `app` (created on first use).
    pub fn dataset(
        &self,
        app: &str,
        name: &str,
    ) -> Result<crate::storage::datasets::Dataset, crate::storage::datasets::ItemsError> {
        crate::storage::datasets::Dataset::new(&*self.inner.datasets, app, name)
    }

    /// The models loaded by this host's apps (shared by all their calls).
    pub fn models(&self) -> &Arc<Models> {
        &self.inner.models
    }

    /// Queue `name` of `app` with the settings of `spec` (see [`crate::manifest::QueueSpec::of`]).
    pub fn queue(&self, app: &str, name: &str, spec: &crate::manifest::QueueSpec) -> Result<Arc<Queue>, QueueError> {
        self.inner.queues.open(app, name, spec)
    }

    /// The topics of every app.
    pub fn topics(&self) -> &Topics {
        &self.inner.topics
    }

    /// Every queue opened so far (dead-lettering needs them all).
    pub fn queues(&self) -> &Arc<Queues> {
        &self.inner.queues
    }

    /// The folder holding `app`'s buckets.
    pub fn buckets_dir(&self, app: &str) -> PathBuf {
        self.inner.data_dir.join("buckets").join(app)
    }

    /// Every app's key-value stores.
    pub fn kv(&self) -> &Arc<dyn KvBackend> {
        &self.inner.kv
    }

    /// Every app's buckets.
    pub fn blobs(&self) -> &Arc<dyn BlobBackend> {
        &self.inner.blobs
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

/// One callable export of a component, with the limits and grants of its manifest entry.
#[derive(Clone)]
pub struct Function {
    name: String,
    export: Arc<Export>,
    target: Arc<CallTarget>,
}

/// The first characters of a JSON value, for error messages.
pub(crate) fn short(value: &Value) -> String {
    value.to_string().chars().take(40).collect()
}

/// The full story of one call: its outcome, what the guest printed and how long it took.
#[derive(Debug, Clone)]
pub struct CallReport {
    /// The returned JSON value, or why the call failed.
    pub result: Result<Value, CallError>,
    /// Captured stdout and stderr.
    pub logs: Logs,
    /// Wall time from the start of instantiation to the end of the call.
    pub elapsed: Duration,
}

impl CallReport {
    /// `ok` or the failure's [`CallError::code`].
    pub fn outcome(&self) -> &'static str {
        self.result.as_ref().map_or_else(CallError::code, |_| "ok")
    }
}

impl Function {
    /// `function.export`, e.g. `counter.increment`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The export's WIT types, signature and JSON Schemas.
    pub fn export(&self) -> &Export {
        &self.export
    }

    /// Call with JSON arguments (an object by parameter name, or an array in order) and return the
    /// JSON result. A returned `result::err` is an [`Error::Call`] with [`CallError::Guest`].
    pub async fn call(&self, args: Value) -> Result<Value, Error> {
        self.invoke(&args).await?.result.map_err(Error::Call)
    }

    /// Like [`Function::call`] but also returns the guest's output and the timing. Only bad
    /// arguments are an `Err`: they are rejected before any instance is made. Arguments may hold
    /// `{"$execution": ID}` references, replaced by those executions' results (waiting for them).
    /// The call is recorded as an execution (trigger `call`), as the function's `record` says.
    pub async fn invoke(&self, args: &Value) -> Result<CallReport, ArgumentError> {
        self.invoke_as(args, ("call", "call", 1), None).await
    }

    /// [`Function::invoke`], counted in metrics as `kind` and recorded as attempt `attempt` of a
    /// call started by `trigger`; in `slot` when the caller already holds a `concurrency` slot.
    pub(crate) async fn invoke_as(
        &self,
        args: &Value,
        (kind, trigger, attempt): (&'static str, &str, u32),
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<CallReport, ArgumentError> {
        let guest = &self.target.guest;
        let started_ms = crate::executions::now_ms();
        let refused = |error| CallReport { result: Err(error), logs: Logs::default(), elapsed: Duration::ZERO };
        let resolved = match runner::references(args).is_empty() {
            true => Ok(None),
            false => runner::resolve_references(&guest.executions, args).await.map(Some),
        };
        let report = match resolved {
            Ok(resolved) => {
                let params = self.params(resolved.as_ref().unwrap_or(args))?;
                let admitted = match slot {
                    Some(slot) => Ok(slot),
                    None => guest.admit().await,
                };
                match admitted {
                    Ok(_permit) => self.run_admitted(&params, None, None).await,
                    Err(paused) => refused(paused),
                }
            }
            Err(bad_reference) => refused(bad_reference),
        };
        guest.metrics.record(&guest.app, &self.name, kind, report.outcome(), report.elapsed);
        let result = report.result.as_ref();
        let direct = matches!(kind, "call" | "map");
        if !direct || guest.record.records(result.is_err()) {
            let (logs, executions) = (&report.logs, &guest.executions);
            executions.record_call((&guest.app, &self.name, trigger, attempt), args.clone(), result, logs, started_ms);
        }
        Ok(report)
    }

    /// Start a call without waiting for it (a job): the execution id comes back once the queued
    /// record (trigger `async`) is on disk, and the record follows the call from `queued` to
    /// `running` to its result; its output is readable while it runs. Wait for it with
    /// [`Executions::wait`]. Bad arguments, and references to executions that do not exist, are
    /// refused before anything is recorded. The call runs on the current tokio runtime; if the
    /// host stops first, it runs again when [`crate::triggers::Triggers`] next start for its app.
    pub async fn spawn(&self, args: &Value) -> Result<String, Error> {
        self.start_queued(args, runner::ASYNC).await
    }

    /// Like [`Function::spawn`] (trigger `enqueue`), but calls of this function started this way
    /// run one at a time, in the order they were enqueued.
    pub async fn enqueue(&self, args: &Value) -> Result<String, Error> {
        self.start_queued(args, runner::ENQUEUE).await
    }

    async fn start_queued(&self, args: &Value, trigger: &str) -> Result<String, Error> {
        let executions = &self.target.guest.executions;
        let references = runner::references(args);
        if references.is_empty() {
            self.params(args)?;
        }
        if let Some(missing) = references.into_iter().find(|id| executions.get(id).is_none()) {
            let expected = "the id of an existing execution".into();
            return Err(ArgumentError { path: "$execution".into(), expected, got: missing }.into());
        }
        let id = executions.new_id().map_err(Error::Record)?;
        let record = Execution::queued(id.clone(), &self.target.guest.app, &self.name, trigger, args.clone());
        executions.enqueue(&record).await.map_err(Error::Record)?;
        runner::start(executions, self.clone(), record);
        Ok(id)
    }

    /// Run one call once a `concurrency` slot is held; changes it makes carry `cause`; with
    /// `execution` (id, attempt) its output is readable live.
    pub(crate) async fn run_admitted(
        &self,
        params: &[Val],
        cause: Option<Cause>,
        execution: Option<(&str, u32)>,
    ) -> CallReport {
        let started = Instant::now();
        let _in_flight = self.target.guest.metrics.start();
        let (outcome, logs) = call::run(&self.target, params, cause, execution).await;
        let result = outcome.and_then(|results| self.result_json(results.first()));
        CallReport { result, logs, elapsed: started.elapsed() }
    }

    /// The component behind this export.
    pub fn guest(&self) -> &Arc<Guest> {
        &self.target.guest
    }

    pub(crate) fn params(&self, args: &Value) -> Result<Vec<Val>, ArgumentError> {
        let params = &self.export.params;
        let names = || params.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
        let budget = &mut values::Budget::new(self.target.guest.limits.memory);
        match args {
            Value::Object(obj) => {
                let fields = params.iter().map(|(n, t)| (n.as_str(), t.clone()));
                let named = values::named_from_json(fields, obj, "", "parameter", budget)?;
                Ok(named.into_iter().map(|(_, v)| v).collect())
            }
            Value::Array(items) if items.len() == params.len() => {
                params.iter().zip(items).map(|((name, ty), v)| values::from_json(ty, v, name, budget)).collect()
            }
            Value::Null if params.is_empty() => Ok(Vec::new()),
            _ => Err(ArgumentError {
                path: "(arguments)".into(),
                expected: format!("an object with parameters {{{}}} or an array of {} values", names(), params.len()),
                got: short(args),
            }),
        }
    }

    /// JSON of the returned value; a top-level `result` is unwrapped into success or failure.
    fn result_json(&self, value: Option<&Val>) -> Result<Value, CallError> {
        match (&self.export.result, value) {
            (Some(ty @ Type::Result(_)), Some(v @ Val::Result(outcome))) => {
                // `{"ok": x}` or `{"err": x}`: the case decides success, `x` is the value.
                let case = if outcome.is_ok() { "ok" } else { "err" };
                let payload = values::to_json(ty, v)[case].take();
                if outcome.is_ok() { Ok(payload) } else { Err(CallError::Guest { value: payload }) }
            }
            (Some(ty), Some(v)) => Ok(values::to_json(ty, v)),
            _ => Ok(Value::Null),
        }
    }
}

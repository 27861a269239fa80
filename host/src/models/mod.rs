//! ONNX models run natively for `wasi:nn`, by tract (the default) or ONNX Runtime (chosen per model
//! in the manifest): each model is prepared once per host and shared by every call (an `Arc`);
//! computations run on blocking threads, at most `concurrency` at a time per model, so the async
//! executor keeps serving other calls. Both engines take and give tract tensors, checked here
//! against the same input specs, so `wasi:nn` behaves the same on either.

mod onnxruntime;
mod tract;

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tract_onnx::prelude::{DatumType, Tensor};

pub use self::onnxruntime::LIBRARY_VAR;
pub use self::tract::fix_known_quirks;
use crate::manifest::{ModelEngine, ModelSource, ModelSpec};

/// Why a model could not be loaded or run; each case is one `wasi:nn` error code and the message
/// names the model, the tensor and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// No such model, or its file or bucket object is missing (`not-found`).
    #[error("{0}")]
    NotFound(String),
    /// The function is not granted the model (`security`).
    #[error("{0}")]
    Denied(String),
    /// The bytes are not an ONNX model (`invalid-encoding`).
    #[error("{0}")]
    Encoding(String),
    /// The engine cannot build or run this model (or is missing), or the tensor type is not
    /// supported (`unsupported-operation`).
    #[error("{0}")]
    Unsupported(String),
    /// An input tensor has the wrong name, type, shape or size (`invalid-argument`).
    #[error("{0}")]
    InvalidInput(String),
    /// The computation failed (`runtime-error`).
    #[error("{0}")]
    Runtime(String),
}

/// Bytes-loaded models kept in the cache (by content hash); older ones are dropped.
const MAX_BYTES_MODELS: usize = 8;

/// One input of a prepared model: its name and the exact type and shape it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// The graph input's name.
    pub name: String,
    /// Its element type.
    pub datum_type: DatumType,
    /// Its shape.
    pub shape: Vec<usize>,
}

impl std::fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` ({} {:?})", self.name, wasi_type_name(self.datum_type), self.shape)
    }
}

/// The `wasi:nn` name of an element type (`FP32`, `U8`, ...).
pub fn wasi_type_name(dt: DatumType) -> String {
    match dt {
        DatumType::F16 => "FP16".into(),
        DatumType::F32 => "FP32".into(),
        DatumType::F64 => "FP64".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

/// What an engine made of a model: its runnable form, its inputs and its output names.
struct Prepared<E> {
    engine: E,
    inputs: Vec<TensorSpec>,
    outputs: Vec<String>,
}

/// The engine a model runs on, prepared.
enum Engine {
    Tract(tract::Plan),
    OnnxRuntime(onnxruntime::Sessions),
}

/// A model ready to run: its engine, inputs and outputs.
pub struct Model {
    name: String,
    engine: Engine,
    inputs: Vec<TensorSpec>,
    outputs: Vec<String>,
    permits: Arc<Semaphore>,
}

impl Model {
    /// Prepare an ONNX model for `engine`. `shapes` fixes input shapes by input name;
    /// `concurrency` limits computations at once. `name` is used in error messages.
    pub fn from_onnx(
        name: &str,
        engine: ModelEngine,
        bytes: &[u8],
        shapes: &BTreeMap<String, Vec<usize>>,
        concurrency: u32,
    ) -> Result<Model, ModelError> {
        let prepare = || match engine {
            ModelEngine::Tract => {
                let p = tract::Plan::prepare(name, bytes, shapes)?;
                Ok((Engine::Tract(p.engine), p.inputs, p.outputs))
            }
            ModelEngine::OnnxRuntime => {
                let p = onnxruntime::Sessions::prepare(name, bytes, shapes)?;
                Ok((Engine::OnnxRuntime(p.engine), p.inputs, p.outputs))
            }
        };
        let (engine, inputs, outputs) = catch_unwind(AssertUnwindSafe(prepare)).unwrap_or_else(|_| {
            Err(ModelError::Unsupported(format!("model `{name}`: {} panicked while loading it", engine.name())))
        })?;
        let permits = Arc::new(Semaphore::new(concurrency.max(1) as usize));
        Ok(Model { name: name.to_string(), engine, inputs, outputs, permits })
    }

    /// The model's name (from the manifest, or `sha256:…` for one loaded from bytes).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The inputs a computation must give, in the graph's order.
    pub fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    /// The output names, in the graph's order.
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    /// Run the model on named inputs on a blocking thread once one of its `concurrency` slots is
    /// free; returns every output, named. Inputs are checked first, so bad ones never wait.
    pub async fn compute(self: &Arc<Self>, inputs: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>, ModelError> {
        let ordered = self.arrange(inputs)?;
        let permit = self.permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        let model = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            model.run(ordered)
        })
        .await
        .map_err(|e| ModelError::Runtime(format!("model `{}`: the computation failed: {e}", self.name)))?
    }

    /// Run on the calling thread (blocking), without the concurrency limit.
    pub fn compute_blocking(&self, inputs: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>, ModelError> {
        self.run(self.arrange(inputs)?)
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<(String, Tensor)>, ModelError> {
        let (engine, run) = match &self.engine {
            Engine::Tract(plan) => ("tract", catch_unwind(AssertUnwindSafe(|| plan.run(&self.name, inputs)))),
            Engine::OnnxRuntime(sessions) => {
                ("ONNX Runtime", catch_unwind(AssertUnwindSafe(|| sessions.run(&self.name, inputs))))
            }
        };
        let outputs =
            run.map_err(|_| ModelError::Runtime(format!("model `{}`: {engine} panicked while computing", self.name)))??;
        Ok(self.outputs.iter().cloned().zip(outputs).collect())
    }

    /// Put named inputs in the graph's order, checking each one's name, type and shape.
    fn arrange(&self, inputs: Vec<(String, Tensor)>) -> Result<Vec<Tensor>, ModelError> {
        let list = || self.inputs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let mut ordered: Vec<Option<Tensor>> = vec![None; self.inputs.len()];
        for (name, tensor) in inputs {
            let Some(i) = self.inputs.iter().position(|spec| spec.name == name) else {
                return Err(ModelError::InvalidInput(format!(
                    "model `{}` has no input `{name}`; its inputs are: {}",
                    self.name,
                    list()
                )));
            };
            let spec = &self.inputs[i];
            if tensor.datum_type() != spec.datum_type || tensor.shape() != spec.shape.as_slice() {
                return Err(ModelError::InvalidInput(format!(
                    "model `{}`: input {spec} was given {} {:?}",
                    self.name,
                    wasi_type_name(tensor.datum_type()),
                    tensor.shape()
                )));
            }
            if ordered[i].replace(tensor).is_some() {
                return Err(ModelError::InvalidInput(format!("model `{}`: input `{name}` is given twice", self.name)));
            }
        }
        ordered
            .into_iter()
            .zip(&self.inputs)
            .map(|(tensor, spec)| {
                tensor
                    .ok_or_else(|| ModelError::InvalidInput(format!("model `{}`: input {spec} is missing", self.name)))
            })
            .collect()
    }
}

/// Refuse manifest `shapes` for inputs the model does not have (`inputs` are its input names).
fn check_shape_names(model: &str, shapes: &BTreeMap<String, Vec<usize>>, inputs: &[String]) -> Result<(), ModelError> {
    match shapes.keys().find(|given| !inputs.contains(given)) {
        Some(unknown) => Err(ModelError::InvalidInput(format!(
            "model `{model}` has no input `{unknown}` to give a shape to; its inputs are: {}",
            inputs.join(", ")
        ))),
        None => Ok(()),
    }
}

/// The error for an input whose shape is still not fixed (`shape`, as the engine shows it).
fn unfixed_shape(model: &str, input: &str, shape: &str) -> ModelError {
    ModelError::Unsupported(format!(
        "model `{model}`: input `{input}` has no fixed shape ({shape}); give one in the manifest, e.g. `[model.{model}] inputs = {{ {input} = [1, 3, 224, 224] }}`"
    ))
}

/// Check, when an app loads, that model `name`'s engine can run here: ONNX Runtime's library
/// loads (see [`LIBRARY_VAR`]); tract is built in.
pub fn check_engine(name: &str, engine: ModelEngine) -> Result<(), ModelError> {
    match engine {
        ModelEngine::Tract => Ok(()),
        ModelEngine::OnnxRuntime => onnxruntime::environment(name).map(drop),
    }
}

/// Identifies a file's version: its length and modification time.
type Stamp = (u64, Option<SystemTime>);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Named { app: String, name: String },
    Bytes([u8; 32]),
}

struct Loaded {
    stamp: Stamp,
    /// The manifest entry it was built from (none for bytes); an app reloaded with other
    /// `inputs` or `concurrency` gets a new build.
    spec: Option<ModelSpec>,
    model: Arc<Model>,
}

type Slot = Arc<Mutex<Option<Loaded>>>;

/// Every model a host has loaded, shared by all calls. Loading methods block (parsing and
/// optimizing take from milliseconds to seconds): call them from a blocking thread.
#[derive(Default)]
pub struct Models {
    slots: Mutex<HashMap<Key, Slot>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Models {
    /// Model `name` of `app`, loaded on first use and again whenever its file or bucket object
    /// (or its manifest entry) changes. Concurrent first uses load it once.
    pub fn named(&self, app: &str, name: &str, spec: &ModelSpec, buckets_dir: &Path) -> Result<Arc<Model>, ModelError> {
        let slot = self.slot(Key::Named { app: app.into(), name: name.into() });
        let mut slot = lock(&slot);
        let source = ModelFile::open(name, &spec.source, buckets_dir)?;
        if let Some(loaded) = slot.as_ref().filter(|l| l.stamp == source.stamp && l.spec.as_ref() == Some(spec)) {
            return Ok(loaded.model.clone());
        }
        let bytes = source.read()?;
        let model = Arc::new(Model::from_onnx(name, spec.engine, &bytes, &spec.inputs, spec.concurrency)?);
        tracing::info!(app, model = name, inputs = ?model.inputs, "model loaded");
        *slot = Some(Loaded { stamp: source.stamp, spec: Some(spec.clone()), model: model.clone() });
        Ok(model)
    }

    /// A model from its ONNX bytes, cached by content hash (the last few are kept).
    pub fn from_bytes(&self, bytes: &[u8]) -> Result<Arc<Model>, ModelError> {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        let slot = self.slot(Key::Bytes(hash));
        let mut slot = lock(&slot);
        if let Some(loaded) = slot.as_ref() {
            return Ok(loaded.model.clone());
        }
        let name: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
        let concurrency = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let model = Arc::new(Model::from_onnx(
            &format!("sha256:{name}"),
            ModelEngine::Tract,
            bytes,
            &BTreeMap::new(),
            concurrency,
        )?);
        *slot = Some(Loaded { stamp: (bytes.len() as u64, None), spec: None, model: model.clone() });
        Ok(model)
    }

    /// The slot of `key`, made if new; when a new bytes slot would pass [`MAX_BYTES_MODELS`],
    /// another bytes slot is dropped (calls holding its model keep it).
    fn slot(&self, key: Key) -> Slot {
        let mut slots = lock(&self.slots);
        if !slots.contains_key(&key) && matches!(key, Key::Bytes(_)) {
            let bytes_keys: Vec<Key> = slots.keys().filter(|k| matches!(k, Key::Bytes(_))).cloned().collect();
            if let Some(old) = bytes_keys.into_iter().nth(MAX_BYTES_MODELS - 1) {
                slots.remove(&old);
            }
        }
        slots.entry(key).or_default().clone()
    }
}

/// A model's source, stat-ed: where to read it and its current version.
struct ModelFile<'a> {
    name: &'a str,
    reader: Box<dyn Fn() -> std::io::Result<Vec<u8>> + 'a>,
    stamp: Stamp,
}

impl<'a> ModelFile<'a> {
    fn open(name: &'a str, source: &'a ModelSource, buckets_dir: &Path) -> Result<ModelFile<'a>, ModelError> {
        let missing = |what: String, e: std::io::Error| ModelError::NotFound(format!("model `{name}`: {what}: {e}"));
        match source {
            ModelSource::Path(path) => {
                let meta =
                    std::fs::metadata(path).map_err(|e| missing(format!("cannot read {}", path.display()), e))?;
                Ok(ModelFile {
                    name,
                    reader: Box::new(move || std::fs::read(path)),
                    stamp: (meta.len(), meta.modified().ok()),
                })
            }
            ModelSource::Bucket { bucket, key } => {
                let dir = crate::storage::blobs::local::open_bucket_dir(buckets_dir, bucket)
                    .map_err(|e| missing(format!("cannot open bucket `{bucket}`"), e))?;
                let meta =
                    dir.metadata(key).map_err(|e| missing(format!("no object `{key}` in bucket `{bucket}`"), e))?;
                let stamp = (meta.len(), meta.modified().ok().map(|t| t.into_std()));
                Ok(ModelFile { name, reader: Box::new(move || dir.read(key)), stamp })
            }
        }
    }

    fn read(&self) -> Result<Vec<u8>, ModelError> {
        (self.reader)().map_err(|e| ModelError::NotFound(format!("model `{}`: cannot read it: {e}", self.name)))
    }
}

//! ONNX models run natively with tract for `wasi:nn`: each model is parsed, typed and optimized once
//! per host and shared by every call (an `Arc`); computations run on blocking threads, at most
//! `concurrency` at a time per model, so the async executor keeps serving other calls.

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tract_hir::infer::Factoid;
use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::manifest::{ModelSource, ModelSpec};

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
    /// tract cannot build or run this model, or the tensor type is not supported (`unsupported-operation`).
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

/// A model ready to run: the optimized tract plan, its inputs and outputs.
pub struct Model {
    name: String,
    plan: Arc<TypedSimplePlan>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<String>,
    permits: Arc<Semaphore>,
}

impl Model {
    /// Parse, type and optimize an ONNX model. `shapes` fixes input shapes by input name;
    /// `concurrency` limits computations at once. `name` is used in error messages.
    pub fn from_onnx(
        name: &str,
        bytes: &[u8],
        shapes: &BTreeMap<String, Vec<usize>>,
        concurrency: u32,
    ) -> Result<Model, ModelError> {
        catch_unwind(AssertUnwindSafe(|| Model::build(name, bytes, shapes, concurrency))).unwrap_or_else(|_| {
            Err(ModelError::Unsupported(format!("model `{name}`: tract panicked while loading it")))
        })
    }

    fn build(
        name: &str,
        bytes: &[u8],
        shapes: &BTreeMap<String, Vec<usize>>,
        concurrency: u32,
    ) -> Result<Model, ModelError> {
        let unsupported =
            |e: TractError| ModelError::Unsupported(format!("model `{name}`: tract cannot prepare it: {e:#}"));
        let onnx = tract_onnx::onnx();
        let mut proto = onnx
            .proto_model_for_read(&mut &*bytes)
            .map_err(|e| ModelError::Encoding(format!("model `{name}` is not an ONNX model: {e:#}")))?;
        fix_known_quirks(&mut proto);
        let mut model = onnx.model_for_proto_model(&proto).map_err(unsupported)?;
        let names: Vec<String> =
            model.input_outlets().map_err(unsupported)?.iter().map(|o| model.node(o.node).name.clone()).collect();
        if let Some(unknown) = shapes.keys().find(|given| !names.contains(given)) {
            return Err(ModelError::InvalidInput(format!(
                "model `{name}` has no input `{unknown}` to give a shape to; its inputs are: {}",
                names.join(", ")
            )));
        }
        for (i, input) in names.iter().enumerate() {
            if let Some(shape) = shapes.get(input) {
                let declared = model.input_fact(i).map_err(unsupported)?.datum_type.concretize();
                let fact = InferenceFact::dt_shape(declared.unwrap_or(DatumType::F32), shape.clone());
                model = model.with_input_fact(i, fact).map_err(unsupported)?;
            }
        }
        let typed = model.into_optimized().map_err(unsupported)?;
        let mut inputs = Vec::new();
        for (i, input) in names.into_iter().enumerate() {
            let fact = typed.input_fact(i).map_err(unsupported)?;
            let Some(shape) = fact.shape.as_concrete() else {
                return Err(ModelError::Unsupported(format!(
                    "model `{name}`: input `{input}` has no fixed shape ({:?}); give one in the manifest, e.g. `[model.{name}] inputs = {{ {input} = [1, 3, 224, 224] }}`",
                    fact.shape
                )));
            };
            inputs.push(TensorSpec { name: input, datum_type: fact.datum_type, shape: shape.to_vec() });
        }
        let outputs = typed
            .output_outlets()
            .map_err(unsupported)?
            .iter()
            .map(|o| typed.outlet_label(*o).unwrap_or(&typed.node(o.node).name).to_string())
            .collect();
        let plan = typed.into_runnable().map_err(unsupported)?;
        let permits = Arc::new(Semaphore::new(concurrency.max(1) as usize));
        Ok(Model { name: name.to_string(), plan, inputs, outputs, permits })
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

    /// The optimized tract plan (to run the model without `wasi:nn`, e.g. to compare).
    pub fn plan(&self) -> &Arc<TypedSimplePlan> {
        &self.plan
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

    fn run(&self, inputs: TVec<TValue>) -> Result<Vec<(String, Tensor)>, ModelError> {
        let outputs = catch_unwind(AssertUnwindSafe(|| self.plan.run(inputs)))
            .map_err(|_| ModelError::Runtime(format!("model `{}`: tract panicked while computing", self.name)))?
            .map_err(|e| ModelError::Runtime(format!("model `{}`: {e:#}", self.name)))?;
        Ok(self.outputs.iter().cloned().zip(outputs.into_iter().map(TValue::into_tensor)).collect())
    }

    /// Put named inputs in the graph's order, checking each one's name, type and shape.
    fn arrange(&self, inputs: Vec<(String, Tensor)>) -> Result<TVec<TValue>, ModelError> {
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
                    .map(Tensor::into_tvalue)
                    .ok_or_else(|| ModelError::InvalidInput(format!("model `{}`: input {spec} is missing", self.name)))
            })
            .collect()
    }
}

/// Fix, in the protobuf, what tract 0.23 gets wrong about some real models, before building them:
/// see `default_constant_of_shape_to_f32`.
pub fn fix_known_quirks(proto: &mut pb::ModelProto) {
    if let Some(graph) = proto.graph.as_mut() {
        default_constant_of_shape_to_f32(graph);
    }
}

/// ONNX says `ConstantOfShape` without a `value` attribute makes float32 zeros; tract 0.23 makes
/// float64 ones, which breaks models that rely on the default (e.g. MediaPipe BlazeFace exports).
/// Give every such node (in subgraphs too) an explicit float32 zero.
fn default_constant_of_shape_to_f32(graph: &mut pb::GraphProto) {
    for node in &mut graph.node {
        if node.op_type == "ConstantOfShape" && !node.attribute.iter().any(|a| a.name == "value") {
            node.attribute.push(pb::AttributeProto {
                name: "value".into(),
                r#type: pb::attribute_proto::AttributeType::Tensor as i32,
                t: Some(pb::TensorProto {
                    dims: vec![1],
                    data_type: pb::tensor_proto::DataType::Float as i32,
                    float_data: vec![0.0],
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        for attribute in &mut node.attribute {
            attribute.g.iter_mut().chain(attribute.graphs.iter_mut()).for_each(default_constant_of_shape_to_f32);
        }
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
        let model = Arc::new(Model::from_onnx(name, &bytes, &spec.inputs, spec.concurrency)?);
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
        let model = Arc::new(Model::from_onnx(&format!("sha256:{name}"), bytes, &BTreeMap::new(), concurrency)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_of_shape_without_value_gets_a_float32_zero() {
        let node = |value: bool| pb::NodeProto {
            op_type: "ConstantOfShape".into(),
            attribute: if value {
                vec![pb::AttributeProto { name: "value".into(), ..Default::default() }]
            } else {
                Vec::new()
            },
            ..Default::default()
        };
        let inner = pb::GraphProto { node: vec![node(false)], ..Default::default() };
        let mut graph = pb::GraphProto {
            node: vec![
                node(false),
                node(true),
                pb::NodeProto {
                    op_type: "If".into(),
                    attribute: vec![pb::AttributeProto { g: Some(inner), ..Default::default() }],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        default_constant_of_shape_to_f32(&mut graph);
        let value = |n: &pb::NodeProto| n.attribute.iter().find(|a| a.name == "value").cloned().unwrap();
        let added = value(&graph.node[0]).t.unwrap();
        assert_eq!((added.data_type, added.dims, added.float_data), (1, vec![1], vec![0.0]));
        assert!(value(&graph.node[1]).t.is_none(), "an existing value is left alone");
        let nested = graph.node[2].attribute[0].g.as_ref().unwrap();
        assert_eq!(value(&nested.node[0]).t.unwrap().data_type, 1);
    }
}

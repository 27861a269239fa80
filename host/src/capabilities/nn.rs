//! `wasi:nn`: the guest's view of [`crate::models`]. Models declared in the manifest load by name
//! when granted; models from bytes need `models-from-bytes`. Tensors live in host memory and count
//! against the call's `memory` limit together with the guest's linear memory: a call whose
//! tensors and memory would pass it ends with `CallError::MemoryLimit`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tract_onnx::prelude::{DatumType, Tensor as TractTensor};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::wasi::nn::errors::{self, ErrorCode};
use super::wasi::nn::graph::{self, ExecutionTarget, GraphEncoding};
use super::wasi::nn::inference::{self, NamedTensor};
use super::wasi::nn::tensor::{self, TensorType};
use super::{CallParts, Capability, Limiter, Parts, Setup};
use crate::manifest::{Grants, ModelSpec};
use crate::models::{Model, ModelError, Models, wasi_type_name};

/// The models a function may load: the app's `[model.NAME]` entries it is granted, and models
/// from bytes when it may. Built when the app declares a model or the function may load bytes.
pub struct Nn {
    grants: Arc<Grants>,
    specs: Arc<BTreeMap<String, ModelSpec>>,
    models: Arc<Models>,
    /// The folder of the app's buckets, where `[model.NAME]` sources in buckets are.
    buckets_dir: PathBuf,
}

impl Capability for Nn {
    fn build(setup: &Setup<'_>) -> Option<Nn> {
        (!setup.model_specs.is_empty() || setup.grants.models.from_bytes).then(|| Nn {
            grants: setup.grants.clone(),
            specs: setup.model_specs.clone(),
            models: setup.services.models.clone(),
            buckets_dir: setup.services.buckets_root.join(setup.app),
        })
    }

    fn add_to_linker<T: CallParts>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        tensor::add_to_linker::<T, Nn>(linker, |state| state.parts().into())?;
        graph::add_to_linker::<T, Nn>(linker, |state| state.parts().into())?;
        inference::add_to_linker::<T, Nn>(linker, |state| state.parts().into())?;
        errors::add_to_linker::<T, Nn>(linker, |state| state.parts().into())
    }
}

impl HasData for Nn {
    type Data<'a> = View<'a>;
}

/// What the `wasi:nn` host calls of one call work on.
pub struct View<'a> {
    nn: Option<&'a Nn>,
    app: &'a str,
    table: &'a mut ResourceTable,
    memory: &'a mut Limiter,
}

impl<'a> From<Parts<'a>> for View<'a> {
    fn from(Parts { contexts, table, memory, .. }: Parts<'a>) -> View<'a> {
        View { nn: contexts.get(), app: contexts.app(), table, memory }
    }
}

/// A `wasi:nn` tensor: dimensions, element type and little-endian row-major bytes.
pub struct Tensor {
    dimensions: Vec<u32>,
    ty: TensorType,
    data: Vec<u8>,
}

/// A loaded model (`wasi:nn` `graph`).
pub struct Graph(Arc<Model>);

/// A model ready to compute (`wasi:nn` `graph-execution-context`).
pub struct ExecutionContext(Arc<Model>);

/// A `wasi:nn` error: its code and the message saying what went wrong.
pub struct NnError {
    code: ErrorCode,
    message: String,
}

type NnResult<T> = wasmtime::Result<Result<T, Resource<NnError>>>;

impl From<ModelError> for NnError {
    fn from(e: ModelError) -> NnError {
        let code = match e {
            ModelError::NotFound(_) => ErrorCode::NotFound,
            ModelError::Denied(_) => ErrorCode::Security,
            ModelError::Encoding(_) => ErrorCode::InvalidEncoding,
            ModelError::Unsupported(_) => ErrorCode::UnsupportedOperation,
            ModelError::InvalidInput(_) => ErrorCode::InvalidArgument,
            ModelError::Runtime(_) => ErrorCode::RuntimeError,
        };
        NnError { code, message: e.to_string() }
    }
}

/// The tract element type of a `wasi:nn` tensor type (tract has no BF16).
fn datum_type(ty: TensorType) -> Option<DatumType> {
    Some(match ty {
        TensorType::Fp16 => DatumType::F16,
        TensorType::Fp32 => DatumType::F32,
        TensorType::Fp64 => DatumType::F64,
        TensorType::U8 => DatumType::U8,
        TensorType::I32 => DatumType::I32,
        TensorType::I64 => DatumType::I64,
        TensorType::Bf16 => return None,
    })
}

/// The `wasi:nn` tensor type of a tract element type, if it has one.
fn tensor_type(dt: DatumType) -> Option<TensorType> {
    Some(match dt {
        DatumType::F16 => TensorType::Fp16,
        DatumType::F32 => TensorType::Fp32,
        DatumType::F64 => TensorType::Fp64,
        DatumType::U8 => TensorType::U8,
        DatumType::I32 => TensorType::I32,
        DatumType::I64 => TensorType::I64,
        _ => return None,
    })
}

impl Tensor {
    /// The tract tensor for input `name` of `model`, checking that the bytes fill the dimensions.
    fn to_tract(&self, model: &str, name: &str) -> Result<TractTensor, ModelError> {
        let Some(dt) = datum_type(self.ty) else {
            return Err(ModelError::Unsupported(format!(
                "model `{model}`: input `{name}` is BF16, which this host (tract) cannot compute with"
            )));
        };
        let shape: Vec<usize> = self.dimensions.iter().map(|&d| d as usize).collect();
        let expected = shape.iter().try_fold(dt.size_of(), |n, &d| n.checked_mul(d));
        if expected != Some(self.data.len()) {
            return Err(ModelError::InvalidInput(format!(
                "model `{model}`: input `{name}` has {} bytes, but {} {shape:?} needs {}",
                self.data.len(),
                wasi_type_name(dt),
                expected.map_or("more than fits in memory".into(), |n| n.to_string()),
            )));
        }
        // SAFETY: `dt` is a plain numeric type and `data` holds exactly `shape`'s elements of it.
        unsafe { TractTensor::from_raw_dt(dt, &shape, &self.data) }
            .map_err(|e| ModelError::InvalidInput(format!("model `{model}`: input `{name}`: {e:#}")))
    }

    /// The `wasi:nn` tensor of output `name` of `model` (booleans become U8).
    fn from_tract(model: &str, name: &str, tensor: TractTensor) -> Result<Tensor, ModelError> {
        let tensor = match tensor.datum_type() {
            DatumType::Bool => tensor
                .cast_to_dt(DatumType::U8)
                .map(|t| t.into_owned())
                .map_err(|e| ModelError::Runtime(format!("model `{model}`: output `{name}`: {e:#}")))?,
            _ => tensor,
        };
        let Some(ty) = tensor_type(tensor.datum_type()) else {
            return Err(ModelError::Unsupported(format!(
                "model `{model}`: output `{name}` is {:?}, which has no wasi:nn tensor type",
                tensor.datum_type()
            )));
        };
        let dimensions = tensor.shape().iter().map(|&d| d as u32).collect();
        Ok(Tensor { dimensions, ty, data: tensor.as_bytes().to_vec() })
    }
}

impl View<'_> {
    fn nn_error<T>(&mut self, e: ModelError) -> NnResult<T> {
        Ok(Err(self.table.push(NnError::from(e))?))
    }

    fn push_graph(&mut self, model: Result<Arc<Model>, ModelError>) -> NnResult<Resource<Graph>> {
        match model {
            Ok(model) => Ok(Ok(self.table.push(Graph(model))?)),
            Err(e) => self.nn_error(e),
        }
    }
}

impl graph::Host for View<'_> {
    async fn load(
        &mut self,
        builder: Vec<Vec<u8>>,
        encoding: GraphEncoding,
        target: ExecutionTarget,
    ) -> NnResult<Resource<Graph>> {
        let Some(nn) = self.nn.filter(|nn| nn.grants.models.from_bytes) else {
            return self.push_graph(Err(ModelError::Denied(
                "this function may not load models from bytes: grant it `models-from-bytes = true`, or declare the model as `[model.NAME]` and use load-by-name".into(),
            )));
        };
        let refused = if !matches!(encoding, GraphEncoding::Onnx | GraphEncoding::Autodetect) {
            Some(ModelError::Encoding(format!("this host runs ONNX models only (tract), not {encoding:?}")))
        } else if !matches!(target, ExecutionTarget::Cpu) {
            Some(ModelError::Unsupported(format!(
                "this host runs models on the CPU only (tract); ask for `cpu`, not `{target:?}`"
            )))
        } else if builder.len() != 1 {
            Some(ModelError::InvalidInput(format!(
                "an ONNX model is one buffer; got {} buffers (external weights are not supported)",
                builder.len()
            )))
        } else {
            None
        };
        if let Some(e) = refused {
            return self.push_graph(Err(e));
        }
        let models = nn.models.clone();
        let bytes = builder.into_iter().next().expect("checked: one buffer");
        let loaded = tokio::task::spawn_blocking(move || models.from_bytes(&bytes)).await?;
        self.push_graph(loaded)
    }

    async fn load_by_name(&mut self, name: String) -> NnResult<Resource<Graph>> {
        let Some((nn, spec)) = self.nn.and_then(|nn| Some((nn, nn.specs.get(&name)?.clone()))) else {
            let specs = self.nn.map(|nn| nn.specs.keys().map(String::as_str).collect::<Vec<_>>());
            let declared = specs.unwrap_or_default().join(", ");
            return self.push_graph(Err(ModelError::NotFound(format!(
                "no model `{name}` in app `{}`; its models are: {}",
                self.app,
                if declared.is_empty() { "(none)" } else { &declared }
            ))));
        };
        if !nn.grants.model(&name) {
            return self.push_graph(Err(ModelError::Denied(format!(
                "this function is not granted model `{name}`: add it to `grants.models` in its manifest entry"
            ))));
        }
        let (models, app, buckets_dir) = (nn.models.clone(), self.app.to_string(), nn.buckets_dir.clone());
        let loaded = tokio::task::spawn_blocking(move || models.named(&app, &name, &spec, &buckets_dir)).await?;
        self.push_graph(loaded)
    }
}

impl graph::HostGraph for View<'_> {
    async fn init_execution_context(
        &mut self,
        graph: Resource<Graph>,
    ) -> NnResult<Resource<inference::GraphExecutionContext>> {
        let model = self.table.get(&graph)?.0.clone();
        Ok(Ok(self.table.push(ExecutionContext(model))?))
    }

    async fn drop(&mut self, graph: Resource<Graph>) -> wasmtime::Result<()> {
        self.table.delete(graph)?;
        Ok(())
    }
}

impl inference::Host for View<'_> {}

impl inference::HostGraphExecutionContext for View<'_> {
    async fn compute(
        &mut self,
        context: Resource<ExecutionContext>,
        inputs: Vec<NamedTensor>,
    ) -> NnResult<Vec<NamedTensor>> {
        let model = self.table.get(&context)?.0.clone();
        // The inputs are owned handles: the guest hands them over.
        let mut tract_inputs = Vec::with_capacity(inputs.len());
        for (name, tensor) in inputs {
            let tensor = self.table.delete(tensor)?;
            self.memory.release(tensor.data.len() as u64);
            match tensor.to_tract(model.name(), &name) {
                Ok(t) => tract_inputs.push((name, t)),
                Err(e) => return self.nn_error(e),
            }
        }
        let outputs = match model.compute(tract_inputs).await {
            Ok(outputs) => outputs,
            Err(e) => return self.nn_error(e),
        };
        let mut named = Vec::with_capacity(outputs.len());
        for (name, tensor) in outputs {
            let tensor = match Tensor::from_tract(model.name(), &name, tensor) {
                Ok(t) => t,
                Err(e) => return self.nn_error(e),
            };
            self.memory.hold("wasi:nn tensor", tensor.data.len() as u64)?;
            named.push((name, self.table.push(tensor)?));
        }
        Ok(Ok(named))
    }

    async fn drop(&mut self, context: Resource<ExecutionContext>) -> wasmtime::Result<()> {
        self.table.delete(context)?;
        Ok(())
    }
}

impl tensor::Host for View<'_> {}

impl tensor::HostTensor for View<'_> {
    async fn new(&mut self, dimensions: Vec<u32>, ty: TensorType, data: Vec<u8>) -> wasmtime::Result<Resource<Tensor>> {
        self.memory.hold("wasi:nn tensor", data.len() as u64)?;
        Ok(self.table.push(Tensor { dimensions, ty, data })?)
    }

    async fn dimensions(&mut self, tensor: Resource<Tensor>) -> wasmtime::Result<Vec<u32>> {
        Ok(self.table.get(&tensor)?.dimensions.clone())
    }

    async fn ty(&mut self, tensor: Resource<Tensor>) -> wasmtime::Result<TensorType> {
        Ok(self.table.get(&tensor)?.ty)
    }

    async fn data(&mut self, tensor: Resource<Tensor>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&tensor)?.data.clone())
    }

    async fn drop(&mut self, tensor: Resource<Tensor>) -> wasmtime::Result<()> {
        let tensor = self.table.delete(tensor)?;
        self.memory.release(tensor.data.len() as u64);
        Ok(())
    }
}

impl errors::Host for View<'_> {}

impl errors::HostError for View<'_> {
    async fn code(&mut self, error: Resource<NnError>) -> wasmtime::Result<ErrorCode> {
        Ok(self.table.get(&error)?.code)
    }

    async fn data(&mut self, error: Resource<NnError>) -> wasmtime::Result<String> {
        Ok(self.table.get(&error)?.message.clone())
    }

    async fn drop(&mut self, error: Resource<NnError>) -> wasmtime::Result<()> {
        self.table.delete(error)?;
        Ok(())
    }
}

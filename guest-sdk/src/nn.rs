//! Inference on models the host runs natively (`wasi:nn`): no model runtime inside the guest.
//!
//! ```ignore
//! use guest_sdk::nn::{Model, Tensor};
//!
//! let model = Model::by_name("face")?;            // granted in host.toml: models = ["face"]
//! let input = Tensor::f32(&[1, 128, 128, 3], &pixels);
//! let outputs = model.compute(vec![("input".into(), input)])?;
//! let scores = outputs.f32("Identity")?;
//! ```

use std::fmt;

use crate::bindings::wasi::nn::{errors, graph, inference, tensor};

pub use tensor::{Tensor, TensorType};

/// Why a model could not be loaded or run: the `wasi:nn` error code and the host's explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The `wasi:nn` error code (`invalid-argument`, `not-found`, `security`, ...).
    pub code: errors::ErrorCode,
    /// What the host says went wrong, naming the model, the tensor and what was expected.
    pub message: String,
}

impl From<errors::Error> for Error {
    fn from(error: errors::Error) -> Self {
        Error { code: error.code(), message: error.data() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

/// The result of a `wasi:nn` operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A loaded model with its execution context, ready to compute.
pub struct Model {
    context: inference::GraphExecutionContext,
}

impl Model {
    /// A model declared in the manifest (`[model.NAME]`) and granted to this function.
    pub fn by_name(name: &str) -> Result<Model> {
        Model::from_graph(graph::load_by_name(name)?)
    }

    /// An ONNX model from its bytes (needs `models-from-bytes = true` in the function's grants).
    pub fn from_onnx(bytes: &[u8]) -> Result<Model> {
        let builder = vec![bytes.to_vec()];
        Model::from_graph(graph::load(&builder, graph::GraphEncoding::Onnx, graph::ExecutionTarget::Cpu)?)
    }

    fn from_graph(graph: graph::Graph) -> Result<Model> {
        Ok(Model { context: graph.init_execution_context()? })
    }

    /// Run the model on named inputs; returns every output, named.
    pub fn compute(&self, inputs: Vec<(String, Tensor)>) -> Result<Outputs> {
        Ok(Outputs(self.context.compute(inputs)?))
    }
}

impl Tensor {
    /// An FP32 tensor of shape `dimensions` from row-major values.
    pub fn f32(dimensions: &[u32], values: &[f32]) -> Tensor {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        Tensor::new(dimensions, TensorType::Fp32, &data)
    }
}

/// The named output tensors of one computation.
pub struct Outputs(Vec<(String, Tensor)>);

impl Outputs {
    /// The output called `name`.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, t)| t).ok_or_else(|| Error {
            code: errors::ErrorCode::InvalidArgument,
            message: format!(
                "the model has no output `{name}`; its outputs are: {}",
                self.0.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            ),
        })
    }

    /// The values of FP32 output `name`, row-major.
    pub fn f32(&self, name: &str) -> Result<Vec<f32>> {
        let tensor = self.get(name)?;
        if tensor.ty() != TensorType::Fp32 {
            return Err(Error {
                code: errors::ErrorCode::InvalidArgument,
                message: format!("output `{name}` is {:?}, not FP32", tensor.ty()),
            });
        }
        Ok(tensor.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    /// Every output's name, in the model's order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }
}

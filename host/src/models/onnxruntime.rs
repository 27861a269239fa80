//! The ONNX Runtime engine (`engine = "onnxruntime"`): the `ort` crate over the shared library
//! `ORT_DYLIB_PATH` names, opened once per process at run time (nothing is linked at build time).
//! Every computation runs on one thread, like tract's, so `concurrency` means the same for both.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Mutex;

use ort::environment::Environment;
use ort::memory::Allocator;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynTensor, DynTensorValueType, DynValueRef, Outlet, TensorElementType, ValueType};
use tract_onnx::prelude::{DatumType, Tensor};

use super::{ModelError, Prepared, TensorSpec, lock};

/// The environment variable that names the ONNX Runtime shared library (the `ort` crate's own).
pub const LIBRARY_VAR: &str = "ORT_DYLIB_PATH";

/// The library looked up on the system's library path when [`LIBRARY_VAR`] is not set.
const DEFAULT_LIBRARY: &str = "libonnxruntime.so";

/// The process's ONNX Runtime environment once the library loaded. A failed load is not kept, so
/// a later app (after the library is installed) tries again.
static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

/// Where the library is looked for, given [`LIBRARY_VAR`]'s value, and how the path was chosen
/// (for error messages).
fn library(var: Option<OsString>) -> (PathBuf, String) {
    match var.filter(|v| !v.is_empty()) {
        Some(path) => (path.into(), format!("from {LIBRARY_VAR}")),
        None => (DEFAULT_LIBRARY.into(), format!("on the system library path; {LIBRARY_VAR} is not set")),
    }
}

/// The ONNX Runtime environment, loading the library on first use. Fails (never panics) with a
/// message naming `model`, [`LIBRARY_VAR`] and the path tried when the library is missing, is not
/// ONNX Runtime, or is older than 1.17.
pub(super) fn environment(model: &str) -> Result<Environment, ModelError> {
    let mut environment = lock(&ENVIRONMENT);
    if let Some(loaded) = environment.as_ref() {
        return Ok(loaded.clone());
    }
    let (path, chosen) = library(std::env::var_os(LIBRARY_VAR));
    // `ort` panics rather than returns on a few of these failures (e.g. no current executable to
    // resolve a relative path against).
    let loaded = catch_unwind(AssertUnwindSafe(|| {
        let builder = ort::init_from(&path).map_err(|e| e.to_string())?;
        builder.with_name("host").with_telemetry(false).build().map_err(|e| e.to_string())
    }))
    .unwrap_or_else(|_| Err("ort panicked while loading it".into()))
    .map_err(|reason| {
        ModelError::Unsupported(format!(
            "model `{model}` asks for engine `onnxruntime`, but the ONNX Runtime library cannot be loaded from `{}` ({chosen}): {reason}; set {LIBRARY_VAR} to the path of libonnxruntime.so (1.17 or newer, e.g. `onnxruntime/capi/libonnxruntime.so.1.31.1` from PyPI's onnxruntime 1.31.1 wheel)",
            path.display()
        ))
    })?;
    *environment = Some(loaded.clone());
    Ok(loaded)
}

/// One model's ONNX Runtime sessions. A session runs one computation at a time (`ort` takes it
/// mutably), so idle ones wait in a pool that grows, from the kept bytes, up to the model's
/// `concurrency`.
pub(super) struct Sessions {
    environment: Environment,
    bytes: Vec<u8>,
    idle: Mutex<Vec<Session>>,
}

impl Sessions {
    /// Load the model into a first session; `shapes` fixes input shapes by input name (for
    /// inputs the model declares with symbolic dimensions).
    pub(super) fn prepare(
        name: &str,
        bytes: &[u8],
        shapes: &BTreeMap<String, Vec<usize>>,
    ) -> Result<Prepared<Sessions>, ModelError> {
        let environment = environment(name)?;
        let session = new_session(&environment, bytes)
            .map_err(|e| ModelError::Unsupported(format!("model `{name}`: ONNX Runtime cannot prepare it: {e}")))?;
        let names: Vec<String> = session.inputs().iter().map(|input| input.name().to_string()).collect();
        super::check_shape_names(name, shapes, &names)?;
        let mut inputs = Vec::new();
        for input in session.inputs() {
            let (datum_type, declared) = outlet_type(name, input)?;
            let shape = match shapes.get(input.name()) {
                Some(given) if fits(&declared, given) => given.clone(),
                Some(given) => {
                    return Err(ModelError::InvalidInput(format!(
                        "model `{name}`: input `{}` is declared {declared:?}, which shape {given:?} does not fit",
                        input.name()
                    )));
                }
                None => match declared.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<Vec<_>>>() {
                    Some(shape) => shape,
                    None => return Err(super::unfixed_shape(name, input.name(), &format!("{declared:?}"))),
                },
            };
            inputs.push(TensorSpec { name: input.name().to_string(), datum_type, shape });
        }
        for output in session.outputs() {
            outlet_type(name, output)?;
        }
        let outputs = session.outputs().iter().map(|output| output.name().to_string()).collect();
        let engine = Sessions { environment, bytes: bytes.to_vec(), idle: Mutex::new(vec![session]) };
        Ok(Prepared { engine, inputs, outputs })
    }

    /// Run an idle session (a new one when none is idle) on inputs in the graph's order; outputs
    /// in the graph's order. The session goes back to the pool after a failed run too (not after a
    /// panic, which the caller catches).
    pub(super) fn run(&self, name: &str, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ModelError> {
        let failed = |e: ort::Error| ModelError::Runtime(format!("model `{name}`: {e}"));
        let values: Vec<SessionInputValue> =
            inputs.iter().map(|t| to_ort(t).map(SessionInputValue::from)).collect::<Result<_, _>>().map_err(failed)?;
        let idle = lock(&self.idle).pop();
        let mut session = match idle {
            Some(session) => session,
            None => new_session(&self.environment, &self.bytes).map_err(failed)?,
        };
        let outputs = session
            .run(values.as_slice())
            .map_err(failed)
            .and_then(|outputs| outputs.values().map(|value| from_ort(name, value)).collect::<Result<Vec<_>, _>>());
        lock(&self.idle).push(session);
        outputs
    }
}

/// A session on one thread (the computation's own), with every graph optimization.
fn new_session(environment: &Environment, bytes: &[u8]) -> ort::Result<Session> {
    Session::builder(environment)?.with_intra_threads(1)?.with_inter_threads(1)?.commit_from_memory(bytes)
}

/// Whether `given` fits a declared shape (same rank; fixed dimensions equal, symbolic ones, `-1`,
/// take anything).
fn fits(declared: &[i64], given: &[usize]) -> bool {
    declared.len() == given.len() && declared.iter().zip(given).all(|(&d, &g)| d < 0 || d as usize == g)
}

/// The element type and declared shape of an input or output; one that is not a tensor of a type
/// `wasi:nn` can hold (or a boolean) is refused.
fn outlet_type(model: &str, outlet: &Outlet) -> Result<(DatumType, Vec<i64>), ModelError> {
    let refused = |what: String| {
        ModelError::Unsupported(format!("model `{model}`: `{}` is {what}, which this host cannot use", outlet.name()))
    };
    match outlet.dtype() {
        ValueType::Tensor { ty, shape, .. } => {
            let dt = datum_type(*ty).ok_or_else(|| refused(format!("a tensor of {ty:?}")))?;
            Ok((dt, shape.to_vec()))
        }
        other => Err(refused(format!("{other:?}"))),
    }
}

/// The tract element type of an ONNX Runtime one (the host's tensors are tract's).
fn datum_type(ty: TensorElementType) -> Option<DatumType> {
    Some(match ty {
        TensorElementType::Float16 => DatumType::F16,
        TensorElementType::Float32 => DatumType::F32,
        TensorElementType::Float64 => DatumType::F64,
        TensorElementType::Uint8 => DatumType::U8,
        TensorElementType::Int8 => DatumType::I8,
        TensorElementType::Uint16 => DatumType::U16,
        TensorElementType::Int16 => DatumType::I16,
        TensorElementType::Uint32 => DatumType::U32,
        TensorElementType::Int32 => DatumType::I32,
        TensorElementType::Uint64 => DatumType::U64,
        TensorElementType::Int64 => DatumType::I64,
        TensorElementType::Bool => DatumType::Bool,
        _ => return None,
    })
}

/// The ONNX Runtime element type of a tract one; the inverse of [`datum_type`].
fn element_type(dt: DatumType) -> Option<TensorElementType> {
    Some(match dt {
        DatumType::F16 => TensorElementType::Float16,
        DatumType::F32 => TensorElementType::Float32,
        DatumType::F64 => TensorElementType::Float64,
        DatumType::U8 => TensorElementType::Uint8,
        DatumType::I8 => TensorElementType::Int8,
        DatumType::U16 => TensorElementType::Uint16,
        DatumType::I16 => TensorElementType::Int16,
        DatumType::U32 => TensorElementType::Uint32,
        DatumType::I32 => TensorElementType::Int32,
        DatumType::U64 => TensorElementType::Uint64,
        DatumType::I64 => TensorElementType::Int64,
        DatumType::Bool => TensorElementType::Bool,
        _ => return None,
    })
}

/// An ONNX Runtime copy of a (checked) input tensor.
fn to_ort(tensor: &Tensor) -> ort::Result<DynTensor> {
    let ty = element_type(tensor.datum_type())
        .ok_or_else(|| ort::Error::new(format!("inputs of type {:?} are not supported", tensor.datum_type())))?;
    let mut value = DynTensor::new(&Allocator::default(), ty, tensor.shape())?;
    let bytes = tensor.as_bytes();
    if !bytes.is_empty() {
        // SAFETY: the new CPU tensor holds exactly `shape` elements of `ty`, the same number of
        // bytes as `tensor` (same element sizes both sides), and nothing else refers to it yet.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), value.data_ptr_mut().cast::<u8>(), bytes.len()) };
    }
    Ok(value)
}

/// A tract copy of an output tensor.
fn from_ort(model: &str, value: DynValueRef<'_>) -> Result<Tensor, ModelError> {
    let failed = |what: String| ModelError::Runtime(format!("model `{model}`: an output {what}"));
    let tensor = value.downcast::<DynTensorValueType>().map_err(|e| failed(format!("is not a tensor: {e}")))?;
    let ValueType::Tensor { ty, shape, .. } = tensor.dtype() else {
        return Err(failed("is not a tensor".into()));
    };
    let dt = datum_type(*ty).ok_or_else(|| failed(format!("has type {ty:?}")))?;
    let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let len = shape.iter().product::<usize>() * dt.size_of();
    let bytes: &[u8] = if len == 0 {
        &[]
    } else {
        // SAFETY: a CPU tensor of `shape` elements of `ty` (`dt` has the same size) owned by
        // `value`, which outlives this borrow.
        unsafe { std::slice::from_raw_parts(tensor.data_ptr().cast::<u8>(), len) }
    };
    // SAFETY: `dt` is a plain type and `bytes` holds exactly `shape`'s elements of it.
    unsafe { Tensor::from_raw_dt(dt, &shape, bytes) }.map_err(|e| failed(format!("cannot be read: {e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_shape_must_fit_the_declared_one() {
        assert!(fits(&[1, 3, -1, -1], &[1, 3, 224, 224]));
        assert!(fits(&[1, 128, 128, 3], &[1, 128, 128, 3]));
        assert!(!fits(&[1, 3, -1, -1], &[1, 4, 224, 224]), "a fixed dimension differs");
        assert!(!fits(&[1, 3, -1], &[1, 3, 224, 224]), "another rank");
    }

    #[test]
    fn element_types_map_both_ways() {
        for dt in [DatumType::F16, DatumType::F32, DatumType::F64, DatumType::U8, DatumType::I64, DatumType::Bool] {
            assert_eq!(element_type(dt).and_then(datum_type), Some(dt));
        }
        assert_eq!(datum_type(TensorElementType::String), None);
        assert_eq!(datum_type(TensorElementType::Bfloat16), None);
    }

    #[test]
    fn the_library_comes_from_the_variable_or_the_system_path() {
        let (path, chosen) = library(Some("/opt/ort/libonnxruntime.so.1.31.1".into()));
        assert_eq!((path, chosen.as_str()), ("/opt/ort/libonnxruntime.so.1.31.1".into(), "from ORT_DYLIB_PATH"));
        let system = (PathBuf::from("libonnxruntime.so"), "on the system library path; ORT_DYLIB_PATH is not set");
        for unset in [None, Some(OsString::new())] {
            let (path, chosen) = library(unset);
            assert_eq!((path, chosen.as_str()), (system.0.clone(), system.1));
        }
    }
}

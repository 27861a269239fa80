//! `wasi:nn` through its view: the refusals (no grant, undeclared model, bytes without
//! `models-from-bytes`), and a tiny ONNX model (`y = x + [10, 20]`) built here, loaded by name
//! and from bytes and computed, with tensors counted against the memory limit.

use std::collections::BTreeMap;

use prost::Message as _;
use tract_onnx::pb;
use wasmtime::component::Resource;

use crate::capabilities::nn::{Graph, NnError, View};
use crate::capabilities::wasi::nn::errors::{ErrorCode, HostError};
use crate::capabilities::wasi::nn::graph::{self, ExecutionTarget, GraphEncoding, HostGraph};
use crate::capabilities::wasi::nn::inference::HostGraphExecutionContext;
use crate::capabilities::wasi::nn::tensor::{HostTensor, TensorType};
use crate::manifest::{Grants, ModelSource, ModelSpec, ModelsGrant};

use super::{Declared, Env, TestCall, borrow, names};

/// An FP32 `[1, 2]` value of the graph.
fn value_info(name: &str) -> pb::ValueInfoProto {
    let dim = |d| pb::tensor_shape_proto::Dimension {
        value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(d)),
        ..Default::default()
    };
    let tensor = pb::type_proto::Tensor {
        elem_type: pb::tensor_proto::DataType::Float as i32,
        shape: Some(pb::TensorShapeProto { dim: vec![dim(1), dim(2)] }),
    };
    let r#type = pb::TypeProto { value: Some(pb::type_proto::Value::TensorType(tensor)), ..Default::default() };
    pb::ValueInfoProto { name: name.into(), r#type: Some(r#type), ..Default::default() }
}

/// The ONNX bytes of `y = x + [10, 20]`, `x` and `y` FP32 `[1, 2]`.
fn adder() -> Vec<u8> {
    let add = pb::NodeProto {
        input: vec!["x".into(), "b".into()],
        output: vec!["y".into()],
        op_type: "Add".into(),
        ..Default::default()
    };
    let b = pb::TensorProto {
        dims: vec![1, 2],
        data_type: pb::tensor_proto::DataType::Float as i32,
        name: "b".into(),
        float_data: vec![10.0, 20.0],
        ..Default::default()
    };
    let graph = pb::GraphProto {
        node: vec![add],
        name: "adder".into(),
        initializer: vec![b],
        input: vec![value_info("x")],
        output: vec![value_info("y")],
        ..Default::default()
    };
    let opset = pb::OperatorSetIdProto { domain: String::new(), version: 13 };
    pb::ModelProto { ir_version: 8, opset_import: vec![opset], graph: Some(graph), ..Default::default() }
        .encode_to_vec()
}

/// A call of a function granted `models` and maybe `models-from-bytes`, in an app declaring
/// model `adder` (its file in the env's data dir).
fn call(env: &Env, models: &[&str], from_bytes: bool, memory: u64) -> TestCall {
    let path = env.dir.path().join("adder.onnx");
    std::fs::write(&path, adder()).unwrap();
    let spec = ModelSpec {
        source: ModelSource::Path(path),
        inputs: BTreeMap::new(),
        warm: false,
        concurrency: 1,
        engine: Default::default(),
    };
    let declared = Declared { models: BTreeMap::from([("adder".to_string(), spec)]), ..Declared::default() };
    let grants = Grants { models: ModelsGrant { names: names(models), from_bytes }, ..Grants::default() };
    TestCall::new(&env.services, grants, declared, memory)
}

/// The code and message of a `wasi:nn` error.
async fn error(view: &mut View<'_>, error: Resource<NnError>) -> (ErrorCode, String) {
    let code = HostError::code(view, borrow(&error)).await.unwrap();
    (code, HostError::data(view, error).await.unwrap())
}

async fn refused(view: &mut View<'_>, loaded: Result<Resource<Graph>, Resource<NnError>>) -> (ErrorCode, String) {
    match loaded {
        Ok(_) => panic!("loaded"),
        Err(e) => error(view, e).await,
    }
}

async fn by_name(view: &mut View<'_>, name: &str) -> Result<Resource<Graph>, Resource<NnError>> {
    graph::Host::load_by_name(view, name.into()).await.unwrap()
}

async fn from_bytes(view: &mut View<'_>, encoding: GraphEncoding, target: ExecutionTarget) -> (ErrorCode, String) {
    let loaded = graph::Host::load(view, vec![adder()], encoding, target).await.unwrap();
    refused(view, loaded).await
}

#[tokio::test]
async fn nn_view_refuses_ungranted_and_undeclared_models() {
    let env = Env::new();
    let mut nothing = TestCall::new(&env.services, Grants::default(), Declared::default(), 1 << 20);
    let mut view = View::from(nothing.parts());
    let loaded = by_name(&mut view, "adder").await;
    let (code, message) = refused(&mut view, loaded).await;
    assert_eq!(code, ErrorCode::NotFound);
    assert!(message.contains("no model `adder` in app `app`; its models are: (none)"), "{message}");
    let (code, message) = from_bytes(&mut view, GraphEncoding::Onnx, ExecutionTarget::Cpu).await;
    assert_eq!(code, ErrorCode::Security);
    assert!(message.contains("may not load models from bytes"), "{message}");

    let mut declared_only = call(&env, &[], false, 1 << 20);
    let mut view = View::from(declared_only.parts());
    let loaded = by_name(&mut view, "adder").await;
    let (code, message) = refused(&mut view, loaded).await;
    assert_eq!(code, ErrorCode::Security, "declared but not granted");
    assert!(message.contains("not granted model `adder`"), "{message}");
    let loaded = by_name(&mut view, "other").await;
    let (code, message) = refused(&mut view, loaded).await;
    assert_eq!(code, ErrorCode::NotFound);
    assert!(message.contains("no model `other` in app `app`; its models are: adder"), "{message}");
    let (code, _) = from_bytes(&mut view, GraphEncoding::Onnx, ExecutionTarget::Cpu).await;
    assert_eq!(code, ErrorCode::Security, "a model grant is no `models-from-bytes`");

    let mut bytes = call(&env, &[], true, 1 << 20);
    let mut view = View::from(bytes.parts());
    let (code, _) = from_bytes(&mut view, GraphEncoding::Tensorflow, ExecutionTarget::Cpu).await;
    assert_eq!(code, ErrorCode::InvalidEncoding, "ONNX only");
    let (code, _) = from_bytes(&mut view, GraphEncoding::Onnx, ExecutionTarget::Gpu).await;
    assert_eq!(code, ErrorCode::UnsupportedOperation, "CPU only");
}

/// `x + [10, 20]` computed by `graph`, or the error's code.
async fn compute(view: &mut View<'_>, graph: Resource<Graph>, x: &[u8]) -> Result<(Vec<u32>, Vec<f32>), ErrorCode> {
    let context = HostGraph::init_execution_context(view, borrow(&graph)).await.unwrap().ok().unwrap();
    let input = HostTensor::new(view, vec![1, 2], TensorType::Fp32, x.to_vec()).await.unwrap();
    let computed = HostGraphExecutionContext::compute(view, borrow(&context), vec![("x".into(), input)]);
    let outputs = match computed.await.unwrap() {
        Ok(outputs) => outputs,
        Err(e) => return Err(error(view, e).await.0),
    };
    let [(name, y)]: [_; 1] = outputs.try_into().ok().unwrap();
    assert_eq!((name.as_str(), HostTensor::ty(view, borrow(&y)).await.unwrap()), ("y", TensorType::Fp32));
    let dims = HostTensor::dimensions(view, borrow(&y)).await.unwrap();
    let data = HostTensor::data(view, borrow(&y)).await.unwrap();
    HostTensor::drop(view, y).await.unwrap();
    HostGraphExecutionContext::drop(view, context).await.unwrap();
    HostGraph::drop(view, graph).await.unwrap();
    Ok((dims, data.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()))
}

fn fp32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[tokio::test]
async fn nn_view_loads_by_name_and_from_bytes_and_computes() {
    let env = Env::new();
    let mut call = call(&env, &["adder"], true, 1 << 20);
    let mut view = View::from(call.parts());
    let named = by_name(&mut view, "adder").await.ok().unwrap();
    assert_eq!(compute(&mut view, named, &fp32(&[1.0, 2.0])).await, Ok((vec![1, 2], vec![11.0, 22.0])));
    let loaded = graph::Host::load(&mut view, vec![adder()], GraphEncoding::Onnx, ExecutionTarget::Cpu);
    let loaded = loaded.await.unwrap().ok().unwrap();
    assert_eq!(compute(&mut view, loaded, &fp32(&[-1.0, 0.5])).await, Ok((vec![1, 2], vec![9.0, 20.5])));
    let named = by_name(&mut view, "adder").await.ok().unwrap();
    let short = compute(&mut view, named, &fp32(&[1.0])).await;
    assert_eq!(short, Err(ErrorCode::InvalidArgument), "4 bytes do not fill an FP32 [1, 2]");
}

#[tokio::test]
async fn nn_view_counts_tensors_against_the_memory_limit() {
    let env = Env::new();
    let mut call = call(&env, &[], true, 1 << 10);
    let mut view = View::from(call.parts());
    let held = HostTensor::new(&mut view, vec![150], TensorType::Fp32, vec![0; 600]).await.unwrap();
    let more = HostTensor::new(&mut view, vec![150], TensorType::Fp32, vec![0; 600]).await;
    let message = more.expect_err("two tensors pass the memory limit").to_string();
    assert!(message.contains("wasi:nn tensor would need 1200 bytes"), "{message}");
    HostTensor::drop(&mut view, held).await.unwrap();
    let after = HostTensor::new(&mut view, vec![150], TensorType::Fp32, vec![0; 600]).await;
    assert!(after.is_ok(), "a dropped tensor gives its memory back");
    assert_eq!(call.memory.denied_memory(), Some(1200));
}

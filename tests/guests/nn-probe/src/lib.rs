//! Test guest for `wasi:nn`: loads models by name or from bytes and computes with tensors of any
//! type, reporting the host's error codes and messages as they are.

use guest_sdk::bindings::wasi::nn::{errors, graph, tensor};

wit_bindgen::generate!({
    world: "test:nn-probe/nn-probe",
    path: ["../../../wit", "wit"],
});

struct Probe;

fn failure(error: errors::Error) -> NnFailure {
    NnFailure { code: format!("{:?}", error.code()).trim_start_matches("ErrorCode::").into(), message: error.data() }
}

fn tensor_type(name: &str) -> tensor::TensorType {
    use tensor::TensorType as T;
    match name {
        "fp16" => T::Fp16,
        "fp32" => T::Fp32,
        "fp64" => T::Fp64,
        "bf16" => T::Bf16,
        "u8" => T::U8,
        "i32" => T::I32,
        "i64" => T::I64,
        other => panic!("unknown tensor type {other}"),
    }
}

fn compute(graph: graph::Graph, inputs: Vec<TensorIn>) -> Result<Vec<TensorOut>, NnFailure> {
    let context = graph.init_execution_context().map_err(failure)?;
    let named = inputs
        .into_iter()
        .map(|t| (t.name, tensor::Tensor::new(&t.dims, tensor_type(&t.ty), &t.data)))
        .collect::<Vec<_>>();
    let outputs = context.compute(named).map_err(failure)?;
    Ok(outputs
        .into_iter()
        .map(|(name, t)| {
            let data = t.data();
            let fp32 = t.ty() == tensor::TensorType::Fp32;
            TensorOut {
                name,
                dims: t.dimensions(),
                ty: format!("{:?}", t.ty()).to_lowercase(),
                values: if fp32 {
                    data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
                } else {
                    Vec::new()
                },
                data: if fp32 { Vec::new() } else { data },
            }
        })
        .collect())
}

impl Guest for Probe {
    fn compute_named(name: String, inputs: Vec<TensorIn>) -> Result<Vec<TensorOut>, NnFailure> {
        compute(graph::load_by_name(&name).map_err(failure)?, inputs)
    }

    fn compute_bytes(onnx: Vec<u8>, target: String, inputs: Vec<TensorIn>) -> Result<Vec<TensorOut>, NnFailure> {
        let target = match target.as_str() {
            "cpu" => graph::ExecutionTarget::Cpu,
            "gpu" => graph::ExecutionTarget::Gpu,
            _ => graph::ExecutionTarget::Tpu,
        };
        let graph = graph::load(&[onnx], graph::GraphEncoding::Onnx, target).map_err(failure)?;
        compute(graph, inputs)
    }

    fn time_named(name: String, input: TensorIn, iterations: u32) -> Result<Vec<f64>, NnFailure> {
        let context = graph::load_by_name(&name).map_err(failure)?.init_execution_context().map_err(failure)?;
        let mut times = Vec::new();
        for _ in 0..iterations {
            let started = std::time::Instant::now();
            let tensor = tensor::Tensor::new(&input.dims, tensor_type(&input.ty), &input.data);
            for (_, output) in context.compute(vec![(input.name.clone(), tensor)]).map_err(failure)? {
                std::hint::black_box(output.data());
            }
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(times)
    }

    fn hold_tensors(count: u32, bytes: u32) -> u32 {
        let data = vec![0u8; bytes as usize];
        let held: Vec<tensor::Tensor> =
            (0..count).map(|_| tensor::Tensor::new(&[bytes], tensor::TensorType::U8, &data)).collect();
        held.len() as u32
    }
}

export!(Probe);

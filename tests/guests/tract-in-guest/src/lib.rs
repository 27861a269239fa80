//! Benchmark guest: runs an ONNX model with tract compiled into the component (no `wasi:nn`),
//! timing the load and each run inside the guest.

use std::time::Instant;

use tract_onnx::prelude::*;

wit_bindgen::generate!({ world: "test:tract-in-guest/tract-in-guest", path: "wit" });

struct InGuest;

impl Guest for InGuest {
    fn infer(onnx: Vec<u8>, name: String, dims: Vec<u32>, data: Vec<u8>, iterations: u32) -> Result<Timings, String> {
        let started = Instant::now();
        let plan = tract_onnx::onnx()
            .model_for_read(&mut onnx.as_slice())
            .and_then(|model| model.into_optimized())
            .and_then(|model| model.into_runnable())
            .map_err(|e| format!("{e:#}"))?;
        let load_ms = started.elapsed().as_secs_f64() * 1000.0;
        let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
        let values: Vec<f32> = data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let mut runs_ms = Vec::new();
        let mut checksum = 0.0;
        for _ in 0..iterations {
            let started = Instant::now();
            let input = Tensor::from_shape(&shape, &values).map_err(|e| format!("{e:#}"))?;
            let outputs = plan.run(tvec!(input.into_tvalue())).map_err(|e| format!("input `{name}`: {e:#}"))?;
            runs_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            checksum = outputs
                .iter()
                .filter_map(|o| o.to_plain_array_view::<f32>().ok())
                .map(|values| values.iter().map(|&v| f64::from(v)).sum::<f64>())
                .sum();
        }
        Ok(Timings { load_ms, runs_ms, checksum })
    }
}

export!(InGuest);

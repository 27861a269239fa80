//! BlazeFace (128×128) inference, in one run, same model and input, one thread per compute:
//! native tract and native ONNX Runtime in this process (the host's models layer, each engine);
//! a guest calling the host's `wasi:nn` with each engine; and tract compiled into a guest
//! (wasm32-wasip2). Guest times are taken inside the guest, per compute.
//!
//! Run with `cargo bench -p host --bench nn` (`BENCH_RUNS` computes each, default 50). ONNX
//! Runtime comes from `ORT_DYLIB_PATH`, else from `.cache/onnxruntime` (the nn tests fetch it
//! there); without either its rows are skipped. The machine is shared and noisy: compare the ratios.

use std::path::Path;
use std::time::Instant;

use base64::Engine as _;
use host::Host;
use host::manifest::{Manifest, ModelEngine};
use host::models::{LIBRARY_VAR, Model};
use prost::Message;
use serde_json::{Value, json};
use tract_onnx::prelude::*;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn times(value: &Value) -> Vec<f64> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

/// Ms per compute of `model` (native, on this thread), `runs` computes.
fn native_computes(model: &Model, values: &[f32], runs: usize) -> Vec<f64> {
    (0..runs)
        .map(|_| {
            let input = Tensor::from_shape(&[1, 128, 128, 3], values).unwrap();
            let started = Instant::now();
            std::hint::black_box(model.compute_blocking(vec![("input:0".into(), input)]).unwrap());
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

/// The sum of every output value of `model` on `values`.
fn checksum(model: &Model, values: &[f32]) -> f64 {
    let input = Tensor::from_shape(&[1, 128, 128, 3], values).unwrap();
    let outputs = model.compute_blocking(vec![("input:0".into(), input)]).unwrap();
    outputs
        .iter()
        .flat_map(|(_, o)| o.to_plain_array_view::<f32>().unwrap().iter().map(|&v| f64::from(v)).collect::<Vec<_>>())
        .sum()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cached = root.join(".cache/onnxruntime/libonnxruntime.so.1.31.1");
    if std::env::var_os(LIBRARY_VAR).is_none() && cached.is_file() {
        // SAFETY: no other thread runs yet.
        unsafe { std::env::set_var(LIBRARY_VAR, &cached) };
    }
    let runs: u32 = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let probe_manifest = root.join("tests/guests/nn-probe/host.toml");
    for manifest in ["examples/face-detect/host.toml", "tests/guests/nn-probe/host.toml"] {
        host::build::build(&Manifest::load(root.join(manifest)).unwrap()).unwrap();
    }
    let status = std::process::Command::new("cargo")
        .args(["build", "--release", "--target", "wasm32-wasip2", "-p", "tract-in-guest"])
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(status.success(), "building tract-in-guest failed");
    let bytes = std::fs::read(root.join("examples/face-detect/models/blazeface.onnx")).unwrap();
    let values: Vec<f32> = (0..128 * 128 * 3).map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0).collect();
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();

    // Native: the host's models layer, each engine (tract with its model fixes).
    let tract_model = Model::from_onnx("blazeface", ModelEngine::Tract, &bytes, &Default::default(), 1).unwrap();
    let ort_model = Model::from_onnx("blazeface", ModelEngine::OnnxRuntime, &bytes, &Default::default(), 1)
        .map_err(|e| println!("onnxruntime skipped: {e}"))
        .ok();
    let checksum_tract = checksum(&tract_model, &values);

    let data_dir = tempfile::tempdir().unwrap();
    let host = Host::builder().data_dir(data_dir.path()).build().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
    let tensor = json!({ "name": "input:0", "dims": [1, 128, 128, 3], "ty": "fp32", "data": encoded });
    let probe = host.load(&probe_manifest).unwrap();
    let time_tract = probe.function("nn-probe.time-named").unwrap();
    let probe_ort = ort_model.as_ref().map(|_| host.load(root.join("tests/guests/nn-probe/onnxruntime.toml")).unwrap());
    let time_ort = probe_ort.as_ref().map(|app| app.function("nn-probe.time-named").unwrap());

    // Every way alternates in rounds of 5, so all see the same machine load.
    let (mut native, mut native_ort, mut via_nn, mut via_nn_ort) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs.div_ceil(5) {
        native.extend(native_computes(&tract_model, &values, 5));
        via_nn.extend(times(&runtime.block_on(time_tract.call(json!(["blazeface", tensor, 5]))).unwrap()));
        if let (Some(model), Some(time_ort)) = (&ort_model, &time_ort) {
            native_ort.extend(native_computes(model, &values, 5));
            via_nn_ort.extend(times(&runtime.block_on(time_ort.call(json!(["blazeface", tensor, 5]))).unwrap()));
        }
    }

    // A whole call each time: fresh instance, load-by-name, one compute (JSON arguments
    // included); the engines alternate.
    let whole_call = |function: &host::Function| {
        let started = Instant::now();
        runtime.block_on(function.call(json!(["blazeface", tensor, 1]))).unwrap();
        started.elapsed().as_secs_f64() * 1000.0
    };
    let (mut whole_tract, mut whole_ort) = (Vec::new(), Vec::new());
    for _ in 0..runs.min(20) {
        whole_tract.push(whole_call(&time_tract));
        whole_ort.extend(time_ort.as_ref().map(&whole_call));
    }

    // tract inside the guest, on the same model with the same fix applied by the host's loader.
    let mut proto = tract_onnx::onnx().proto_model_for_read(&mut bytes.as_slice()).unwrap();
    host::models::fix_known_quirks(&mut proto);
    let fixed = base64::engine::general_purpose::STANDARD.encode(proto.encode_to_vec());
    let in_guest_manifest = data_dir.path().join("tract.toml");
    std::fs::write(
        &in_guest_manifest,
        format!(
            "[app]\nname = \"tract\"\n[function.tract]\nsource = {:?}\nlimits = {{ memory = \"1GiB\", timeout = \"10m\", table-entries = 100000 }}\n",
            root.join("target/wasm32-wasip2/release/tract_in_guest.wasm").display().to_string()
        ),
    )
    .unwrap();
    let tract = host.load(&in_guest_manifest).unwrap();
    let infer = tract.function("tract.infer").unwrap();
    let in_guest = runtime.block_on(infer.call(json!([fixed, "input:0", [1, 128, 128, 3], encoded, runs]))).unwrap();
    let guest_checksum = in_guest["checksum"].as_f64().unwrap();
    assert!(
        (guest_checksum - checksum_tract).abs() <= 1e-3 * checksum_tract.abs().max(1.0),
        "tract in the guest computed {guest_checksum}, native {checksum_tract}"
    );

    let (native, via_nn, in_guest_runs) = (median(native), median(via_nn), median(times(&in_guest["runs-ms"])));
    println!("BlazeFace 128x128, {runs} computes each, one thread, median ms per compute");
    println!("  native tract in the host process   {native:8.2}");
    if let Some(model) = &ort_model {
        let (native_ort, via_nn_ort) = (median(native_ort), median(via_nn_ort));
        let difference = (checksum(model, &values) - checksum_tract).abs() / checksum_tract.abs().max(1.0);
        println!(
            "  native onnxruntime                  {native_ort:8.2}   {:.3}x native tract (tract is {:.2}x slower); outputs' sums differ by {difference:.1e} (relative)",
            native_ort / native,
            native / native_ort
        );
        println!(
            "  guest -> wasi:nn (host onnxruntime) {via_nn_ort:8.2}   {:.3}x native onnxruntime, {:.3}x guest -> wasi:nn (tract)",
            via_nn_ort / native_ort,
            via_nn_ort / via_nn
        );
    }
    println!("  guest -> wasi:nn (host tract)       {via_nn:8.2}   {:.3}x native tract", via_nn / native);
    println!(
        "  tract compiled into the guest       {in_guest_runs:8.2}   {:.3}x native tract, wasi:nn (tract) is {:.1}x faster",
        in_guest_runs / native,
        in_guest_runs / via_nn
    );
    print!("  whole call (fresh instance + load-by-name + compute + JSON args): tract {:.2}", median(whole_tract));
    if !whole_ort.is_empty() {
        print!(", onnxruntime {:.2}", median(whole_ort));
    }
    println!();
    println!(
        "  model load: tract in the guest {:.0} ms (the host loads once per host)",
        in_guest["load-ms"].as_f64().unwrap()
    );
}

//! BlazeFace (128×128) inference three ways, in one run, same model and input:
//! native tract in this process; a guest calling the host's `wasi:nn`; and tract compiled into a
//! guest (wasm32-wasip2). Guest times are taken inside the guest, per compute.
//!
//! Run with `cargo bench -p host --bench nn` (`BENCH_RUNS` computes each, default 50). The
//! machine is shared and noisy: compare the ratios.

use std::path::Path;
use std::time::Instant;

use base64::Engine as _;
use host::Host;
use host::manifest::Manifest;
use host::models::Model;
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

fn main() {
    let runs: u32 = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
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

    // Native: the host's own loading (with its model fixes), the plan run directly.
    let model = Model::from_onnx("blazeface", &bytes, &Default::default(), 1).unwrap();
    let input = || tvec!(Tensor::from_shape(&[1, 128, 128, 3], &values).unwrap().into_tvalue());
    let native_outputs = model.plan().run(input()).unwrap();
    let checksum: f64 = native_outputs
        .iter()
        .flat_map(|o| o.to_plain_array_view::<f32>().unwrap().iter().map(|&v| f64::from(v)).collect::<Vec<_>>())
        .sum();

    let data_dir = tempfile::tempdir().unwrap();
    let host = Host::builder().data_dir(data_dir.path()).build().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let probe = host.load(&probe_manifest).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
    let tensor = json!({ "name": "input:0", "dims": [1, 128, 128, 3], "ty": "fp32", "data": encoded });
    let time_named = probe.function("nn-probe.time-named").unwrap();

    // Native and wasi:nn computes alternate in rounds of 5, so both see the same machine load.
    let (mut native, mut via_nn) = (Vec::new(), Vec::new());
    for _ in 0..runs.div_ceil(5) {
        for _ in 0..5 {
            let started = Instant::now();
            std::hint::black_box(model.plan().run(input()).unwrap());
            native.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        via_nn.extend(times(&runtime.block_on(time_named.call(json!(["blazeface", tensor, 5]))).unwrap()));
    }

    // A whole call each time: fresh instance, load-by-name, one compute (JSON arguments included).
    let whole_calls: Vec<f64> = (0..runs.min(20))
        .map(|_| {
            let started = Instant::now();
            runtime.block_on(time_named.call(json!(["blazeface", tensor, 1]))).unwrap();
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();

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
        (guest_checksum - checksum).abs() <= 1e-3 * checksum.abs().max(1.0),
        "tract in the guest computed {guest_checksum}, native {checksum}"
    );

    let (native, via_nn, in_guest_runs) = (median(native), median(via_nn), median(times(&in_guest["runs-ms"])));
    println!("BlazeFace 128x128, {runs} computes each, median ms per compute");
    println!("  native tract in the host process   {native:8.2}");
    println!("  guest -> wasi:nn (host tract)       {via_nn:8.2}   {:.3}x native", via_nn / native);
    println!(
        "  tract compiled into the guest       {in_guest_runs:8.2}   {:.3}x native, wasi:nn is {:.1}x faster",
        in_guest_runs / native,
        in_guest_runs / via_nn
    );
    println!("  whole call (fresh instance + load-by-name + compute + JSON args) {:8.2}", median(whole_calls));
    println!(
        "  model load: tract in the guest {:.0} ms (the host loads once per host)",
        in_guest["load-ms"].as_f64().unwrap()
    );
}

//! `wasi:nn` on tract with the real BlazeFace model: load by name and from bytes, clear errors for
//! bad tensors and missing grants, concurrent computes on one shared model, tensor memory limits;
//! the same calls with ONNX Runtime as the model's engine (in a `host call` process of its own: the
//! library, once loaded, stays for the process).

use base64::Engine as _;
use host::manifest::ModelEngine;
use host::models::Model;
use host::{App, CallError, Error};
use serde_json::{Value, json};
use tract_onnx::prelude::Tensor;

use crate::common::{NN_PROBE, ServeProcess, app, blazeface, compiled_cache, manifest, onnxruntime_library, root};
use crate::server::send;

const SIDE: usize = 128;

/// A deterministic pseudo-random image tensor in [-1, 1], different per `seed`.
fn pixels(seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..SIDE * SIDE * 3)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn fp32_input(name: &str, dims: &[u32], values: &[f32]) -> Value {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    json!({"name": name, "dims": dims, "ty": "fp32", "data": base64::engine::general_purpose::STANDARD.encode(data)})
}

fn image_input(seed: u32) -> Value {
    fp32_input("input:0", &[1, 128, 128, 3], &pixels(seed))
}

async fn compute(app: &App, function: &str, args: Value) -> Result<Value, Value> {
    match app.function(function).unwrap().call(args).await {
        Ok(outputs) => Ok(outputs),
        Err(host::Error::Call(host::CallError::Guest { value })) => Err(value),
        Err(other) => panic!("{function} failed outside wasi:nn: {other}"),
    }
}

/// The FP32 values of each output, by name, from a `compute-*` result.
fn outputs(result: &Value) -> Vec<(String, Vec<u32>, Vec<f32>)> {
    result
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let dims = o["dims"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as u32).collect();
            let values = o["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            (o["name"].as_str().unwrap().to_string(), dims, values)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn by_name_matches_native_tract_and_from_bytes() {
    let (_data, _host, app) = app(NN_PROBE);
    let by_name = compute(&app, "nn-probe.compute-named", json!(["blazeface", [image_input(7)]])).await.unwrap();
    let by_name = outputs(&by_name);
    let shapes: Vec<(&str, Vec<u32>)> = by_name.iter().map(|(n, d, _)| (n.as_str(), d.clone())).collect();
    assert_eq!(
        shapes,
        [
            ("Identity:0", vec![1, 512, 1]),
            ("Identity_1:0", vec![1, 384, 1]),
            ("Identity_2:0", vec![1, 512, 16]),
            ("Identity_3:0", vec![1, 384, 16])
        ]
    );

    // The same model run natively in this process gives the same numbers.
    let bytes = std::fs::read(blazeface()).unwrap();
    let native = Model::from_onnx("native", ModelEngine::Tract, &bytes, &Default::default(), 1).unwrap();
    let input = Tensor::from_shape(&[1, 128, 128, 3], &pixels(7)).unwrap();
    let expected = native.compute_blocking(vec![("input:0".into(), input)]).unwrap();
    for ((name, _, values), (native_name, tensor)) in by_name.iter().zip(&expected) {
        assert_eq!(name, native_name);
        let native: Vec<f32> = tensor.to_plain_array_view::<f32>().unwrap().iter().copied().collect();
        assert_eq!(values, &native, "output {name}");
    }

    // Loading the same bytes through `load` gives the same result too.
    let onnx = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let from_bytes = compute(&app, "nn-probe.compute-bytes", json!([onnx, "cpu", [image_input(7)]])).await.unwrap();
    assert_eq!(outputs(&from_bytes), by_name);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tensors_get_clear_errors_and_the_host_carries_on() {
    let (_data, _host, app) = app(NN_PROBE);
    let named = |inputs: Value| compute(&app, "nn-probe.compute-named", json!(["blazeface", inputs]));
    let cases = [
        (json!([fp32_input("input:0", &[1, 3, 128, 128], &pixels(1))]), "[1, 3, 128, 128]"),
        (json!([fp32_input("image", &[1, 128, 128, 3], &pixels(1))]), "has no input `image`"),
        (json!([fp32_input("input:0", &[1, 128, 128, 3], &pixels(1)[..100])]), "has 400 bytes"),
        (json!([{"name": "input:0", "dims": [1, 128, 128, 3], "ty": "u8", "data": vec![0; SIDE * SIDE * 3]}]), "U8"),
        (json!([]), "is missing"),
    ];
    for (inputs, says) in cases {
        let error = named(inputs).await.unwrap_err();
        assert_eq!(error["code"], "InvalidArgument", "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(says) && message.contains("blazeface"), "{message}");
        if !says.contains("no input") {
            assert!(
                message.contains("`input:0` (FP32 [1, 128, 128, 3])") || message.contains("has 400 bytes"),
                "{message}"
            );
        }
    }
    let error = named(json!([{"name": "input:0", "dims": [1], "ty": "bf16", "data": [0, 0]}])).await.unwrap_err();
    assert_eq!(error["code"], "UnsupportedOperation", "{error}");
    assert!(named(json!([image_input(1)])).await.is_ok(), "a good call after the bad ones works");
}

#[tokio::test(flavor = "multi_thread")]
async fn models_need_grants_and_supported_loads() {
    let (_data, _host, app) = app(NN_PROBE);
    let error = |code: &str, message: &str, got: Result<Value, Value>| {
        let got = got.unwrap_err();
        assert_eq!(got["code"], code, "{got}");
        assert!(got["message"].as_str().unwrap().contains(message), "{got}");
    };
    let input = json!([image_input(1)]);
    error(
        "Security",
        "not granted model `blazeface`",
        compute(&app, "ungranted.compute-named", json!(["blazeface", input])).await,
    );
    error(
        "Security",
        "not granted model `secret`",
        compute(&app, "nn-probe.compute-named", json!(["secret", input])).await,
    );
    error(
        "NotFound",
        "its models are: blazeface, secret",
        compute(&app, "nn-probe.compute-named", json!(["nope", input])).await,
    );
    let onnx = base64::engine::general_purpose::STANDARD.encode(std::fs::read(blazeface()).unwrap());
    error("Security", "models-from-bytes", compute(&app, "ungranted.compute-bytes", json!([onnx, "cpu", input])).await);
    error(
        "UnsupportedOperation",
        "CPU only",
        compute(&app, "nn-probe.compute-bytes", json!([onnx, "gpu", input])).await,
    );
    error(
        "InvalidEncoding",
        "not an ONNX model",
        compute(&app, "nn-probe.compute-bytes", json!(["bm90IG9ubng=", "cpu", input])).await,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_computes_on_one_model_match_sequential_ones() {
    let (_data, _host, app) = app(NN_PROBE);
    let app = std::sync::Arc::new(app);
    let mut sequential = Vec::new();
    for seed in 0..6 {
        sequential
            .push(compute(&app, "nn-probe.compute-named", json!(["blazeface", [image_input(seed)]])).await.unwrap());
    }
    let concurrent = (0..6).map(|seed| {
        let app = app.clone();
        tokio::spawn(async move {
            compute(&app, "nn-probe.compute-named", json!(["blazeface", [image_input(seed)]])).await.unwrap()
        })
    });
    let concurrent = futures_util::future::join_all(concurrent).await;
    for (seed, (one, other)) in sequential.iter().zip(concurrent).enumerate() {
        assert_eq!(one, &other.unwrap(), "seed {seed}");
    }
    assert_ne!(sequential[0], sequential[1], "different inputs give different outputs");
}

#[tokio::test(flavor = "multi_thread")]
async fn tensors_count_against_the_memory_limit() {
    let (_data, _host, app) = app(NN_PROBE);
    let hold = app.function("nn-probe.hold-tensors").unwrap();
    assert_eq!(hold.call(json!([8, 1 << 20])).await.unwrap(), json!(8));
    // 80 tensors of 1 MiB held at once pass the 64 MiB limit: the call fails with the memory
    // limit, alone. 63 do too: tensors count together with the guest's linear memory (its 1 MiB
    // stack and the 1 MiB it copies them from, at least), not beside it.
    for count in [80, 63] {
        match hold.call(json!([count, 1 << 20])).await {
            Err(Error::Call(CallError::MemoryLimit { limit, requested })) => {
                assert_eq!(limit, 64 << 20);
                assert!(requested > limit, "{count} tensors: requested {requested}");
            }
            other => panic!("{count} tensors: expected the memory limit, got {other:?}"),
        }
    }
    assert_eq!(hold.call(json!([40, 1 << 20])).await.unwrap(), json!(40));
    assert_eq!(hold.call(json!([8, 1 << 20])).await.unwrap(), json!(8));
}

#[test]
fn model_entries_are_checked_when_the_app_loads() {
    let (data, host) = crate::common::host();
    let model = blazeface();
    let load = |model_table: &str| {
        let manifest = data.path().join("models.toml");
        let probe = crate::common::manifest(NN_PROBE)
            .parent()
            .unwrap()
            .join("../../../target/wasm32-wasip2/release/nn_probe.wasm");
        let text = format!(
            "[app]\nname = \"m\"\n[function.f]\nsource = {:?}\ngrants = {{ models = [\"x\"] }}\n[model.x]\n{model_table}\n",
            probe.display().to_string()
        );
        std::fs::write(&manifest, text).unwrap();
        host.load(&manifest).err().map(|e| e.to_string())
    };
    let path = format!("path = {:?}", model.display().to_string());
    assert_eq!(load(&format!("{path}\nwarm = true\ninputs = {{ \"input:0\" = [1, 128, 128, 3] }}")), None);
    let error = load(&format!("{path}\nwarm = true\ninputs = {{ image = [1, 3, 64, 64] }}")).unwrap();
    assert!(error.contains("model `x` has no input `image`") && error.contains("input:0"), "{error}");
    let error = load("path = \"missing.onnx\"").unwrap();
    assert!(error.contains("model `x`: no file") && error.contains("missing.onnx"), "{error}");
    let error = load(&format!("{path}\nengine = \"ort\"")).unwrap();
    assert!(error.contains("model.x.engine: unknown engine `ort`; expected `tract` or `onnxruntime`"), "{error}");
    let error = load(&format!("{path}\nbucket = \"b\"")).unwrap();
    assert!(error.contains("model.x: expected either `path`"), "{error}");
    let not_onnx = data.path().join("not.onnx");
    std::fs::write(&not_onnx, b"hello").unwrap();
    let error = load(&format!("path = {:?}\nwarm = true", not_onnx.display().to_string())).unwrap();
    assert!(error.contains("model `x` is not an ONNX model"), "{error}");
}

/// The nn-probe app with BlazeFace on ONNX Runtime.
const NN_PROBE_ORT: &str = "tests/guests/nn-probe/onnxruntime.toml";

/// `host call` of `function` of the ONNX Runtime nn-probe app, arguments on stdin, with
/// `ORT_DYLIB_PATH` set to `library`: exit code, stdout, stderr.
fn call_with_onnxruntime(library: &std::path::Path, function: &str, args: &Value) -> (i32, String, String) {
    use std::io::Write;
    manifest(NN_PROBE);
    let data = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_host"))
        .env("ORT_DYLIB_PATH", library)
        .arg("--data")
        .arg(data.path())
        .arg("--cache")
        .arg(compiled_cache())
        .arg("call")
        .arg("-f")
        .arg(root().join(NN_PROBE_ORT))
        .args([function, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(args.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn onnxruntime_gives_tracts_outputs_through_wasi_nn() {
    let library = onnxruntime_library();
    let (_data, _host, app) = app(NN_PROBE);
    for seed in [7, 8] {
        let args = json!(["blazeface", [image_input(seed)]]);
        let by_tract = outputs(&compute(&app, "nn-probe.compute-named", args.clone()).await.unwrap());
        let (code, stdout, stderr) = call_with_onnxruntime(&library, "nn-probe.compute-named", &args);
        assert_eq!(code, 0, "{stderr}");
        let by_ort = outputs(&serde_json::from_str(&stdout).unwrap());
        let names =
            |o: &[(String, Vec<u32>, Vec<f32>)]| o.iter().map(|(n, d, _)| (n.clone(), d.clone())).collect::<Vec<_>>();
        assert_eq!(names(&by_ort), names(&by_tract), "same outputs, same exact shapes");
        for ((name, _, ort), (_, _, tract)) in by_ort.iter().zip(&by_tract) {
            let worst = ort.iter().zip(tract).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0.0, f32::max);
            assert!(worst < 1e-3, "seed {seed}, output {name}: differs by up to {worst}");
        }
    }
    // A bad tensor gets the same error from either engine (inputs are checked before either runs).
    let bad = json!(["blazeface", [fp32_input("input:0", &[1, 3, 128, 128], &pixels(1))]]);
    let by_tract = compute(&app, "nn-probe.compute-named", bad.clone()).await.unwrap_err();
    let (code, _, stderr) = call_with_onnxruntime(&library, "nn-probe.compute-named", &bad);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("InvalidArgument") && stderr.contains(by_tract["message"].as_str().unwrap()), "{stderr}");
}

#[test]
fn a_missing_or_wrong_onnxruntime_library_fails_the_app_load() {
    let args = json!(["blazeface", []]);
    let missing = std::path::Path::new("/nonexistent/libonnxruntime.so.1.31.1");
    let (code, stdout, stderr) = call_with_onnxruntime(missing, "nn-probe.compute-named", &args);
    assert_eq!((code, stdout.as_str()), (1, ""), "{stderr}");
    for says in [
        "model `blazeface` asks for engine `onnxruntime`",
        "cannot be loaded from `/nonexistent/libonnxruntime.so.1.31.1` (from ORT_DYLIB_PATH)",
        "set ORT_DYLIB_PATH",
    ] {
        assert!(stderr.contains(says), "{says}: {stderr}");
    }
    // A shared library that is not ONNX Runtime.
    let (code, _, stderr) = call_with_onnxruntime(std::path::Path::new("libm.so.6"), "nn-probe.compute-named", &args);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("model `blazeface`") && stderr.contains("does not export `OrtGetApiBase`"), "{stderr}");
}

#[test]
fn onnxruntime_serves_concurrent_computes_like_sequential_ones() {
    let library = onnxruntime_library();
    let data = tempfile::tempdir().unwrap();
    let library = library.to_str().unwrap();
    let server = ServeProcess::start_in_env(data.path(), None, &[NN_PROBE_ORT], &[], &[("ORT_DYLIB_PATH", library)]);
    let call = |seed: u32| {
        let body = json!(["blazeface", [image_input(seed)]]).to_string();
        let answer = send(
            server.addr,
            "POST",
            "/v1/apps/nn-probe-ort/functions/nn-probe.compute-named",
            &["Content-Type: application/json"],
            body.as_bytes(),
        );
        assert_eq!(answer.status, 200, "seed {seed}: {}", answer.text());
        answer.json()
    };
    let sequential: Vec<Value> = (0..6).map(call).collect();
    // Six at once on a model with `concurrency = 2`: its second session is made on demand.
    let concurrent: Vec<Value> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..6).map(|seed| scope.spawn(move || call(seed))).collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert_eq!(concurrent, sequential);
    assert_ne!(sequential[0], sequential[1], "different inputs give different outputs");
}

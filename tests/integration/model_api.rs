//! The `model-api` example (the DEEPaaS V2 model API over BlazeFace) on a real `host serve` on
//! loopback: its endpoints and OpenAPI schemas from WIT, predict as JSON or as a PNG with the
//! boxes drawn by `Accept`, predict on an image fetched by URL from a granted host (a
//! `web::WebServer` on loopback), and train as a job that calibrates predict's threshold.

use std::time::Duration;

use base64::Engine as _;
use host::server::ServerConfig;
use serde_json::{Value, json};

use crate::common::{MODEL_API, iou, skimage_image};
use crate::outbound_sdk::{granting, origin};
use crate::server::{Answer, Served, send, serve_apps};
use crate::web::{Response, WebServer};

/// Where the astronaut's face is (left, top, right, bottom).
const ASTRONAUT_FACE: [f64; 4] = [180.0, 80.0, 274.0, 177.0];

const FUNCTIONS: &str = "/v1/apps/model-api/functions";
const ITEMS: &str = "/v1/apps/model-api/datasets/training/items";

fn serve() -> Served {
    serve_apps(&[MODEL_API], ServerConfig::default(), Duration::from_secs(5))
}

fn image(name: &str) -> Vec<u8> {
    std::fs::read(skimage_image(name)).unwrap()
}

/// Calls `model-api.EXPORT` with JSON `args` and extra header lines.
fn call(served: &Served, export: &str, headers: &[&str], args: Value) -> Answer {
    let path = format!("{FUNCTIONS}/model-api.{export}");
    send(served.addr, "POST", &path, headers, args.to_string().as_bytes())
}

/// predict's arguments for `bytes`, plus `extra` fields.
fn predict_args(bytes: &[u8], extra: Value) -> Value {
    let mut args = json!({ "image": base64::engine::general_purpose::STANDARD.encode(bytes) });
    args.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    args
}

/// The boxes of predict's JSON answer (left, top, right, bottom).
fn faces(answer: &Answer) -> Vec<[f64; 4]> {
    assert_eq!(answer.status, 200, "{}", answer.text());
    let faces = answer.json()["faces"].as_array().unwrap_or_else(|| panic!("no faces in {}", answer.text())).clone();
    faces.iter().map(|f| ["left", "top", "right", "bottom"].map(|k| f[k].as_f64().unwrap())).collect()
}

/// Asserts that `found` is the astronaut's face alone.
#[track_caller]
fn just_the_astronaut(found: &[[f64; 4]]) -> [f64; 4] {
    let [face] = found else { panic!("expected one face, got {found:?}") };
    let overlap = iou(*face, ASTRONAUT_FACE);
    assert!(overlap >= 0.5, "IoU {overlap:.2} of {face:?} with the astronaut's face");
    *face
}

/// Width, height and RGB bytes of an 8-bit RGB PNG.
fn decode_png(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.color_type, info.bit_depth), (png::ColorType::Rgb, png::BitDepth::Eight));
    pixels.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, pixels)
}

#[test]
fn endpoints_and_schemas_come_from_wit_and_predict_negotiates_its_answer() {
    let served = serve();
    let app = send(served.addr, "GET", "/v1/apps/model-api", &[], b"").json();
    let names: Vec<&str> = app["functions"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["model-api.get-metadata", "model-api.warm", "model-api.predict", "model-api.train"]);

    // The OpenAPI operation is the function's own WIT-derived schemas, media answers included.
    let doc = send(served.addr, "GET", "/v1/openapi.json", &[], b"").json();
    let predict = &doc["paths"][format!("{FUNCTIONS}/model-api.predict")]["post"];
    let described = send(served.addr, "GET", &format!("{FUNCTIONS}/model-api.predict"), &[], b"").json();
    let params = &predict["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(params, &described["params"]);
    for param in ["image", "url", "min-confidence", "accept"] {
        assert!(params["properties"].get(param).is_some(), "{param} missing from {params}");
    }
    let result = &predict["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(result, &described["result"]);
    let cases: Vec<&str> =
        result["oneOf"].as_array().unwrap().iter().map(|c| c["required"][0].as_str().unwrap()).collect();
    assert_eq!(cases, ["faces", "image"]);
    assert!(predict["responses"]["200"]["content"].get("*/*").is_some(), "media answers are documented");

    let metadata = call(&served, "get-metadata", &[], json!({}));
    assert_eq!(metadata.status, 200, "{}", metadata.text());
    let metadata = metadata.json();
    assert_eq!((&metadata["name"], &metadata["model"]), (&json!("model-api"), &json!("blazeface")));
    assert_eq!(metadata["accept"], json!(["application/json", "image/png"]));
    let warm = call(&served, "warm", &[], json!({}));
    assert_eq!(
        warm.json(),
        json!({ "name": "blazeface", "description": "MediaPipe BlazeFace front 128x128", "ready": true })
    );

    // JSON: without an Accept header, with `Accept: application/json`, or `accept` in the body.
    let astronaut = image("astronaut.png");
    let face = just_the_astronaut(&faces(&call(&served, "predict", &[], predict_args(&astronaut, json!({})))));
    let accept_json = ["Accept: application/json"];
    just_the_astronaut(&faces(&call(&served, "predict", &accept_json, predict_args(&astronaut, json!({})))));
    let in_body = predict_args(&astronaut, json!({ "accept": "application/json", "min-confidence": 0.3 }));
    just_the_astronaut(&faces(&call(&served, "predict", &["Accept: image/png"], in_body)));
    let coffee = image("coffee.png");
    assert_eq!(faces(&call(&served, "predict", &[], predict_args(&coffee, json!({})))), Vec::<[f64; 4]>::new());

    // `Accept: image/png`: the astronaut as a PNG, changed only by the box's outline.
    let drawn = call(&served, "predict", &["Accept: image/png"], predict_args(&astronaut, json!({})));
    assert_eq!((drawn.status, drawn.header("content-type").as_deref()), (200, Some("image/png")), "{}", drawn.text());
    let (width, height, pixels) = decode_png(&drawn.body);
    let (original_width, original_height, original) = decode_png(&astronaut);
    assert_eq!((width, height), (original_width, original_height));
    let [left, top, right, bottom] = face.map(|edge| edge.round() as usize);
    let (mut changed, mut outside) = (0, Vec::new());
    for (i, (new, old)) in pixels.chunks_exact(3).zip(original.chunks_exact(3)).enumerate() {
        if new == old {
            continue;
        }
        let (x, y) = (i % width, i / width);
        let near_box = x + 1 >= left && x <= right && y + 1 >= top && y <= bottom;
        let inside = x >= left + 3 && x + 3 < right && y >= top + 3 && y + 3 < bottom;
        if new != [0, 255, 0] || !near_box || inside {
            outside.push((x, y, new.to_vec()));
        }
        changed += 1;
    }
    assert!(outside.is_empty(), "pixels changed away from the box's outline: {:?}", &outside[..outside.len().min(5)]);
    let outline = 2 * 2 * ((right - left) + (bottom - top));
    assert!(changed * 10 >= outline * 9, "{changed} pixels drawn, the outline has about {outline}");

    // Other types are refused, naming those there are.
    let zip = call(&served, "predict", &["Accept: application/zip"], predict_args(&astronaut, json!({})));
    assert_eq!(zip.code(), (422, "guest-error".into()));
    let message = zip.json()["error"].as_str().unwrap().to_string();
    assert!(message.contains("application/zip") && message.contains("application/json or image/png"), "{message}");

    // Bad input: clear errors.
    let not_image = call(&served, "predict", &[], predict_args(b"hello, not an image", json!({})));
    assert_eq!(not_image.code(), (422, "guest-error".into()));
    assert!(
        not_image.json()["error"].as_str().unwrap().starts_with("image: not a PNG or JPEG image"),
        "{}",
        not_image.text()
    );
    let too_sure = call(&served, "predict", &[], predict_args(&astronaut, json!({ "min-confidence": 1.5 })));
    assert_eq!(too_sure.json()["error"], "min-confidence: expected a number from 0 to 1, got 1.5");
    let untyped = call(&served, "predict", &[], json!({ "image": "x", "min-confidence": "high" }));
    assert_eq!(untyped.code(), (400, "bad-argument".into()));
}

#[test]
fn predict_fetches_its_image_by_url_from_a_granted_host() {
    let astronaut = image("astronaut.png");
    let png = astronaut.clone();
    let images = WebServer::start(move |request| match request.path.as_str() {
        "/astronaut.png" => Response::ok(png.clone()).header("content-type", "image/png"),
        "/old/astronaut.png" => Response::redirect("../astronaut.png"),
        _ => Response::new(404, "not here"),
    });
    let granted = granting(MODEL_API, "model-api", &[origin(&images)], "");
    let served = serve_apps(&[granted.path.as_str()], ServerConfig::default(), Duration::from_secs(5));
    let by_url = |path: &str, headers: &[&str]| call(&served, "predict", headers, json!({ "url": images.url(path) }));

    // The same face as from the bytes; the PNG answer too; a redirect on the granted host is followed.
    let from_bytes = faces(&call(&served, "predict", &[], predict_args(&astronaut, json!({}))));
    assert_eq!(faces(&by_url("/astronaut.png", &[])), from_bytes);
    let drawn = by_url("/astronaut.png", &["Accept: image/png"]);
    assert_eq!((drawn.status, drawn.header("content-type").as_deref()), (200, Some("image/png")), "{}", drawn.text());
    assert_eq!(decode_png(&drawn.body).0, decode_png(&astronaut).0);
    assert_eq!(faces(&by_url("/old/astronaut.png", &[])), from_bytes);
    let paths: Vec<String> = images.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/astronaut.png", "/astronaut.png", "/old/astronaut.png", "/astronaut.png"]);

    // Status errors and bad arguments are named.
    let missing = by_url("/missing.png", &[]);
    assert_eq!(missing.code(), (422, "guest-error".into()));
    assert_eq!(missing.json()["error"], format!("url: GET {} answered 404", images.url("/missing.png")));
    let both = call(&served, "predict", &[], predict_args(&astronaut, json!({ "url": images.url("/astronaut.png") })));
    assert_eq!(both.json()["error"], "give the image as `image` (its bytes) or as `url`, not both");
    let neither = call(&served, "predict", &[], json!({}));
    assert_eq!(neither.json()["error"], "no image: give `image` (PNG or JPEG bytes) or a `url` to fetch it from");
    let relative = call(&served, "predict", &[], json!({ "url": "/astronaut.png" }));
    assert_eq!(
        relative.json()["error"],
        r#"url: invalid URL "/astronaut.png": expected an absolute URL, `http://` or `https://`"#
    );

    // The example as shipped grants public image hosts only: the loopback server is refused.
    let shipped = serve();
    let url = images.url("/astronaut.png");
    let refused = call(&shipped, "predict", &[], json!({ "url": url }));
    assert_eq!(refused.code(), (422, "guest-error".into()));
    let message = refused.json()["error"].as_str().unwrap().to_string();
    assert!(message.starts_with(&format!("url: HTTP request to {url} denied (http-request-denied): ")), "{message}");
    assert_eq!(images.requests().len(), 5, "the refused request never reached the server");
}

#[test]
fn train_runs_as_a_job_and_calibrates_predicts_threshold() {
    let served = serve();
    let addr = served.addr;
    let train = |dataset: &str| {
        let path = format!("{FUNCTIONS}/model-api.train?async=true");
        let started = send(addr, "POST", &path, &[], json!({ "args": { "dataset": dataset } }).to_string().as_bytes());
        assert_eq!(started.status, 202, "{}", started.text());
        let id = started.json()["id"].as_str().unwrap().to_string();
        assert_eq!(started.header("location"), Some(format!("/v1/executions/{id}")));
        let record = send(addr, "GET", &format!("/v1/executions/{id}?wait=60s"), &[], b"").json();
        let logs = send(addr, "GET", &format!("/v1/executions/{id}/logs"), &[], b"").text();
        (record, logs)
    };

    // Nothing to learn from yet.
    let (empty, _) = train("training");
    assert_eq!(empty["status"], "failed", "{empty:#}");
    assert!(empty["error"]["error"].as_str().unwrap().contains("has no images to calibrate on"), "{empty:#}");

    let astronaut = image("astronaut.png");
    let mut ids = Vec::new();
    for (name, bytes) in [("astronaut.png", astronaut.clone()), ("coffee.png", image("coffee.png"))] {
        let path = format!("{ITEMS}?name={name}");
        let uploaded = send(addr, "POST", &path, &["Content-Type: image/png"], &bytes);
        assert_eq!(uploaded.status, 201, "{}", uploaded.text());
        ids.push(uploaded.json()["id"].as_str().unwrap().to_string());
    }
    let [left, top, right, bottom] = ASTRONAUT_FACE;
    let truth = json!([{ "geometry": { "box": { "left": left, "top": top, "right": right, "bottom": bottom } }, "label": "face" }]);
    let annotated = send(addr, "POST", &format!("{ITEMS}/{}/annotations", ids[0]), &[], truth.to_string().as_bytes());
    assert_eq!(annotated.status, 201, "{}", annotated.text());

    let (record, logs) = train("training");
    assert_eq!((&record["status"], &record["trigger"]), (&json!("succeeded"), &json!("async")), "{record:#}");
    let report = &record["output"];
    assert_eq!((&report["images"], &report["faces"], &report["f1"]), (&json!(2), &json!(1), &json!(1.0)), "{report}");
    assert_eq!((&report["precision"], &report["recall"]), (&json!(1.0), &json!(1.0)), "{report}");
    let threshold = report["threshold"].as_f64().unwrap();
    assert!(threshold > 0.05 && threshold < 1.0, "{report}");
    for line in [
        "image 1/2: astronaut.png: 1 face(s)",
        "image 2/2: coffee.png: 0 face(s)",
        "stored in kv model-api/min-confidence",
    ] {
        assert!(logs.contains(line), "{line:?} missing from {logs}");
    }

    // The threshold is in the KV store, and predict uses it when not given one.
    let kv = "/v1/apps/model-api/kv/model-api/min-confidence";
    let stored = send(addr, "GET", kv, &[], b"").text();
    assert_eq!(stored.parse::<f32>().unwrap(), threshold as f32, "{stored}");
    let predict = || faces(&call(&served, "predict", &[], predict_args(&astronaut, json!({}))));
    just_the_astronaut(&predict());
    assert_eq!(send(addr, "PUT", kv, &[], b"1").status, 204);
    assert_eq!(predict(), Vec::<[f64; 4]>::new(), "nothing is above a stored threshold of 1");
    assert_eq!(send(addr, "PUT", kv, &[], b"lots").status, 204);
    let bad = call(&served, "predict", &[], predict_args(&astronaut, json!({})));
    assert_eq!(bad.json()["error"], r#"kv model-api/min-confidence: expected a number from 0 to 1, got "lots""#);

    // A dataset the function is not granted: the job fails, saying so.
    let (denied, _) = train("secret");
    assert_eq!(denied["status"], "failed", "{denied:#}");
    assert_eq!(denied["error"]["code"], "guest-error", "{denied:#}");
    assert_eq!(denied["error"]["error"], r#"opening dataset "secret": access to the dataset denied"#, "{denied:#}");
}

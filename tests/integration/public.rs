//! Public exports, per-client rate limits and per-app CORS against a real `host serve --token`:
//! train-classifier's site makes its calls without a token (the same requests its script sends),
//! everything else of the app still needs one, one client past the app's `public-rate-limit` gets
//! `429` with `Retry-After` while a token holder goes on, and pages of the app's `cors-origins`
//! may call it while other origins are refused; the site, in headless Chromium without the token,
//! trains a model up to "Model Trained!". Also: a public `[[trigger.http]]` route is
//! limited the same way, and a `public` list naming no export of the component is a load error.

use std::time::Instant;

use serde_json::{Value, json};

use crate::common::{HELLO, ServeProcess, TRAIN_CLASSIFIER, host, manifest, python_tools, root};
use crate::digits::{digits, png};
use crate::server::{Answer, send};

const TOKEN: &str = "publ1c-t0ken";
const FUNCTIONS: &str = "/v1/apps/train-classifier/functions/train-classifier";

/// A call as the site's `call()` makes it: a same-origin `fetch` POST of JSON, without a token.
fn site_call(server: &ServeProcess, export: &str, args: Value) -> Answer {
    let origin = format!("Origin: http://{}", server.addr);
    let headers = [origin.as_str(), "Sec-Fetch-Site: same-origin", "Content-Type: application/json"];
    send(server.addr, "POST", &format!("{FUNCTIONS}.{export}"), &headers, args.to_string().as_bytes())
}

#[test]
fn train_classifiers_site_works_without_a_token_on_a_token_protected_server() {
    let data = tempfile::tempdir().unwrap();
    let server = ServeProcess::start_with(data.path(), None, &[TRAIN_CLASSIFIER], &["--token", TOKEN]);
    let (addr, auth) = (server.addr, format!("Authorization: Bearer {TOKEN}"));
    // The dataset goes up with the token: bucket writes are not public.
    for (i, (label, pixels)) in digits().iter().take(40).enumerate() {
        let key = format!("/v1/apps/train-classifier/buckets/datasets/digits/{label}/{i:04}.png");
        if i == 0 {
            assert_eq!(send(addr, "PUT", &key, &[], &png(pixels)).code(), (401, "unauthorized".into()));
        }
        assert_eq!(send(addr, "PUT", &key, &[&auth], &png(pixels)).status, 204, "{key}");
    }
    // The site's page and its two calls, without a token.
    assert_eq!(send(addr, "GET", "/", &[], b"").status, 200);
    // The client's bucket refills from its first call on.
    let started = Instant::now();
    let requested = site_call(&server, "request-training", json!({ "dataset": "digits" }));
    assert_eq!((requested.status, requested.json()), (200, json!("model-0001")), "{}", requested.text());
    let status = site_call(&server, "status", json!({ "id": "model-0001" }));
    assert_eq!(status.status, 200, "{}", status.text());
    assert!(status.json().as_str().unwrap().starts_with("Train"), "{}", status.text());
    let described = send(addr, "GET", &format!("{FUNCTIONS}.status"), &[], b"");
    assert_eq!((described.status, described.json()["name"].clone()), (200, json!("train-classifier.status")));

    // A non-public export, the app's description and its other routes still need the token.
    let classify = site_call(&server, "classify", json!({ "id": "model-0001", "image": "" }));
    assert_eq!(classify.code(), (401, "unauthorized".into()));
    assert_eq!(
        classify.json()["message"],
        "missing or wrong bearer token: send `Authorization: Bearer <token>`",
        "no word of public calls for an export that is not public"
    );
    for path in [format!("{FUNCTIONS}.classify"), "/v1/apps/train-classifier".into(), "/v1/apps".into()] {
        assert_eq!(send(addr, "GET", &path, &[], b"").code(), (401, "unauthorized".into()), "{path}");
    }
    // Jobs, enqueued calls and maps of a public export too, saying that only direct calls are public.
    let only_direct = "missing or wrong bearer token: send `Authorization: Bearer <token>`; only direct calls of this function are public: jobs, enqueued calls, map and starmap need a token";
    let args = json!({ "dataset": "digits" }).to_string();
    for (path, body) in [
        (format!("{FUNCTIONS}.request-training?async=true"), args.clone()),
        (format!("{FUNCTIONS}.request-training?enqueue=true"), args.clone()),
        (format!("{FUNCTIONS}.status/map"), json!({ "inputs": ["model-0001"] }).to_string()),
        (format!("{FUNCTIONS}.status/starmap"), json!({ "args": [["model-0001"]] }).to_string()),
    ] {
        let refused = send(addr, "POST", &path, &["Content-Type: application/json"], body.as_bytes());
        assert_eq!(refused.code(), (401, "unauthorized".into()), "{path}");
        assert_eq!(refused.json()["message"], only_direct, "{path}");
    }
    // The OpenAPI document says so: no token or a bearer token for the public exports' calls and
    // descriptions (with the 429 they may get), the document's bearer for the rest; and it is valid.
    let doc = send(addr, "GET", "/v1/openapi.json", &[&auth], b"");
    let paths = &doc.json()["paths"];
    let either = json!([{}, { "bearer": [] }]);
    for (export, security) in [("status", &either), ("request-training", &either), ("classify", &Value::Null)] {
        let path = &paths[format!("{FUNCTIONS}.{export}")];
        for method in ["post", "get"] {
            assert_eq!(&path[method]["security"], security, "{method} {export}");
            assert_eq!(path[method]["responses"]["429"].is_object(), !security.is_null(), "{method} {export}");
        }
        assert_eq!(paths[format!("{FUNCTIONS}.{export}/map")]["post"]["security"], Value::Null, "map {export}");
    }
    let file = data.path().join("openapi.json");
    std::fs::write(&file, &doc.body).unwrap();
    let out = std::process::Command::new(python_tools().join("openapi-spec-validator")).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    let job = send(addr, "POST", &format!("{FUNCTIONS}.status?async=true"), &[&auth], br#"{"id": "model-0001"}"#);
    assert_eq!(job.status, 202, "with the token, jobs of a public export run: {}", job.text());

    // Per-app CORS: a page of the app's `cors-origins` may call it, from another origin it may not.
    let preflight = |origin: &str| {
        let headers = [origin, "Access-Control-Request-Method: POST", "Access-Control-Request-Headers: content-type"];
        send(addr, "OPTIONS", &format!("{FUNCTIONS}.status"), &headers, b"")
    };
    let allowed = preflight("Origin: http://localhost:5173");
    assert_eq!(allowed.status, 204, "{}", allowed.text());
    assert_eq!(allowed.header("access-control-allow-origin").as_deref(), Some("http://localhost:5173"));
    assert_eq!(allowed.header("access-control-allow-headers").as_deref(), Some("content-type"));
    let cross = ["Origin: http://localhost:5173", "Sec-Fetch-Site: cross-site", "Content-Type: application/json"];
    let call = send(addr, "POST", &format!("{FUNCTIONS}.status"), &cross, br#"{"id": "model-0001"}"#);
    assert_eq!(call.status, 200, "{}", call.text());
    assert_eq!(call.header("access-control-allow-origin").as_deref(), Some("http://localhost:5173"));
    let refused = preflight("Origin: http://evil.example");
    assert_eq!(refused.code(), (403, "cross-origin".into()));
    assert_eq!(refused.header("access-control-allow-origin"), None);
    // The app's origins reach its own paths only.
    let elsewhere =
        send(addr, "GET", "/v1/apps", &["Origin: http://localhost:5173", "Sec-Fetch-Site: cross-site"], b"");
    assert_eq!(elsewhere.code(), (403, "cross-origin".into()));

    // The rate limit: 300 a minute per client, 4 taken above (request-training, status twice,
    // describe), refilled at 5 a second since.
    let mut allowed = 0;
    let limited = loop {
        let answer = site_call(&server, "status", json!({ "id": "model-0001" }));
        if answer.status != 200 {
            break answer;
        }
        allowed += 1;
        assert!(allowed < 1000, "never limited");
    };
    let refilled = (started.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    assert!((296..=296 + refilled).contains(&allowed), "{allowed} calls let through, {refilled} refilled");
    assert_eq!(limited.code(), (429, "rate-limited".into()), "{}", limited.text());
    assert_eq!(limited.header("retry-after").as_deref(), Some("1"));
    assert_eq!(limited.json()["retry_after"], json!(1));
    assert!(limited.json()["message"].as_str().unwrap().contains("(limit 300/min)"), "{}", limited.text());
    // A token holder is not limited.
    for _ in 0..5 {
        let with_token = send(addr, "POST", &format!("{FUNCTIONS}.status"), &[&auth], br#"{"id": "model-0001"}"#);
        assert_eq!(with_token.status, 200, "{}", with_token.text());
    }
    let metrics = send(addr, "GET", "/metrics", &[&auth], b"").text();
    assert!(metrics.contains("host_rate_limited_total{app=\"train-classifier\"} 1\n"), "{metrics}");
}

#[test]
fn the_site_trains_in_a_browser_on_a_token_protected_server() {
    let data = tempfile::tempdir().unwrap();
    let server = ServeProcess::start_with(data.path(), None, &[TRAIN_CLASSIFIER], &["--token", TOKEN]);
    let auth = format!("Authorization: Bearer {TOKEN}");
    for (i, (label, pixels)) in digits().iter().take(300).enumerate() {
        let key = format!("/v1/apps/train-classifier/buckets/datasets/digits/{label}/{i:04}.png");
        assert_eq!(send(server.addr, "PUT", &key, &[&auth], &png(pixels)).status, 204, "{key}");
    }
    // The page knows no token: its calls go through because they are public.
    let summary = crate::train_classifier::train_in_browser(&server.url(), "train-classifier-public.png");
    assert_eq!(summary["statuses"].as_array().unwrap().last(), Some(&json!("Model Trained!")), "{summary}");
    assert_eq!(summary["id"], "model-0001");
}

/// A manifest in `dir` of app `open`: hello with every export public, hello-http on a public
/// route, and `access`.
pub fn open_app(dir: &std::path::Path, access: &str) -> String {
    manifest(HELLO);
    let release = root().join("target/wasm32-wasip2/release");
    let text = format!(
        "[app]\nname = \"open\"\n\n[function.hello]\nsource = \"{}\"\npublic = true\n\n\
         [function.web]\nsource = \"{}\"\n\n[[trigger.http]]\nroute = \"/open-web\"\nfunction = \"web\"\npublic = true\n\n\
         [access]\n{access}\n",
        release.join("hello.wasm").display(),
        release.join("hello_http.wasm").display(),
    );
    let path = dir.join("host.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn public_routes_are_limited_per_client_and_get_the_apps_cors() {
    let data = tempfile::tempdir().unwrap();
    let app = open_app(data.path(), "public-rate-limit = \"3/h\"\ncors-origins = [\"https://site.example.com\"]");
    let server = ServeProcess::start_with(data.path(), None, &[&app], &["--token", TOKEN]);
    let (addr, auth) = (server.addr, format!("Authorization: Bearer {TOKEN}"));
    let site = "Origin: https://site.example.com";
    for _ in 0..3 {
        let answer = send(addr, "GET", "/open-web", &[site], b"");
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.header("access-control-allow-origin").as_deref(), Some("https://site.example.com"));
    }
    let limited = send(addr, "GET", "/open-web", &[], b"");
    assert_eq!(limited.code(), (429, "rate-limited".into()));
    // One call in 20 minutes: the next is 1200 s away.
    assert_eq!(limited.header("retry-after").as_deref(), Some("1200"));
    // The app's exports share the bucket; the token holder has none.
    let greet = send(addr, "POST", "/v1/apps/open/functions/hello.greet", &[], br#"[{"name": "Bo", "age": 2}]"#);
    assert_eq!(greet.code(), (429, "rate-limited".into()));
    assert_eq!(send(addr, "GET", "/open-web", &[&auth], b"").status, 200);
    // A preflight of the route from the app's origin is answered by the host; another origin's
    // reaches the guest as before (the route is not the host's API).
    let asked = [site, "Access-Control-Request-Method: POST"];
    let preflight = send(addr, "OPTIONS", "/open-web", &asked, b"");
    assert_eq!(preflight.status, 204);
    assert!(preflight.header("access-control-allow-methods").unwrap().contains("POST"));
    let other = send(addr, "GET", "/open-web", &["Origin: https://other.example", &auth], b"");
    assert_eq!((other.status, other.header("access-control-allow-origin")), (200, None));
}

#[test]
fn a_public_list_naming_no_export_is_a_load_error_listing_the_exports() {
    let dir = tempfile::tempdir().unwrap();
    let path = open_app(dir.path(), "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("public = true\n\n[function.web]", "public = [\"greet\", \"greeet\"]\n\n[function.web]");
    std::fs::write(&path, text).unwrap();
    let (_data, host) = host();
    let error = host.load(&path).err().expect("refused").to_string();
    assert_eq!(
        error,
        format!("invalid manifest {path}: function.hello.public: no export `greeet`: the exports are greet, noop")
    );
}

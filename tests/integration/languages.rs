//! Guests in Python, JavaScript and C beside the Rust one: the same calls give the same answers and
//! the same errors through the library, the CLI and `host serve`; toolchain-internal exports stay
//! hidden; WASI interfaces their runtimes import are linked, denied, and fail only the call that
//! uses them; Python and JavaScript reach granted hosts through `wasi:http` and no other; a second
//! host does not compile them again.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use host::server::ServerConfig;
use host::{App, CallError, Error};
use serde_json::{Value, json};

use crate::cli::text;
use crate::common::{
    C_HELLO, HELLO, JS_FETCH, JS_HELLO, PYTHON_FETCH, PYTHON_HELLO, PYTHON_SANDBOX, ServeProcess, compiled_cache, host,
    host_on, root,
};
use crate::server::{send, serve_apps};
use crate::web::{Response, WebServer};

/// The greeter in Rust, Python, JavaScript and C.
const GREETERS: [&str; 4] = [HELLO, PYTHON_HELLO, JS_HELLO, C_HELLO];
/// The greeters that also use host capabilities (world `hello-plus`).
const HELLO_PLUS: [&str; 2] = [PYTHON_HELLO, JS_HELLO];
/// The outbound HTTP clients in Python and JavaScript (world `example:fetch/fetcher`).
const FETCHERS: [&str; 2] = [PYTHON_FETCH, JS_FETCH];

/// Calls that must fail on their types alone, before any guest runs.
const BAD_ARGUMENTS: [&str; 5] = [
    r#"{"who": {"name": "Ada", "age": "ten"}}"#,
    r#"{"who": {"name": "Ada", "age": 300}}"#,
    r#"{"who": {"name": "Ada"}}"#,
    r#"{"who": {"name": "Ada", "age": 1, "email": "a@b"}}"#,
    r#"[{"name": "Ada", "age": 1}, 2]"#,
];

/// The absolute path of a manifest, with its guests built and compiled into the shared cache: all
/// of this file's guests at once, first, so that parallel tests do not each compile the big ones.
fn compiled(relative: &str) -> PathBuf {
    static COMPILED: OnceLock<()> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let data = tempfile::tempdir().unwrap();
        let host = host_on(data.path());
        for guest in GREETERS.iter().chain(&FETCHERS).chain([&PYTHON_SANDBOX]) {
            host.load(crate::common::manifest(guest)).unwrap();
        }
    });
    crate::common::manifest(relative)
}

/// The greeting the Rust greeter gives (the reference the other languages must match).
fn expected_greeting(name: &str, age: u8) -> Value {
    json!(format!("Hello, {name}! You are {age}."))
}

/// The 8-bit luma OpenCV's `COLOR_BGR2GRAY` gives, in floating point: the fixed-point guests must
/// agree with it to the rounding.
fn luma(r: u8, g: u8, b: u8) -> f64 {
    0.299 * f64::from(r) + 0.587 * f64::from(g) + 0.114 * f64::from(b)
}

async fn call(app: &App, function: &str, args: Value) -> Result<Value, Error> {
    app.function(function).unwrap().call(args).await
}

fn guest_error(outcome: Result<Value, Error>) -> Value {
    match outcome {
        Err(Error::Call(CallError::Guest { value })) => value,
        other => panic!("expected the guest's error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_language_greets_alike_and_refuses_the_same_bad_arguments() {
    let (_data, host) = host();
    let mut refusals: Vec<Vec<String>> = Vec::new();
    for greeter in GREETERS {
        let app = host.load(compiled(greeter)).unwrap();
        let who = json!({ "who": { "name": "Ada", "age": 36 } });
        assert_eq!(call(&app, "hello.greet", who).await.unwrap(), expected_greeting("Ada", 36), "{greeter}");
        let nick = json!([{ "name": "Grace", "age": 255, "nickname": "Amazing Grace" }]);
        assert_eq!(call(&app, "hello.greet", nick).await.unwrap(), expected_greeting("Amazing Grace", 255));
        let zero = json!([{ "name": "Zed", "age": 0, "nickname": null }]);
        assert_eq!(call(&app, "hello.greet", zero).await.unwrap(), expected_greeting("Zed", 0), "{greeter}");
        let empty = call(&app, "hello.greet", json!({ "who": { "name": "", "age": 1 } })).await;
        assert_eq!(guest_error(empty), json!("name must not be empty"), "{greeter}");
        assert_eq!(call(&app, "hello.noop", json!({})).await.unwrap(), json!(null), "{greeter}");
        let mut refused = Vec::new();
        for bad in BAD_ARGUMENTS {
            match call(&app, "hello.greet", serde_json::from_str(bad).unwrap()).await {
                Err(Error::Argument(error)) => refused.push(error.to_string()),
                other => panic!("{greeter}: {bad} should be refused, got {other:?}"),
            }
        }
        refusals.push(refused);
    }
    assert!(refusals[0][0].contains("who.age") && refusals[0][2].contains("age"), "{:?}", refusals[0]);
    for (greeter, refused) in GREETERS.iter().zip(&refusals) {
        assert_eq!(refused, &refusals[0], "{greeter} refuses bad arguments unlike the Rust greeter");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn toolchain_exports_are_hidden_and_never_callable() {
    let (_data, host) = host();
    for greeter in GREETERS {
        let app = host.load(compiled(greeter)).unwrap();
        let names: Vec<&str> = app.functions().iter().map(|f| f.name()).collect();
        let expected: &[&str] = if HELLO_PLUS.contains(&greeter) {
            &["hello.count", "hello.greeting", "hello.save-note", "hello.gray", "hello.greet", "hello.noop"]
        } else {
            &["hello.greet", "hello.noop"]
        };
        assert_eq!(names, expected, "{greeter}");
        for internal in ["hello.init", "hello.exports.init"] {
            let error = app.function(internal).err().expect("toolchain export callable").to_string();
            assert!(error.contains(internal) && error.contains("hello.greet"), "{error}");
        }
    }
    // `host inspect` hides them too; the components do export them (as `wasm-tools` shows).
    for (wasm, internal) in [("python-hello.wasm", "export exports: interface"), ("js-hello.wasm", "export init: func")]
    {
        let wasm = root().join("target/guests").join(wasm);
        let out = cli(&["inspect", "--json", wasm.to_str().unwrap()]);
        let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
        let exports: Vec<&str> = listed.as_array().unwrap().iter().map(|e| e["export"].as_str().unwrap()).collect();
        assert_eq!(exports, ["count", "greeting", "save-note", "gray", "greet", "noop"]);
        let wit = Command::new(root().join("examples/toolchain/run"))
            .args(["wasm-tools", "component", "wit"])
            .arg(&wasm)
            .output()
            .unwrap();
        assert!(text(&wit.stdout).contains(internal), "{wasm:?} lacks `{internal}`: {}", text(&wit.stderr));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn python_and_javascript_use_kv_config_and_buckets_alike() {
    let (data, host) = host();
    let rgb: Vec<u8> = (0..3 * 700u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let anchors = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0];
    let mut grays = Vec::new();
    for greeter in HELLO_PLUS {
        let app = host.load(compiled(greeter)).unwrap();
        let name = app.name().to_string();
        assert_eq!(call(&app, "hello.count", json!(["visits", 2])).await.unwrap(), json!(2), "{greeter}");
        assert_eq!(call(&app, "hello.count", json!(["visits", -5])).await.unwrap(), json!(-3), "{greeter}");
        let configured = &app.manifest().functions["hello"].config["greeting"];
        assert_eq!(call(&app, "hello.greeting", json!([])).await.unwrap(), json!(configured));
        let text = "héllo ✓";
        let size = call(&app, "hello.save-note", json!(["a/b.txt", text])).await.unwrap();
        assert_eq!(size, json!(text.len()), "{greeter}");
        assert_eq!(std::fs::read_to_string(host.buckets_dir(&name).join("notes/a/b.txt")).unwrap(), text);
        let bad_key = guest_error(call(&app, "hello.save-note", json!(["../x", "y"])).await);
        assert!(bad_key.as_str().unwrap().starts_with("invalid key: key \"../x\""), "{greeter}: {bad_key}");

        use base64::Engine as _;
        let decode = |v: Value| base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        let gray = decode(call(&app, "hello.gray", json!([anchors])).await.unwrap());
        assert_eq!(gray, [76, 150, 29, 255, 0], "{greeter}");
        let gray = decode(call(&app, "hello.gray", json!([rgb])).await.unwrap());
        assert_eq!(gray.len(), 700);
        for (g, p) in gray.iter().zip(rgb.chunks(3)) {
            assert!((f64::from(*g) - luma(p[0], p[1], p[2])).abs() <= 0.5 + 1e-3, "{greeter}: {p:?} -> {g}");
        }
        grays.push(gray);
        let odd = guest_error(call(&app, "hello.gray", json!([[1, 2]])).await);
        assert_eq!(odd, json!("rgb has 2 bytes: not whole pixels of 3 bytes (R, G, B)"), "{greeter}");

        // The same component without grants or config: each capability refused with one message.
        let bare = data.path().join(format!("{name}-bare.toml"));
        let source = app.manifest().dir().join(&app.manifest().functions["hello"].source);
        std::fs::write(&bare, format!("[app]\nname = \"{name}-bare\"\n[function.hello]\nsource = {:?}\n", source))
            .unwrap();
        let bare = host.load(&bare).unwrap();
        assert_eq!(guest_error(call(&bare, "hello.count", json!(["visits", 1])).await), json!("access denied"));
        assert_eq!(guest_error(call(&bare, "hello.save-note", json!(["n", "t"])).await), json!("access denied"));
        let unset = guest_error(call(&bare, "hello.greeting", json!([])).await);
        assert_eq!(unset, json!("config key \"greeting\" is not set"), "{greeter}");
    }
    assert_eq!(grays[0], grays[1], "Python and JavaScript disagree on grayscale");
}

/// The `host` binary with the shared compiled-component cache and a fresh data dir.
fn cli(args: &[&str]) -> Output {
    let data = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_host"))
        .arg("--data")
        .arg(data.path())
        .arg("--cache")
        .arg(compiled_cache())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn every_language_answers_alike_through_the_cli_locally_and_against_host_serve() {
    let data = tempfile::tempdir().unwrap();
    let manifests = GREETERS.map(compiled);
    let server = ServeProcess::start(data.path(), None, &GREETERS);
    let url = server.url();
    let mut refusals = Vec::new();
    for (greeter, path) in GREETERS.iter().zip(&manifests) {
        let app = host::manifest::Manifest::load(path).unwrap().app;
        let remote = format!("{app}/hello.greet");
        let local = ["call", "-f", path.to_str().unwrap(), "hello.greet"];
        for command in [&local[..], &["call", "--remote", &url, &remote]] {
            let out = cli(&[command, &[r#"{"who": {"name": "Ada", "age": 36}}"#]].concat());
            assert!(out.status.success(), "{greeter} {command:?}: {}", text(&out.stderr));
            assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), expected_greeting("Ada", 36));
            let out = cli(&[command, &[r#"[{"name": "", "age": 1}]"#]].concat());
            assert_eq!(out.status.code(), Some(1), "{greeter} {command:?}");
            assert!(text(&out.stderr).contains("name must not be empty"), "{greeter}: {}", text(&out.stderr));
            let out = cli(&[command, &[BAD_ARGUMENTS[0]]].concat());
            assert_eq!(out.status.code(), Some(2), "{greeter} {command:?}");
            assert!(out.stdout.is_empty());
            refusals.push(text(&out.stderr));
        }
        let out = cli(&["call", "-f", path.to_str().unwrap(), "hello.init"]);
        assert_eq!(out.status.code(), Some(2), "{greeter}: toolchain export called");
        let out = cli(&["call", "--remote", &url, &format!("{app}/hello.init")]);
        assert_eq!(out.status.code(), Some(2), "{greeter}: toolchain export called on the server");
    }
    assert!(refusals[0].contains(r#"argument who.age: expected u8, got "ten""#), "{}", refusals[0]);
    for (local, remote) in refusals.iter().step_by(2).zip(refusals.iter().skip(1).step_by(2)) {
        assert_eq!(local, &refusals[0]);
        assert!(remote.contains(r#"who.age: expected u8, got "ten""#), "{remote}");
        assert_eq!(remote, &refusals[1]);
    }
}

#[test]
fn every_language_answers_alike_through_the_server() {
    let server = serve_apps(&GREETERS, ServerConfig::default(), Duration::from_secs(5));
    let mut refusals = Vec::new();
    for greeter in GREETERS {
        let app = host::manifest::Manifest::load(compiled(greeter)).unwrap().app;
        let path = format!("/v1/apps/{app}/functions/hello.greet");
        let answer = send(server.addr, "POST", &path, &[], br#"{"who": {"name": "Ada", "age": 36}}"#);
        assert_eq!((answer.status, answer.json()), (200, expected_greeting("Ada", 36)), "{greeter}");
        let answer = send(server.addr, "POST", &path, &[], br#"[{"name": "", "age": 1}]"#);
        assert_eq!(answer.status, 422, "{greeter}: {}", answer.text());
        assert!(answer.text().contains("name must not be empty"), "{greeter}: {}", answer.text());
        let answer = send(server.addr, "POST", &path, &[], BAD_ARGUMENTS[0].as_bytes());
        assert_eq!(answer.status, 400, "{greeter}");
        refusals.push(answer.json());
        let init = send(server.addr, "POST", &format!("/v1/apps/{app}/functions/hello.init"), &[], b"{}");
        assert_eq!(init.status, 404, "{greeter}: toolchain export reachable");
    }
    assert!(refusals.iter().all(|r| r == &refusals[0]), "{refusals:#?}");
    let openapi = send(server.addr, "GET", "/v1/openapi.json", &[], b"").json();
    let paths: Vec<&String> = openapi["paths"].as_object().unwrap().keys().collect();
    assert!(paths.iter().any(|p| p.contains("python-hello/functions/hello.gray")), "{paths:?}");
    assert!(!paths.iter().any(|p| p.contains("init")), "a toolchain export is documented: {paths:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wasi_imports_are_denied_at_use_and_fail_only_that_call() {
    let (_data, host) = host();
    let app = host.load(compiled(PYTHON_SANDBOX)).unwrap();
    let read = guest_error(call(&app, "sandbox.read-file", json!([compiled(PYTHON_SANDBOX)])).await);
    assert!(read.as_str().unwrap().starts_with("FileNotFoundError"), "{read}");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect = guest_error(call(&app, "sandbox.connect", json!(["127.0.0.1", port])).await);
    assert!(connect.as_str().unwrap().starts_with("PermissionError"), "{connect}");
    assert!(listener.accept().is_err(), "the guest reached a loopback listener");
    assert_eq!(call(&app, "sandbox.environment", json!([])).await.unwrap(), json!([]));
    let greeter = host.load(compiled(PYTHON_HELLO)).unwrap();
    let who = json!([{ "name": "After", "age": 1 }]);
    assert_eq!(call(&greeter, "hello.greet", who).await.unwrap(), expected_greeting("After", 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn python_and_javascript_are_refused_hosts_not_granted_before_connecting() {
    let server = WebServer::start(|_| Response::ok("must not be reached"));
    let (_data, host) = host();
    for fetcher in FETCHERS {
        let app = host.load(compiled(fetcher)).unwrap();
        let names: Vec<&str> = app.functions().iter().map(|f| f.name()).collect();
        assert_eq!(names, ["fetch.fetch-text"], "{fetcher}");
        let refused = guest_error(call(&app, "fetch.fetch-text", json!([server.url("/")])).await);
        assert_eq!(refused, json!("HTTP-request-denied"), "{fetcher}");
        let bad_url = guest_error(call(&app, "fetch.fetch-text", json!(["not a url"])).await);
        assert_eq!(bad_url, json!("HTTP-request-URI-invalid"), "{fetcher}");
    }
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[test]
fn a_second_host_loads_the_big_components_without_compiling() {
    let data = tempfile::tempdir().unwrap();
    let host = host_on(data.path());
    for guest in GREETERS.iter().chain(&FETCHERS) {
        host.load(compiled(guest)).unwrap();
    }
    assert_eq!(host.compilations(), 0, "a new host compiled a cached component again");
    let cached = |wasm: &Path| {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(std::fs::read(wasm).unwrap());
        let prefix: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::read_dir(compiled_cache())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&prefix))
    };
    for wasm in ["python-hello.wasm", "js-hello.wasm", "c-hello.wasm", "python-fetch.wasm", "js-fetch.wasm"] {
        assert!(cached(&root().join("target/guests").join(wasm)), "{wasm} is not in the cache");
    }
}

/// A manifest in `dir` for the fetcher `relative`'s component, granted `http`, with response bodies
/// capped at 1 KiB.
fn granted(dir: &Path, relative: &str, http: &str) -> PathBuf {
    let manifest = host::manifest::Manifest::load(compiled(relative)).unwrap();
    let source = manifest.dir().join(&manifest.functions["fetch"].source);
    let path = dir.join(format!("{}-granted.toml", manifest.app));
    let text = format!(
        "[app]\nname = \"{}-granted\"\n[outbound]\nmax-response-body = \"1KiB\"\n\
         [function.fetch]\nsource = {source:?}\ngrants = {{ http = [{http:?}] }}\n",
        manifest.app
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn python_and_javascript_reach_a_granted_host_and_no_other() {
    let granted_server = WebServer::start(|request| match request.path.as_str() {
        "/greeting?lang=fr" => Response::ok("bonjour ✓"),
        "/big" => Response::ok(vec![b'x'; 4096]),
        _ => Response::new(404, "no such page"),
    });
    let other = WebServer::start(|_| Response::ok("must not be reached"));
    let (data, host) = host();
    for fetcher in FETCHERS {
        let app = host.load(granted(data.path(), fetcher, &format!("http://{}", granted_server.addr()))).unwrap();
        let fetch = |url: String| call(&app, "fetch.fetch-text", json!([url]));
        let page = fetch(granted_server.url("/greeting?lang=fr")).await.unwrap();
        assert_eq!(page, json!("200 bonjour ✓"), "{fetcher}");
        assert_eq!(fetch(granted_server.url("/missing")).await.unwrap(), json!("404 no such page"), "{fetcher}");
        let big = guest_error(fetch(granted_server.url("/big")).await);
        assert_eq!(big, json!("HTTP response body size exceeds limit: 1024 bytes"), "{fetcher}");
        assert_eq!(guest_error(fetch(other.url("/")).await), json!("HTTP-request-denied"), "{fetcher}");
    }
    let seen: Vec<String> = granted_server.requests().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(seen, ["GET /greeting?lang=fr", "GET /missing", "GET /big"].repeat(2));
    assert!(other.requests().is_empty(), "{:?}", other.requests());
}

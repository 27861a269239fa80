//! `host serve` in-process on a real loopback socket: the REST API, routes, sites, auth, limits,
//! operator endpoints, metrics and graceful shutdown.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use host::server::ServerConfig;
use serde_json::{Value, json};

use crate::common::{COUNTER, HELLO, HELLO_HTTP, HOSTILE, HTTP_HOSTILE, host, manifest};

/// A server on a free loopback port, stopped (gracefully) when dropped or by [`Served::stop`].
pub struct Served {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    finished: Option<std::thread::JoinHandle<bool>>,
    _data: tempfile::TempDir,
}

impl Served {
    /// Start shutting down, wait for the server to return; whether every request finished.
    pub fn stop(&mut self) -> bool {
        let _ = self.stop.take().map(|s| s.send(()));
        self.finished.take().is_none_or(|f| f.join().unwrap())
    }
}

impl Drop for Served {
    /// Stop the server and wait until its host is dropped: the data dir is deleted right after,
    /// and a sled database whose folder vanished before its last flush never finishes flushing.
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        if let Some(finished) = self.finished.take() {
            let _ = finished.join();
        }
    }
}

/// Serve the example and test apps with `config`; requests in flight get `grace` at shutdown.
pub fn serve_with(config: ServerConfig, grace: Duration) -> Served {
    serve_apps(&[HELLO, COUNTER, HOSTILE, HELLO_HTTP, HTTP_HOSTILE], config, grace)
}

/// Serve the apps of `manifests` with `config`, their triggers running.
pub fn serve_apps(manifests: &[&str], config: ServerConfig, grace: Duration) -> Served {
    let (data, host) = host();
    let apps = manifests.iter().map(|m| host.load(manifest(m)).unwrap());
    let config = ServerConfig { shutdown_grace: grace, ..config };
    let deployments = crate::common::deployments(&host, apps.collect());
    let router = host::server::router(deployments.clone(), config.clone()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let finished = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            // As `host serve` does: the apps' triggers run on the server's runtime.
            deployments.running().start().await.unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let shutdown = async move {
                let _ = stopped.await;
            };
            host::server::serve(&host, listener, router, &config, shutdown).await.unwrap()
        })
    });
    Served { addr, stop: Some(stop), finished: Some(finished), _data: data }
}

fn serve() -> Served {
    serve_with(ServerConfig::default(), Duration::from_secs(5))
}

/// One HTTP/1.1 answer.
pub struct Answer {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
    /// Status and the JSON error code.
    pub fn code(&self) -> (u16, String) {
        (self.status, self.json()["code"].as_str().unwrap_or("").to_string())
    }
}

/// How long [`send`] waits for more of an answer: far more than any test's request takes.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// Send one request with extra header lines; read the whole answer (chunked bodies decoded).
pub fn send(addr: SocketAddr, method: &str, path: &str, headers: &[&str], body: &[u8]) -> Answer {
    try_send(addr, method, path, headers, body).unwrap()
}

/// [`send`], with an error instead of a panic when the connection fails, closes before a whole
/// answer head arrived (a server killed mid-request), or stays silent for [`ANSWER_TIMEOUT`].
pub fn try_send(addr: SocketAddr, method: &str, path: &str, headers: &[&str], body: &[u8]) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(addr)?;
    // A server that never answers fails the test instead of hanging the whole run.
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    if !headers.iter().any(|h| h.to_ascii_lowercase().starts_with("host:")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    // A reset after the answer (a server refusing a body it did not read) still leaves the answer.
    if let Err(e) = stream.read_to_end(&mut response)
        && matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
    {
        return Err(std::io::Error::new(e.kind(), format!("no answer from {addr} within {ANSWER_TIMEOUT:?}")));
    }
    let incomplete = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no complete HTTP answer head");
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(incomplete)?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut body = response[split + 4..].to_vec();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(incomplete)?;
    let (_, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
    let answer = Answer { status, headers: headers.to_string(), body: Vec::new() };
    if answer.header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        body = dechunk(&body);
    }
    Ok(Answer { body, ..answer })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&data[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 4 + size..];
    }
    out
}

fn get(addr: SocketAddr, path: &str) -> Answer {
    send(addr, "GET", path, &[], b"")
}

fn post(addr: SocketAddr, path: &str, body: &[u8]) -> Answer {
    send(addr, "POST", path, &["Content-Type: application/json"], body)
}

#[test]
fn invoke_returns_results_and_named_errors() {
    let server = serve();
    let addr = server.addr;
    let greet = "/v1/apps/hello/functions/hello.greet";
    let ok = post(addr, greet, br#"{"who": {"name": "Ada", "age": 36}}"#);
    assert_eq!((ok.status, ok.json()), (200, json!("Hello, Ada! You are 36.")));
    assert!(ok.header("server-timing").is_some_and(|t| t.starts_with("call;dur=")));

    let bad = post(addr, greet, br#"{"who": {"name": "Ada", "age": "ten"}}"#);
    assert_eq!(bad.code(), (400, "bad-argument".into()));
    assert_eq!(bad.json()["message"], r#"argument who.age: expected u8, got "ten""#);
    assert_eq!(bad.json()["path"], "who.age");
    assert_eq!(post(addr, greet, b"{nope").code(), (400, "bad-json".into()));
    let refused = post(addr, greet, br#"[{"name": "", "age": 1}]"#);
    assert_eq!(refused.code(), (422, "guest-error".into()));
    assert_eq!(refused.json()["error"], "name must not be empty");

    let unknown = post(addr, "/v1/apps/hello/functions/hello.wave", b"{}");
    assert_eq!(unknown.code(), (404, "unknown-function".into()));
    assert_eq!(unknown.json()["available"], json!(["hello.greet", "hello.noop"]));
    assert_eq!(post(addr, "/v1/apps/nope/functions/x", b"{}").code(), (404, "unknown-app".into()));
    assert_eq!(get(addr, "/elsewhere").code(), (404, "not-found".into()));
    // The framework's own errors are JSON too.
    let wrong_method = send(addr, "DELETE", "/v1/apps", &[], b"");
    assert_eq!(wrong_method.code(), (405, "method-not-allowed".into()));
    assert_eq!(get(addr, "/v1/apps/counter/buckets/notes?limit=lots").code(), (400, "bad-request".into()));

    assert_eq!(post(addr, "/v1/apps/hostile/functions/hostile.spin", b"").code(), (504, "timeout".into()));
    assert_eq!(
        post(addr, "/v1/apps/hostile/functions/hostile.bomb", br#"{"mib": 64}"#).code(),
        (500, "memory-limit".into())
    );
    // The server carries on, and state persists between requests.
    let counter = "/v1/apps/counter/functions/counter.increment";
    assert_eq!(post(addr, counter, br#"["hits", 2]"#).json(), json!(2));
    assert_eq!(post(addr, counter, br#"["hits", 2]"#).json(), json!(4));
}

#[test]
fn apps_and_functions_are_listed_with_schemas_routes_and_sites() {
    let server = serve();
    let apps = get(server.addr, "/v1/apps");
    assert_eq!(apps.status, 200);
    let apps = apps.json();
    let names: Vec<&str> = apps.as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["counter", "hello", "hello-http", "hostile", "http-hostile"]);
    let greet = get(server.addr, "/v1/apps/hello/functions/hello.greet").json();
    assert_eq!(greet["params"]["required"], json!(["who"]));
    assert_eq!(greet["result"], json!({ "type": "string" }));
    assert_eq!(greet["paused"], json!(false));
    let web = get(server.addr, "/v1/apps/http-hostile").json();
    assert_eq!(web["functions"], json!([]), "a wasi:http handler has no JSON-callable exports");
    assert_eq!(web["routes"][0], json!({ "route": "/web/...", "function": "web", "public": false }));
    assert_eq!(web["site"], json!("/files"));
}

#[test]
fn wasi_http_routes_run_each_request_in_its_own_instance() {
    let server = serve();
    let addr = server.addr;
    let hello = get(addr, "/hello?name=Ada");
    assert_eq!((hello.status, hello.text()), (200, "Hello, Ada!\n".to_string()));
    assert_eq!(hello.header("content-type").as_deref(), Some("text/plain; charset=utf-8"));
    let echo = send(addr, "POST", "/hello", &[], b"make it loud");
    assert_eq!(echo.text(), "MAKE IT LOUD");
    // `/web/...` matches the subtree; `/hello` is exact.
    assert_eq!(get(addr, "/web/a/b").text(), "ok Method::Get /web/a/b");
    assert_eq!(get(addr, "/web").text(), "ok Method::Get /web");
    assert_eq!(get(addr, "/hello/more").code(), (404, "not-found".into()));
    assert_eq!(get(addr, "/webby").code(), (404, "not-found".into()));
    // A trap fails that request only.
    let trapped = get(addr, "/web/trap");
    assert_eq!(trapped.code(), (500, "trap".into()));
    // Route answers may be public: no backtrace in the body (it is in the server log).
    assert_eq!(trapped.json()["message"], "the handler failed (trap); details are in the server log");
    assert_eq!(get(addr, "/web/after").text(), "ok Method::Get /web/after");
    assert_eq!(get(addr, "/web/spin").code(), (504, "timeout".into()));
    // Outgoing HTTP is denied.
    assert_eq!(get(addr, "/web/fetch").text(), "fetch refused: ErrorCode::HttpRequestDenied");
    // Bodies over the cap are refused before the guest sees them.
    let big = vec![b'x'; host::server::MAX_BODY + 1];
    assert_eq!(send(addr, "POST", "/hello", &[], &big).code(), (413, "body-too-large".into()));
    let metrics = get(addr, "/metrics").text();
    for line in [
        r#"host_calls_total{app="http-hostile",function="web",outcome="trap"} 1"#,
        r#"host_calls_total{app="http-hostile",function="web",outcome="timeout"} 1"#,
        r#"host_calls_total{app="hello-http",function="hello-http",outcome="ok"} 2"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

#[test]
fn sites_serve_files_with_their_types_and_nothing_outside() {
    let server = serve();
    let addr = server.addr;
    let redirect = get(addr, "/files");
    assert_eq!((redirect.status, redirect.header("location").as_deref()), (308, Some("/files/")));
    let index = get(addr, "/files/");
    assert_eq!((index.status, index.header("content-type").as_deref()), (200, Some("text/html; charset=utf-8")));
    assert!(index.text().contains("<h1>Index</h1>"));
    let css = get(addr, "/files/sub/style.css");
    assert_eq!((css.status, css.header("content-type").as_deref()), (200, Some("text/css; charset=utf-8")));
    assert_eq!(css.text(), "body { color: teal }\n");
    // A symlink pointing out of the folder, `..` (raw and encoded), absolute paths: all not found.
    for path in
        ["/files/escape.txt", "/files/../host.toml", "/files/%2e%2e/host.toml", "/files//etc/passwd", "/files/missing"]
    {
        let answer = get(addr, path);
        assert!(matches!(answer.status, 400 | 404), "{path}: {}", answer.status);
        assert!(!answer.text().contains("[app]"), "{path} leaked a file outside the site");
    }
    assert_eq!(send(addr, "POST", "/files/", &[], b"").code(), (405, "method-not-allowed".into()));
}

#[test]
fn a_token_guards_the_api_metrics_and_private_routes() {
    let config = ServerConfig { token: Some("s3cret-token".into()), ..ServerConfig::default() };
    let server = serve_with(config, Duration::from_secs(5));
    let addr = server.addr;
    let auth = "Authorization: Bearer s3cret-token";
    for path in ["/v1/apps", "/metrics", "/v1/openapi.json", "/web/x"] {
        let refused = get(addr, path);
        assert_eq!(refused.code(), (401, "unauthorized".into()), "{path}");
        assert_eq!(refused.header("www-authenticate").as_deref(), Some("Bearer"));
        assert_eq!(send(addr, "GET", path, &["Authorization: Bearer wrong-token!"], b"").status, 401, "{path}");
        assert_eq!(send(addr, "GET", path, &[auth], b"").status, 200, "{path}");
    }
    // Public routes, sites, pages and the health check need no token.
    for path in ["/open", "/hello", "/files/", "/healthz", "/ui", "/docs"] {
        assert_eq!(get(addr, path).status, 200, "{path}");
    }
    let call = send(addr, "POST", "/v1/apps/hello/functions/hello.greet", &[auth], br#"[{"name": "Bo", "age": 2}]"#);
    assert_eq!(call.json(), json!("Hello, Bo! You are 2."));
}

#[test]
fn operators_read_and_write_kv_and_buckets_that_guests_see() {
    let server = serve();
    let addr = server.addr;
    // A counter written by a guest is readable as its 8-byte little-endian value.
    post(addr, "/v1/apps/counter/functions/counter.increment", br#"["visits", 5]"#);
    let raw = get(addr, "/v1/apps/counter/kv/default/visits");
    assert_eq!((raw.status, raw.header("content-type").as_deref()), (200, Some("application/octet-stream")));
    assert_eq!(raw.body, 5i64.to_le_bytes());
    // An operator's write is what the guest reads next.
    assert_eq!(send(addr, "PUT", "/v1/apps/counter/kv/default/visits", &[], &41i64.to_le_bytes()).status, 204);
    assert_eq!(post(addr, "/v1/apps/counter/functions/counter.increment", br#"["visits", 1]"#).json(), json!(42));
    assert_eq!(send(addr, "PUT", "/v1/apps/counter/kv/default/a%2Fb", &[], b"slash").status, 204);
    assert_eq!(
        get(addr, "/v1/apps/counter/kv/default?prefix=").json(),
        json!({ "keys": ["a/b", "visits"], "cursor": null })
    );
    assert_eq!(get(addr, "/v1/apps/counter/kv/default/a%2Fb").text(), "slash");
    assert_eq!(send(addr, "DELETE", "/v1/apps/counter/kv/default/visits", &[], b"").status, 204);
    assert_eq!(get(addr, "/v1/apps/counter/kv/default/visits").code(), (404, "no-such-key".into()));
    let unknown = get(addr, "/v1/apps/counter/kv/other");
    assert_eq!(unknown.code(), (404, "unknown-store".into()));
    assert_eq!(unknown.json()["available"], json!(["default"]));

    assert_eq!(send(addr, "PUT", "/v1/apps/counter/buckets/notes/todo/today", &[], b"write tests").status, 204);
    assert_eq!(
        post(addr, "/v1/apps/counter/functions/counter.read-note", br#"["todo/today"]"#).json(),
        json!("write tests")
    );
    post(addr, "/v1/apps/counter/functions/counter.save-note", br#"["todo/later", "ship it"]"#);
    assert_eq!(get(addr, "/v1/apps/counter/buckets/notes/todo/later").text(), "ship it");
    assert_eq!(
        get(addr, "/v1/apps/counter/buckets/notes?prefix=todo/&limit=1").json(),
        json!({ "keys": ["todo/later"], "cursor": "todo/later" })
    );
    assert_eq!(
        get(addr, "/v1/apps/counter/buckets/notes?prefix=todo/&cursor=todo/later").json(),
        json!({ "keys": ["todo/today"], "cursor": null })
    );
    assert_eq!(
        send(addr, "PUT", "/v1/apps/counter/buckets/notes/a%2F..%2Fb", &[], b"x").code(),
        (400, "invalid-key".into())
    );
    assert_eq!(send(addr, "DELETE", "/v1/apps/counter/buckets/notes/todo/today", &[], b"").status, 204);
    assert_eq!(get(addr, "/v1/apps/counter/buckets/notes/todo/today").code(), (404, "no-such-key".into()));
    assert_eq!(get(addr, "/v1/apps/counter/buckets/photos").code(), (404, "unknown-bucket".into()));
}

#[test]
fn paused_functions_refuse_calls_until_resumed() {
    let server = serve();
    let addr = server.addr;
    let paused = post(addr, "/v1/apps/counter/functions/counter.increment/pause", b"");
    assert_eq!(paused.json(), json!({ "app": "counter", "function": "counter", "paused": true }));
    // Every export of the component is paused; another component of the app is not.
    let refused = post(addr, "/v1/apps/counter/functions/counter.get", br#"["x"]"#);
    assert_eq!(refused.code(), (503, "paused".into()));
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
    assert_eq!(get(addr, "/v1/apps/counter/functions/counter.get").json()["paused"], json!(true));
    assert_eq!(post(addr, "/v1/apps/counter/functions/sandboxed.get", br#"["x"]"#).status, 422);
    // Routes of a paused component refuse too.
    post(addr, "/v1/apps/http-hostile/functions/web/pause", b"");
    assert_eq!(get(addr, "/open").code(), (503, "paused".into()));
    post(addr, "/v1/apps/http-hostile/functions/web/resume", b"");
    assert_eq!(get(addr, "/open").status, 200);
    post(addr, "/v1/apps/counter/functions/counter/resume", b"");
    assert_eq!(post(addr, "/v1/apps/counter/functions/counter.get", br#"["x"]"#).json(), Value::Null);
    assert_eq!(post(addr, "/v1/apps/counter/functions/nope/pause", b"").code(), (404, "unknown-function".into()));
}

#[test]
fn metrics_and_recent_calls_count_outcomes_and_errors() {
    let server = serve();
    let addr = server.addr;
    let greet = "/v1/apps/hello/functions/hello.greet";
    post(addr, greet, br#"[{"name": "A", "age": 1}]"#);
    post(addr, greet, br#"[{"name": "A", "age": 1}]"#);
    post(addr, greet, br#"[{"name": "", "age": 1}]"#);
    post(addr, greet, br#"{"bad"#);
    let metrics = get(addr, "/metrics");
    assert_eq!(metrics.header("content-type").as_deref(), Some("text/plain; version=0.0.4; charset=utf-8"));
    let text = metrics.text();
    for line in [
        r#"host_calls_total{app="hello",function="hello.greet",outcome="ok"} 2"#,
        r#"host_calls_total{app="hello",function="hello.greet",outcome="guest-error"} 1"#,
        r#"host_call_duration_seconds_count{app="hello",function="hello.greet"} 3"#,
        r#"host_call_duration_seconds_bucket{app="hello",function="hello.greet",le="+Inf"} 3"#,
        r#"host_http_errors_total{code="bad-json"} 1"#,
        r#"host_http_errors_total{code="guest-error"} 1"#,
        "host_instances_in_flight 0",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    let calls = get(addr, "/v1/calls").json();
    let outcomes: Vec<&str> = calls.as_array().unwrap().iter().map(|c| c["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["guest-error", "ok", "ok"], "newest first; bad JSON never reached a guest");
    assert_eq!(calls[0]["function"], "hello.greet");
    assert_eq!(calls[0]["trigger"], "call");
}

#[test]
fn requests_over_the_cap_get_503_and_the_rest_carry_on() {
    let config = ServerConfig { max_requests: 2, ..ServerConfig::default() };
    let server = serve_with(config, Duration::from_secs(5));
    let addr = server.addr;
    // Once both slow requests hold their slots, a third request is refused at once (health
    // checks excepted: they always answer). On a loaded machine the probes may miss the 1.5 s
    // window: then the pair is sent again (a few times at most).
    let (refused, slow) = (0..5)
        .find_map(|_| {
            let slow: Vec<_> =
                (0..2).map(|_| std::thread::spawn(move || get(addr, "/web/slow?ms=1500").text())).collect();
            loop {
                assert_eq!(get(addr, "/healthz").status, 200);
                let answer = get(addr, "/v1/apps");
                if answer.status != 200 {
                    return Some((answer, slow));
                }
                if slow.iter().all(|t| t.is_finished()) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
        .expect("the slow requests ended before one was refused, five times");
    assert_eq!(refused.code(), (503, "overloaded".into()));
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
    for handle in slow {
        assert_eq!(handle.join().unwrap(), "slept 1500");
    }
    assert_eq!(get(addr, "/v1/apps").status, 200);
}

#[test]
fn shutdown_lets_calls_in_flight_finish() {
    let mut server = serve();
    let addr = server.addr;
    let slow = std::thread::spawn(move || get(addr, "/web/slow?ms=700"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(server.stop(), "the slow request finished within the grace period");
    let answer = slow.join().unwrap();
    assert_eq!((answer.status, answer.text()), (200, "slept 700".to_string()));
    assert!(TcpStream::connect(addr).is_err(), "no new connections after shutdown");
}

#[test]
fn shutdown_gives_up_after_the_grace_period() {
    let mut server = serve_with(ServerConfig::default(), Duration::from_millis(200));
    let addr = server.addr;
    let _slow = std::thread::spawn(move || get(addr, "/web/slow?ms=1900"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(!server.stop(), "the slow request was still running when the grace period ended");
}

#[test]
fn hello_http_runs_unchanged_under_wasmtime_serve() {
    let component = manifest(HELLO_HTTP).parent().unwrap().join("../../target/wasm32-wasip2/release/hello_http.wasm");
    let addr = crate::common::free_addr();
    let wasmtime = crate::common::python_tools().join("wasmtime");
    let mut child = std::process::Command::new(wasmtime)
        .args(["serve", "-Scli", "--addr", &addr.to_string()])
        .arg(&component)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while TcpStream::connect(addr).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "wasmtime serve exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let theirs = (get(addr, "/hello?name=Ada").text(), send(addr, "POST", "/hello", &[], b"loud").text());
    child.kill().unwrap();
    child.wait().unwrap();
    let server = serve();
    let ours = (get(server.addr, "/hello?name=Ada").text(), send(server.addr, "POST", "/hello", &[], b"loud").text());
    assert_eq!(theirs, ("Hello, Ada!\n".to_string(), "LOUD".to_string()));
    assert_eq!(ours, theirs);
}

#[test]
fn items_over_rest_raw_multipart_annotations_and_executions_with_logs() {
    let server = serve_apps(&[crate::common::PROBE], ServerConfig::default(), Duration::from_secs(5));
    let addr = server.addr;
    let items = "/v1/apps/probe/datasets/inbox/items";
    let raw = send(
        addr,
        "POST",
        &format!("{items}?dir=/docs&name=a.txt&metadata=%7B%22k%22%3A1%7D"),
        &["Content-Type: text/plain"],
        b"hello",
    );
    assert_eq!(raw.status, 201, "{}", raw.text());
    let item = raw.json();
    assert_eq!(
        (item["dir"].clone(), item["mimetype"].clone(), item["size"].clone(), item["metadata"].clone()),
        (json!("/docs"), json!("text/plain"), json!(5), json!({ "k": 1 }))
    );
    let id = item["id"].as_str().unwrap().to_string();
    let form = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.png\"\r\nContent-Type: image/png\r\n\r\nPNGDATA\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.txt\"\r\n\r\ntext\r\n--XyZ--\r\n";
    let multi = send(
        addr,
        "POST",
        &format!("{items}?dir=/up"),
        &["Content-Type: multipart/form-data; boundary=XyZ"],
        form.as_bytes(),
    );
    assert_eq!(multi.status, 201, "{}", multi.text());
    let names: Vec<Value> =
        multi.json().as_array().unwrap().iter().map(|i| json!([i["name"], i["mimetype"]])).collect();
    assert_eq!(names, [json!(["b.png", "image/png"]), json!(["c.txt", "text/plain"])]);
    let listed = get(addr, &format!("{items}?mimetype=text/*")).json();
    let listed: Vec<&str> =
        listed["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect::<Vec<_>>();
    assert_eq!(listed, ["a.txt", "c.txt"]);
    let download = get(addr, &format!("{items}/{id}/download"));
    assert_eq!(
        (download.text(), download.header("content-type")),
        ("hello".to_string(), Some("text/plain".to_string()))
    );
    assert_eq!(
        send(addr, "PUT", &format!("{items}/{id}/metadata"), &[], br#"{"k": 2}"#).json()["metadata"],
        json!({ "k": 2 })
    );
    assert_eq!(send(addr, "PUT", &format!("{items}/{id}/metadata"), &[], b"[1]").code(), (400, "invalid".into()));
    let box_ = json!([{ "geometry": { "box": { "left": 1.0, "top": 2.0, "right": 30.0, "bottom": 40.0 } }, "label": "face", "confidence": 0.9 }]);
    let added = send(addr, "POST", &format!("{items}/{id}/annotations"), &[], box_.to_string().as_bytes());
    assert_eq!(added.status, 201, "{}", added.text());
    let annotation = added.json()[0]["id"].as_str().unwrap().to_string();
    assert_eq!(get(addr, &format!("{items}/{id}/annotations")).json()[0]["label"], "face");
    let bad = json!([{ "geometry": "classification", "label": "x", "confidence": 7 }]);
    assert_eq!(
        send(addr, "POST", &format!("{items}/{id}/annotations"), &[], bad.to_string().as_bytes()).code(),
        (400, "invalid".into())
    );
    assert_eq!(send(addr, "DELETE", &format!("{items}/{id}/annotations/{annotation}"), &[], b"").status, 204);
    assert_eq!(get(addr, "/v1/apps/probe/datasets/photos/items").code(), (404, "unknown-dataset".into()));
    assert_eq!(get(addr, &format!("{items}/ffff")).code(), (404, "no-such-item".into()));

    // A direct call of an item function is an execution too, with its logs.
    let item_json = send(addr, "GET", &format!("{items}/{id}"), &[], b"").json();
    let mut wit_item = item_json.clone();
    wit_item["metadata"] = json!(item_json["metadata"].to_string());
    assert_eq!(
        post(addr, "/v1/apps/probe/functions/probe.probe", json!([wit_item]).to_string().as_bytes()).json(),
        json!(1)
    );
    let records = get(addr, "/v1/executions?app=probe&trigger=call").json();
    let record = &records[0];
    assert_eq!(
        (record["function"].clone(), record["status"].clone(), record["output"].clone()),
        (json!("probe.probe"), json!("succeeded"), json!(1))
    );
    let exec = record["id"].as_str().unwrap();
    assert_eq!(get(addr, &format!("/v1/executions/{exec}?wait=1s")).json()["id"], json!(exec));
    assert!(get(addr, &format!("/v1/executions/{exec}/logs")).text().contains("probe: item"));
    let followed = get(addr, &format!("/v1/executions/{exec}/logs?follow=true"));
    assert_eq!(followed.header("content-type").as_deref(), Some("text/event-stream"));
    let events = followed.text();
    assert!(
        events.contains("event: log") && events.contains("probe: item") && events.contains("event: end"),
        "{events}"
    );
    assert_eq!(get(addr, "/v1/executions?status=sideways").code(), (400, "bad-query".into()));
    // A time range around the record's queue time finds it; one ending there does not.
    let queued = record["queued_ms"].as_u64().unwrap();
    let around = get(addr, &format!("/v1/executions?app=probe&since={queued}&until={}", queued + 1)).json();
    assert!(around.as_array().unwrap().iter().any(|r| r["id"] == json!(exec)), "{around}");
    let before = get(addr, &format!("/v1/executions?app=probe&until={queued}")).json();
    assert!(!before.as_array().unwrap().iter().any(|r| r["id"] == json!(exec)), "{before}");
    let lone_item = get(addr, "/v1/executions?item=abc");
    assert_eq!(lone_item.code(), (400, "bad-query".into()));
    assert!(lone_item.text().contains("`dataset` and `item` go together"), "{}", lone_item.text());
    let bad_time = get(addr, "/v1/executions?since=yesterday");
    assert_eq!(bad_time.code(), (400, "bad-request".into()));
    assert!(bad_time.text().contains("since"), "names the field: {}", bad_time.text());
    assert_eq!(get(addr, "/v1/executions/nope").code(), (404, "unknown-execution".into()));
    assert_eq!(send(addr, "DELETE", &format!("{items}/{id}"), &[], b"").status, 204);
    assert_eq!(get(addr, &format!("{items}/{id}")).code(), (404, "no-such-item".into()));
}

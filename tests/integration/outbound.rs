//! Outbound HTTP from guests (`tests/guests/outbound`, raw wasi:http): what `grants.http` lets
//! through, internal addresses, `[outbound] resolve`, TLS with the app's CA file, the limits, and
//! how requests show in the call's logs and the metrics. Every server is on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use host::{App, CallError, Host};
use serde_json::{Value, json};

use crate::common::{OUTBOUND, host_on, manifest, root};
use crate::web::{Response, WebServer};

/// An app in `dir` whose functions (name, extra TOML lines) all run the outbound test component,
/// with `outbound` as its `[outbound]` table (empty: none), loaded on a fresh host.
fn outbound_app(dir: &Path, functions: &[(&str, &str)], outbound: &str) -> (Host, App) {
    manifest(OUTBOUND); // builds every test component
    let wasm = root().join("target/wasm32-wasip2/release/outbound.wasm");
    let mut text = "[app]\nname = \"outbound\"\n".to_string();
    for (name, extra) in functions {
        text.push_str(&format!("\n[function.{name}]\nsource = {:?}\n{extra}\n", wasm.to_str().unwrap()));
    }
    if !outbound.is_empty() {
        text.push_str(&format!("\n[outbound]\n{outbound}\n"));
    }
    std::fs::write(dir.join("host.toml"), text).unwrap();
    let host = host_on(&dir.join("data"));
    let app = host.load(dir.join("host.toml")).unwrap();
    (host, app)
}

/// `function.fetch(method, url, body)`: the response as `[status, body]` or the guest's error
/// (the wasi:http error code), and what the call wrote to stderr.
async fn fetch(
    app: &App,
    function: &str,
    method: &str,
    url: &str,
    body: Option<&str>,
) -> (Result<Value, String>, String) {
    let report = app.function(&format!("{function}.fetch")).unwrap().invoke(&json!([method, url, body])).await.unwrap();
    let result = match report.result {
        Ok(response) => Ok(json!([response["status"], response["body"]])),
        Err(CallError::Guest { value }) => Err(value.as_str().unwrap().to_string()),
        Err(other) => panic!("the call failed: {other}"),
    };
    (result, report.logs.stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn granted_hosts_are_reached_and_everything_else_is_refused_before_connecting() {
    let server = WebServer::start(|request| match request.path.as_str() {
        "/moved" => Response::redirect("http://elsewhere.test/"),
        "/very-slow" => Response { delay_headers: Duration::from_secs(3), ..Response::ok("late") },
        _ => Response::ok(format!("{} {} {}", request.method, request.path, String::from_utf8_lossy(&request.body))),
    });
    let port = server.addr().port();
    let dir = tempfile::tempdir().unwrap();
    let (host, app) = outbound_app(
        dir.path(),
        &[
            ("granted", &format!("grants = {{ http = [\"http://127.0.0.1:{port}\"] }}")),
            ("other-port", &format!("grants = {{ http = [\"http://127.0.0.1:{}\"] }}", port + 1)),
            ("by-name", &format!("grants = {{ http = [\"http://api.test:{port}\"] }}")),
            (
                "by-name-and-address",
                &format!("grants = {{ http = [\"http://api.test:{port}\", \"http://127.0.0.1:*\"] }}"),
            ),
            ("nothing", ""),
            ("hasty", &format!("grants = {{ http = [\"http://127.0.0.1:{port}\"] }}\nlimits = {{ timeout = \"1s\" }}")),
        ],
        &format!("resolve = {{ \"api.test:{port}\" = \"127.0.0.1:{port}\" }}"),
    );
    let url = server.url("/echo?x=1");
    let (answer, logs) = fetch(&app, "granted", "POST", &url, Some("payload")).await;
    assert_eq!(answer, Ok(json!([200, "POST /echo?x=1 payload"])));
    assert!(logs.starts_with(&format!("[host] outbound POST http://127.0.0.1:{port}: 200 in ")), "{logs}");
    assert!(!logs.contains("echo") && !logs.contains("payload"), "no path or body in the notes: {logs}");

    // A port, a scheme, or a function that the grant does not cover.
    let (answer, logs) = fetch(&app, "other-port", "GET", &url, None).await;
    assert_eq!(answer, Err("HttpRequestDenied".into()));
    assert!(
        logs.contains(&format!(
            "GET http://127.0.0.1:{port} refused (HTTP-request-denied): not in grants.http of function `other-port`"
        )),
        "{logs}"
    );
    let https = format!("https://127.0.0.1:{port}/");
    assert_eq!(fetch(&app, "granted", "GET", &https, None).await.0, Err("HttpRequestDenied".into()));
    let (answer, logs) = fetch(&app, "nothing", "GET", &url, None).await;
    assert_eq!(answer, Err("HttpRequestDenied".into()));
    assert!(logs.contains("refused (HTTP-request-denied): not in grants.http of function `nothing`"), "{logs}");

    // A granted name that resolves to loopback: refused unless the grant names the address too.
    let by_name = format!("http://api.test:{port}/named");
    let (answer, logs) = fetch(&app, "by-name", "GET", &by_name, None).await;
    assert_eq!(answer, Err("HttpRequestDenied".into()));
    assert!(
        logs.contains(
            "it resolves to 127.0.0.1, an internal address that grants.http of function `by-name` does not name"
        ),
        "{logs}"
    );
    assert_eq!(fetch(&app, "by-name-and-address", "GET", &by_name, None).await.0, Ok(json!([200, "GET /named "])));

    // The host follows no redirect: the guest gets it (a client following it sends a new
    // request, checked like any other).
    assert_eq!(fetch(&app, "granted", "GET", &server.url("/moved"), None).await.0, Ok(json!([302, ""])));

    // A request is bounded by its call's timeout too (the first-byte timeout is 30 s here).
    let slow =
        app.function("hasty.fetch").unwrap().invoke(&json!(["GET", server.url("/very-slow"), null])).await.unwrap();
    assert_eq!(slow.outcome(), "timeout");

    // Only the granted requests reached the server.
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/echo?x=1", "/named", "/moved", "/very-slow"]);
    let metrics = host.metrics().prometheus();
    for line in [
        "host_outbound_requests_total{app=\"outbound\",function=\"granted\",host=\"127.0.0.1\",outcome=\"ok\"} 2",
        "host_outbound_requests_total{app=\"outbound\",function=\"granted\",host=\"other\",outcome=\"denied\"} 1",
        "host_outbound_requests_total{app=\"outbound\",function=\"by-name\",host=\"api.test\",outcome=\"denied\"} 1",
        "host_outbound_requests_total{app=\"outbound\",function=\"by-name-and-address\",host=\"api.test\",outcome=\"ok\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_fail_the_request_with_a_named_error() {
    let server = WebServer::start(|request| match request.path.as_str() {
        "/big" => Response::ok(vec![b'x'; 3000]),
        "/slow-head" => Response { delay_headers: Duration::from_millis(1500), ..Response::ok("late") },
        "/stall" => Response { delay_body: Duration::from_millis(1500), ..Response::ok("stalled") },
        _ => Response::ok("small"),
    });
    let dir = tempfile::tempdir().unwrap();
    let (_host, app) = outbound_app(
        dir.path(),
        &[("f", "grants = { http = [\"http://127.0.0.1:*\"] }")],
        "max-response-body = \"2KiB\"\nfirst-byte-timeout = \"500ms\"\nbetween-bytes-timeout = \"500ms\"\nrequests-at-once = 3",
    );
    assert_eq!(fetch(&app, "f", "GET", &server.url("/small"), None).await.0, Ok(json!([200, "small"])));
    // Errors in a body reach the guest as stream errors, named in their text (wasmtime-wasi-http
    // 48 keeps their code from `http-error-code`).
    let big = fetch(&app, "f", "GET", &server.url("/big"), None).await.0;
    assert_eq!(big, Err("HTTP response body size exceeds limit: 2048 bytes".into()));
    assert_eq!(fetch(&app, "f", "GET", &server.url("/slow-head"), None).await.0, Err("ConnectionReadTimeout".into()));
    let stall = fetch(&app, "f", "GET", &server.url("/stall"), None).await.0;
    assert_eq!(stall, Err("connection read timeout".into()));
    // Nothing listens on a port that was just freed.
    let closed = crate::common::free_addr();
    let (answer, logs) = fetch(&app, "f", "GET", &format!("http://{closed}/"), None).await;
    assert_eq!(answer, Err("ConnectionRefused".into()));
    assert!(logs.contains(&format!("GET http://{closed} failed (connection-refused)")), "{logs}");
    // Four at once, with three allowed: the fourth is refused, the first three answered.
    let many = app.function("f.fetch-many").unwrap().call(json!([server.url("/small"), 4])).await.unwrap();
    assert_eq!(many, json!(["200", "200", "200", "ConnectionLimitReached"]));
    // Once those are done, the call's count is back to zero.
    let again = app.function("f.fetch-many").unwrap().call(json!([server.url("/small"), 3])).await.unwrap();
    assert_eq!(again, json!(["200", "200", "200"]));
}

/// A TLS server (`openssl s_server -WWW`, serving files of its folder) for `tls.test` and
/// `localhost`, with its own CA; stopped when dropped.
struct TlsServer {
    child: Child,
    port: u16,
    ca: PathBuf,
}

impl TlsServer {
    fn start(dir: &Path) -> TlsServer {
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is needed");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=tls.test",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:tls.test,DNS:localhost\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ]);
        std::fs::write(dir.join("hello.txt"), "hello over TLS").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-cert", "server.pem", "-key", "server.key"])
            .args(["-accept", &format!("127.0.0.1:{port}")])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsServer { child, port, ca: dir.join("ca.pem") }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn https_is_verified_against_the_system_roots_and_the_apps_ca_file() {
    let certs = tempfile::tempdir().unwrap();
    let tls = TlsServer::start(certs.path());
    let port = tls.port;
    let grants = format!("grants = {{ http = [\"https://tls.test:{port}\", \"https://127.0.0.1:{port}\"] }}");
    let resolve = format!("resolve = {{ \"tls.test:{port}\" = \"127.0.0.1:{port}\" }}");
    let url = format!("https://tls.test:{port}/hello.txt");

    let dir = tempfile::tempdir().unwrap();
    let (_host, app) =
        outbound_app(dir.path(), &[("f", &grants)], &format!("{resolve}\nca-file = {:?}", tls.ca.to_str().unwrap()));
    assert_eq!(fetch(&app, "f", "GET", &url, None).await.0, Ok(json!([200, "hello over TLS"])));
    // The certificate names tls.test, not the address.
    let by_address = format!("https://127.0.0.1:{port}/hello.txt");
    assert_eq!(fetch(&app, "f", "GET", &by_address, None).await.0, Err("TlsCertificateError".into()));

    // Without the CA file the server's certificate is not trusted.
    let dir = tempfile::tempdir().unwrap();
    let (_host, app) = outbound_app(dir.path(), &[("f", &grants)], &resolve);
    let (answer, logs) = fetch(&app, "f", "GET", &url, None).await;
    assert_eq!(answer, Err("TlsCertificateError".into()));
    assert!(logs.contains("failed (tls-certificate-error)"), "{logs}");
}

#[test]
fn a_bad_ca_file_fails_the_load_and_names_the_file() {
    manifest(OUTBOUND);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not-a-cert.pem"), "hello").unwrap();
    let wasm = root().join("target/wasm32-wasip2/release/outbound.wasm");
    let text = format!(
        "[app]\nname = \"outbound\"\n[function.f]\nsource = {:?}\n[outbound]\nca-file = \"not-a-cert.pem\"\n",
        wasm.to_str().unwrap()
    );
    std::fs::write(dir.path().join("host.toml"), text).unwrap();
    let Err(err) = host_on(&dir.path().join("data")).load(dir.path().join("host.toml")) else {
        panic!("a bad CA file was loaded")
    };
    let err = err.to_string();
    let file = dir.path().join("not-a-cert.pem");
    assert!(err.contains(&format!("outbound.ca-file {}: no PEM certificate in it", file.display())), "{err}");
}

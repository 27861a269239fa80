//! The REST API of `host serve`, on a real loopback socket.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use serde_json::{Value, json};

use crate::common::{COUNTER, HELLO, HOSTILE, host, manifest};

/// Serve the hello, counter and hostile apps on a free loopback port.
fn serve() -> (tempfile::TempDir, SocketAddr) {
    let (data, host) = host();
    let apps = [HELLO, COUNTER, HOSTILE].map(|m| host.load(manifest(m)).unwrap()).into_iter().collect();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, host::server::router(apps)).await.unwrap();
        });
    });
    (data, addr)
}

/// One HTTP/1.1 request; the status and the JSON body.
fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn invoke_returns_results_and_named_errors() {
    let (_data, addr) = serve();
    let greet = "/v1/apps/hello/functions/hello.greet";
    let (status, body) = request(addr, "POST", greet, br#"{"who": {"name": "Ada", "age": 36}}"#);
    assert_eq!((status, body), (200, json!("Hello, Ada! You are 36.")));

    let (status, body) = request(addr, "POST", greet, br#"{"who": {"name": "Ada", "age": "ten"}}"#);
    assert_eq!(status, 400);
    assert_eq!(body["code"], "bad-argument");
    assert_eq!(body["message"], r#"argument who.age: expected u8, got "ten""#);
    assert_eq!(body["path"], "who.age");

    let (status, body) = request(addr, "POST", greet, b"{nope");
    assert_eq!((status, body["code"].clone()), (400, json!("bad-json")));

    let (status, body) = request(addr, "POST", greet, br#"[{"name": "", "age": 1}]"#);
    assert_eq!(
        (status, body["code"].clone(), body["error"].clone()),
        (422, json!("guest-error"), json!("name must not be empty"))
    );

    let (status, body) = request(addr, "POST", "/v1/apps/hello/functions/hello.wave", b"{}");
    assert_eq!((status, body["code"].clone()), (404, json!("unknown-function")));
    let (status, body) = request(addr, "POST", "/v1/apps/nope/functions/x", b"{}");
    assert_eq!((status, body["code"].clone()), (404, json!("unknown-app")));
    let (status, body) = request(addr, "GET", "/elsewhere", b"");
    assert_eq!((status, body["code"].clone()), (404, json!("not-found")));

    let (status, body) = request(addr, "POST", "/v1/apps/hostile/functions/hostile.spin", b"");
    assert_eq!((status, body["code"].clone()), (504, json!("timeout")));
    let (status, body) = request(addr, "POST", "/v1/apps/hostile/functions/hostile.bomb", br#"{"mib": 64}"#);
    assert_eq!((status, body["code"].clone()), (500, json!("memory-limit")));
    // The server carries on, and state persists between requests.
    let counter = "/v1/apps/counter/functions/counter.increment";
    assert_eq!(request(addr, "POST", counter, br#"["hits", 2]"#), (200, json!(2)));
    assert_eq!(request(addr, "POST", counter, br#"["hits", 2]"#), (200, json!(4)));
}

#[test]
fn large_bodies_are_refused() {
    let (_data, addr) = serve();
    let big = vec![b' '; host::server::MAX_BODY + 1];
    let (status, body) = request(addr, "POST", "/v1/apps/hello/functions/hello.noop", &big);
    assert_eq!((status, body["code"].clone()), (413, json!("body-too-large")));
}

#[test]
fn apps_and_functions_are_listed_with_schemas() {
    let (_data, addr) = serve();
    let (status, apps) = request(addr, "GET", "/v1/apps", b"");
    assert_eq!(status, 200);
    let names: Vec<&str> = apps.as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["counter", "hello", "hostile"]);
    let (status, greet) = request(addr, "GET", "/v1/apps/hello/functions/hello.greet", b"");
    assert_eq!(status, 200);
    assert_eq!(greet["params"]["required"], json!(["who"]));
    assert_eq!(greet["result"], json!({ "type": "string" }));
    let (status, app) = request(addr, "GET", "/v1/apps/hello", b"");
    assert_eq!((status, app["functions"].as_array().unwrap().len()), (200, 2));
}

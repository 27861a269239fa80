//! `host serve` against hostile web pages and careless clients: foreign `Host` names (DNS
//! rebinding), cross-site requests, CORS for allowed origins, slow or lying clients, stored
//! content that must not run as a page, and the dashboard's session cookie.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use host::server::ServerConfig;
use serde_json::json;

use crate::common::{COUNTER, HELLO, HELLO_HTTP, PROBE};
use crate::server::{Answer, send, serve_apps};

fn serve(config: ServerConfig) -> crate::server::Served {
    serve_apps(&[HELLO, COUNTER, HELLO_HTTP, PROBE], config, Duration::from_secs(5))
}

const INCREMENT: &str = "/v1/apps/counter/functions/counter.increment";
const ITEMS: &str = "/v1/apps/probe/datasets/inbox/items";

#[test]
fn foreign_host_names_are_refused() {
    let server = serve(ServerConfig { allowed_hosts: vec!["api.example.com".into()], ..ServerConfig::default() });
    let port = server.addr.port();
    let with_host = |host: &str| send(server.addr, "GET", "/v1/apps", &[&format!("Host: {host}")], b"");
    let rebound = with_host(&format!("attacker.example:{port}"));
    assert_eq!(rebound.code(), (403, "host-not-allowed".into()));
    assert!(rebound.json()["message"].as_str().unwrap().contains("attacker.example"), "{}", rebound.text());
    // The same for routes and the dashboard: a rebound page could read them too.
    let route = send(server.addr, "GET", "/hello?name=x", &[&format!("Host: attacker.example:{port}")], b"");
    assert_eq!(route.code(), (403, "host-not-allowed".into()));
    for ok in
        [format!("localhost:{port}"), format!("127.0.0.1:{port}"), "API.example.com".into(), format!("[::1]:{port}")]
    {
        assert_eq!(with_host(&ok).status, 200, "Host: {ok}");
    }
    // A health check answers whatever name it used.
    assert_eq!(send(server.addr, "GET", "/healthz", &["Host: lb.internal"], b"").status, 200);
}

#[test]
fn cross_site_requests_change_nothing() {
    for token in [None, Some("t0ken")] {
        let server = serve(ServerConfig { token: token.map(Into::into), ..ServerConfig::default() });
        let auth = token.map(|t| format!("Authorization: Bearer {t}")).unwrap_or_default();
        let own = format!("Origin: http://{}", server.addr);
        let headers = |extra: &[&str]| -> Vec<String> {
            let mut h: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            if !auth.is_empty() {
                h.push(auth.clone());
            }
            h
        };
        let req = |method: &str, path: &str, extra: &[&str], body: &[u8]| -> Answer {
            let h = headers(extra);
            send(server.addr, method, path, &h.iter().map(String::as_str).collect::<Vec<_>>(), body)
        };
        // The attack of the finding: a text/plain POST from another site's page.
        let csrf = req(
            "POST",
            INCREMENT,
            &["Origin: http://attacker.example", "Content-Type: text/plain", "Sec-Fetch-Site: cross-site"],
            br#"["csrf", 1]"#,
        );
        assert_eq!(csrf.code(), (403, "cross-origin".into()), "token {token:?}");
        assert!(csrf.json()["message"].as_str().unwrap().contains("--cors-origin"));
        // Without an Origin, a cross-site fetch still says where it comes from.
        let pause = req("POST", "/v1/apps/hello/functions/hello.greet/pause", &["Sec-Fetch-Site: cross-site"], b"");
        assert_eq!(pause.code(), (403, "cross-origin".into()));
        // A sandboxed page (`Origin: null`) and a sibling site are other origins too.
        let null = req("POST", INCREMENT, &["Origin: null"], br#"["csrf", 1]"#);
        assert_eq!(null.code(), (403, "cross-origin".into()));
        let sibling = req("GET", "/v1/apps", &["Sec-Fetch-Site: same-site"], b"");
        assert_eq!(sibling.code(), (403, "cross-origin".into()));
        // A form that posts an HTML file as an item.
        let form = req(
            "POST",
            &format!("{ITEMS}?dir=/&name=x.html"),
            &["Origin: http://attacker.example", "Content-Type: text/html"],
            b"<script>alert(1)</script>",
        );
        assert_eq!(form.code(), (403, "cross-origin".into()));
        // Nothing changed: the counter starts at 1, `hello` is not paused, no item was stored.
        let first = req("POST", INCREMENT, &[&own, "Sec-Fetch-Site: same-origin"], br#"["csrf", 1]"#);
        assert_eq!((first.status, first.json()), (200, json!(1)), "{}", first.text());
        let hello = req("GET", "/v1/apps/hello/functions/hello.greet", &[], b"");
        assert_eq!(hello.json()["paused"], json!(false));
        assert_eq!(req("GET", ITEMS, &[], b"").json()["items"], json!([]));
        // Pages and the dashboard's own requests pass; so does a link from another site to /ui.
        let dashboard = req("GET", "/v1/apps", &[&own, "Sec-Fetch-Site: same-origin"], b"");
        assert_eq!(dashboard.status, 200);
        let link = req("GET", "/ui", &["Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: navigate"], b"");
        assert_eq!(link.status, 200);
        let framed = req("GET", "/ui", &["Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: no-cors"], b"");
        assert_eq!(framed.code(), (403, "cross-origin".into()));
    }
}

#[test]
fn allowed_origins_get_cors() {
    let site = "http://app.example:3000";
    let server = serve(ServerConfig { cors_origins: vec![site.into()], ..ServerConfig::default() });
    let origin = format!("Origin: {site}");
    let preflight = send(
        server.addr,
        "OPTIONS",
        INCREMENT,
        &[
            &origin,
            "Access-Control-Request-Method: POST",
            "Access-Control-Request-Headers: authorization, content-type",
        ],
        b"",
    );
    assert_eq!(preflight.status, 204, "{}", preflight.text());
    assert_eq!(preflight.header("access-control-allow-origin").as_deref(), Some(site));
    assert!(preflight.header("access-control-allow-methods").unwrap().contains("POST"));
    assert_eq!(preflight.header("access-control-allow-headers").as_deref(), Some("authorization, content-type"));
    assert!(preflight.header("vary").unwrap().to_lowercase().contains("origin"));
    let call = send(server.addr, "POST", INCREMENT, &[&origin, "Sec-Fetch-Site: cross-site"], br#"["cors", 5]"#);
    assert_eq!((call.status, call.json()), (200, json!(5)));
    assert_eq!(call.header("access-control-allow-origin").as_deref(), Some(site));
    let other = "Origin: http://other.example";
    let refused = send(server.addr, "OPTIONS", INCREMENT, &[other, "Access-Control-Request-Method: POST"], b"");
    assert_eq!(refused.code(), (403, "cross-origin".into()));
    assert_eq!(refused.header("access-control-allow-origin"), None);
}

/// Write a raw request head (and part of a body) and keep the connection open.
fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    stream
}

fn read_answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn lying_and_slow_clients_do_not_hold_slots() {
    let config = ServerConfig {
        max_requests: 4,
        body_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    };
    let server = serve(config);
    let host = format!("Host: {}", server.addr);
    // A declared length over the limit is refused before a byte of the body is read.
    for path in [INCREMENT, "/v1/apps/counter/kv/default/k", &format!("{ITEMS}?name=x")] {
        let mut stream =
            raw(server.addr, &format!("POST {path} HTTP/1.1\r\n{host}\r\nContent-Length: 1000000000\r\n\r\n"), b"[]");
        let answer = read_answer(&mut stream);
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(answer.contains("body-too-large"), "{answer}");
    }
    // Four clients that declare 100 bytes and send 2 take every slot, for one second at most.
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..4)
        .map(|_| {
            raw(server.addr, &format!("POST {INCREMENT} HTTP/1.1\r\n{host}\r\nContent-Length: 100\r\n\r\n"), b"[\"")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // Health checks never wait behind the cap.
    assert_eq!(send(server.addr, "GET", "/healthz", &[], b"").status, 200);
    for stream in &mut slow {
        let answer = read_answer(stream);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("body-timeout"), "{answer}");
    }
    assert!(started.elapsed() < Duration::from_secs(20), "slow bodies held on for {:?}", started.elapsed());
    assert_eq!(send(server.addr, "POST", INCREMENT, &[], br#"["after", 1]"#).json(), json!(1));
    // A head that never ends loses its connection.
    let mut stalled = raw(server.addr, &format!("GET /v1/apps HTTP/1.1\r\n{host}\r\n"), b"");
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(20), "a stalled head was kept {:?}", started.elapsed());
    assert!(!String::from_utf8_lossy(&rest).contains(" 200 "), "a stalled head was answered");
}

#[test]
fn stored_content_cannot_run_as_a_page() {
    let server = serve(ServerConfig::default());
    let page = b"<html><script>fetch('/v1/apps')</script></html>";
    let item = send(server.addr, "POST", &format!("{ITEMS}?dir=/&name=x.html"), &["Content-Type: text/html"], page);
    assert_eq!(item.status, 201, "{}", item.text());
    let id = item.json()["id"].as_str().unwrap().to_string();
    let object = send(server.addr, "PUT", "/v1/apps/counter/buckets/notes/x.html", &["Content-Type: text/html"], page);
    assert!(object.status < 300, "{}", object.text());
    for path in [format!("{ITEMS}/{id}/download"), "/v1/apps/counter/buckets/notes/x.html".into()] {
        let answer = send(server.addr, "GET", &path, &[], b"");
        assert_eq!(answer.body, page);
        assert_eq!(answer.header("x-content-type-options").as_deref(), Some("nosniff"), "{path}");
        assert!(answer.header("content-security-policy").is_some_and(|c| c.starts_with("sandbox")), "{path}");
        assert_eq!(answer.header("content-disposition").as_deref(), Some("attachment"), "{path}");
    }
    let json = send(server.addr, "GET", "/v1/apps", &[], b"");
    assert_eq!(json.header("content-disposition"), None, "JSON answers are not downloads");
    let ui = send(server.addr, "GET", "/ui", &[], b"");
    assert_eq!(ui.header("x-frame-options").as_deref(), Some("DENY"));
    assert!(ui.header("content-security-policy").is_some_and(|c| c.contains("frame-ancestors 'none'")));
}

#[test]
fn the_dashboard_trades_its_token_for_an_http_only_session() {
    let server = serve(ServerConfig { token: Some("dash-t0ken".into()), ..ServerConfig::default() });
    let login =
        |body: &str| send(server.addr, "POST", "/ui/session", &["Content-Type: application/json"], body.as_bytes());
    assert_eq!(login(r#"{"token": "dash-t0ke"}"#).code(), (401, "unauthorized".into()));
    assert_eq!(login("dash-t0ken").code(), (400, "bad-request".into()));
    let ok = login(r#"{"token": "dash-t0ken"}"#);
    assert_eq!(ok.status, 204);
    let cookie = ok.header("set-cookie").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("dash-t0ken"), "the cookie must not carry the token: {cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let with_cookie = format!("Cookie: {session}");
    assert_eq!(send(server.addr, "GET", "/v1/apps", &[&with_cookie], b"").status, 200);
    assert_eq!(send(server.addr, "GET", "/v1/apps", &["Cookie: host_session=forged"], b"").status, 401);
    assert_eq!(send(server.addr, "DELETE", "/ui/session", &[&with_cookie], b"").status, 204);
    assert_eq!(send(server.addr, "GET", "/v1/apps", &[&with_cookie], b"").status, 401);
}

#[test]
fn out_of_range_settings_are_errors_not_panics() {
    let (_data, host) = crate::common::host();
    for (config, named) in [
        (ServerConfig { max_requests: usize::MAX, ..ServerConfig::default() }, "max-requests"),
        (ServerConfig { max_requests: 0, ..ServerConfig::default() }, "max-requests"),
        (ServerConfig { body_timeout: Duration::ZERO, ..ServerConfig::default() }, "body-timeout"),
        (ServerConfig { cors_origins: vec!["app.example/".into()], ..ServerConfig::default() }, "cors-origin"),
    ] {
        let error = host::server::router(crate::common::deployments(&host, Vec::new()), config)
            .expect_err("refused")
            .to_string();
        assert!(error.contains(named), "{error}");
    }
}

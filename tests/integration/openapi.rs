//! `/v1/openapi.json` is a valid OpenAPI 3.1 document (checked by `openapi-spec-validator`) that
//! describes every endpoint, and `schemathesis` fuzzing every operation (functions, stores,
//! buckets, items, queues, topics, executions) on a live server finds no 5xx. The route table,
//! the document and the router agree: every route is described, every described path is a route
//! (or an app's `wasi:http` route) and its handler answers it.
//! Both come from PyPI, pinned (see [`python_tools`]).

use std::process::Command;
use std::time::Duration;

use host::server::ServerConfig;
use host::server::routes::Route;
use serde_json::{Value, json};

use crate::common::{COUNTER, HELLO, HELLO_HTTP, MESSAGING, PROBE, python_tools};
use crate::server::{send, serve_apps};

#[test]
fn openapi_document_is_valid_and_the_live_server_never_answers_5xx() {
    let token = "openapi-test-token";
    let config = ServerConfig { token: Some(token.into()), ..ServerConfig::default() };
    let server = serve_apps(&[HELLO, COUNTER, HELLO_HTTP, PROBE, MESSAGING], config, Duration::from_secs(5));
    let auth = format!("Authorization: Bearer {token}");
    let answer = send(server.addr, "GET", "/v1/openapi.json", &[&auth], b"");
    assert_eq!(answer.status, 200);
    let doc = answer.json();
    assert_eq!(doc["openapi"], "3.1.0");
    // The request schema is the function's own parameter schema, as `host inspect` shows it.
    let greet = send(server.addr, "GET", "/v1/apps/hello/functions/hello.greet", &[&auth], b"").json();
    let operation = &doc["paths"]["/v1/apps/hello/functions/hello.greet"]["post"];
    assert_eq!(operation["requestBody"]["content"]["application/json"]["schema"], greet["params"]);
    assert_eq!(operation["responses"]["200"]["content"]["application/json"]["schema"], greet["result"]);
    assert_eq!(
        operation["responses"]["422"]["content"]["application/json"]["schema"]["allOf"][1]["properties"]["error"],
        greet["error"]
    );
    assert_eq!(doc["security"], json!([{ "bearer": [] }]));
    assert_eq!(doc["paths"]["/hello"]["get"]["security"], json!([]), "a public route needs no token");
    // Every endpoint the server has is described: per app, per granted resource, and the host's own.
    let items = "/v1/apps/probe/datasets/inbox/items";
    let described = [
        ("/v1/apps", "get"),
        ("/v1/apps/{app}", "get"),
        ("/v1/calls", "get"),
        ("/v1/executions", "get"),
        ("/v1/executions/{id}", "get"),
        ("/v1/executions/{id}/logs", "get"),
        ("/v1/apps/counter/functions/counter.increment", "post"),
        ("/v1/apps/counter/functions/counter.increment/map", "post"),
        ("/v1/apps/counter/functions/counter.increment/starmap", "post"),
        ("/v1/apps/counter/functions/counter.increment/pause", "post"),
        ("/v1/apps/counter/functions/counter.increment/resume", "post"),
        ("/v1/apps/counter/kv/default", "get"),
        ("/v1/apps/counter/kv/default/{key}", "put"),
        ("/v1/apps/counter/buckets/notes/{key}", "delete"),
        (items, "get"),
        (items, "post"),
        (&format!("{items}/{{id}}"), "get"),
        (&format!("{items}/{{id}}"), "delete"),
        (&format!("{items}/{{id}}/download"), "get"),
        (&format!("{items}/{{id}}/metadata"), "put"),
        (&format!("{items}/{{id}}/annotations"), "get"),
        (&format!("{items}/{{id}}/annotations"), "post"),
        (&format!("{items}/{{id}}/annotations/{{annotation}}"), "delete"),
        ("/v1/apps/messaging/queues/jobs", "post"),
        ("/v1/apps/messaging/queues/jobs/receive", "post"),
        ("/v1/apps/messaging/queues/jobs/complete", "post"),
        ("/v1/apps/messaging/topics/news", "post"),
    ];
    for (path, method) in described {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is not in the document");
    }

    let bin = python_tools();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("openapi.json");
    std::fs::write(&file, &answer.body).unwrap();
    let out = Command::new(bin.join("openapi-spec-validator")).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    let url = format!("http://{}/v1/openapi.json", server.addr);
    let out = Command::new(bin.join("schemathesis"))
        .args(["run", &url, "--checks", "not_a_server_error", "--max-examples", "15", "--generation-deterministic"])
        .args(["--header", &auth, "--request-timeout", "20", "--no-color"])
        .current_dir(work.path()) // its cache folder goes there, not into the repo
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "schemathesis found failures:\n{report}{}", String::from_utf8_lossy(&out.stderr));
    // Every operation but the document itself (schemathesis leaves out the schema's own URL).
    let operations = doc["paths"].as_object().unwrap().values().flat_map(|p| p.as_object().unwrap().keys());
    let operations = operations.filter(|key| *key != "parameters").count() - 1;
    assert!(
        report.contains(&format!("Tested: {operations}\n")),
        "every one of {operations} operations tested:\n{report}"
    );
    // Last, as answering every operation pauses functions and writes keys.
    routes_are_documented_and_answered(server.addr, &auth, &doc);
}

/// Whether the router's `template` (`{name}` one segment, `{*name}` the rest) covers the
/// document's `path`, whose parameters are `{name}` too.
fn covers(template: &str, path: &str) -> bool {
    let (mut template, mut path) = (template.split('/'), path.split('/'));
    loop {
        match (template.next(), path.next()) {
            (None, None) => return true,
            (Some(t), Some(_)) if t.starts_with("{*") => return true,
            (Some(t), Some(p)) if t.starts_with('{') || t == p => {}
            _ => return false,
        }
    }
}

/// The table's route of a documented operation: same method, a path it covers, and its operation
/// id (followed by the app and resource names when per app).
fn route_of(path: &str, method: &str, op: &Value) -> Option<Route> {
    let id = op["operationId"].as_str().unwrap_or_default();
    Route::ALL.iter().copied().find(|r| {
        r.method().as_str().eq_ignore_ascii_case(method)
            && covers(r.template(), path)
            && (id == r.operation() || id.starts_with(&format!("{}__", r.operation())))
    })
}

fn routes_are_documented_and_answered(addr: std::net::SocketAddr, auth: &str, doc: &Value) {
    let mut documented = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap().iter().filter(|(key, _)| *key != "parameters") {
            let Some(route) = route_of(path, method, op) else {
                let summary = op["summary"].as_str().unwrap_or_default();
                assert!(summary.starts_with("wasi:http route"), "{method} {path} is described but is no route");
                continue;
            };
            documented.insert(route);
            // Any value for the parameters: a handler's own 404 (`unknown-execution`, `no-such-key`)
            // is an answer, the router's `not-found` or `method-not-allowed` is not.
            let concrete = path.split('/').map(|s| if s.starts_with('{') { "x" } else { s }).collect::<Vec<_>>();
            let answer = send(addr, &method.to_uppercase(), &concrete.join("/"), &[auth], b"");
            let code = answer.json()["code"].as_str().map(str::to_string);
            assert!(
                !matches!(code.as_deref(), Some("not-found" | "method-not-allowed")),
                "{method} {path} is described but not answered: {} {}",
                answer.status,
                answer.text()
            );
        }
    }
    let missing: Vec<_> = Route::ALL.iter().filter(|r| !documented.contains(r)).collect();
    assert!(missing.is_empty(), "routes not in the document: {missing:?}");
}

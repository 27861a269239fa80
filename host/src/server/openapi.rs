//! `/v1/openapi.json`: an OpenAPI 3.1 document generated from the loaded functions' WIT types
//! (the same JSON Schemas as `host inspect`), plus the fixed API and execution records, each app's
//! stores, buckets, dataset items, queues and topics, and its `wasi:http` routes. Paths, methods
//! and operation ids come from the route table ([`Route`]); bodies and answers are written here.

mod host;
mod items;

use axum::extract::State;
use serde_json::{Map, Value, json};

use super::Shared;
use super::routes::Route;
use crate::App;

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn octet_body(description: &str) -> Value {
    json!({ "description": description, "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } })
}

/// `{code: message}` responses every operation can give.
fn common_errors(codes: &[(&str, &str)]) -> Map<String, Value> {
    let mut responses = Map::new();
    for (status, description) in codes {
        responses.insert((*status).into(), error_response(description));
    }
    responses.insert("401".into(), error_response("Missing or wrong bearer token (`unauthorized`)"));
    responses
        .insert("503".into(), error_response("Too many requests at once (`overloaded`) or function paused (`paused`)"));
    responses
}

fn operation(summary: String, tag: &str, ok: (&str, Value), errors: &[(&str, &str)]) -> Value {
    let mut responses = common_errors(errors);
    responses.insert(ok.0.into(), ok.1);
    json!({ "summary": summary, "tags": [tag], "responses": responses })
}

/// The operation id of `route`; a per-app route's is followed by the app and resource names.
fn operation_id(route: Route, args: &[&str]) -> String {
    if route.per_app() { op_id(&[&[route.operation()], args].concat()) } else { route.operation().into() }
}

/// Put `op` into `paths` under `route`'s path (its parameters filled with `args` in order) and
/// method, with the route's operation id; the path item, for shared `parameters`.
fn add<'a>(paths: &'a mut Map<String, Value>, route: Route, args: &[&str], mut op: Value) -> &'a mut Value {
    op["operationId"] = operation_id(route, args).into();
    let item = paths.entry(route.openapi_path(args)).or_insert_with(|| json!({}));
    item[route.method().as_str().to_ascii_lowercase()] = op;
    item
}

fn path_params(names: &[&str]) -> Value {
    names.iter().map(|n| json!({ "name": n, "in": "path", "required": true, "schema": { "type": "string" } })).collect()
}

fn query_params(params: &[(&str, Value)]) -> Value {
    params.iter().map(|(n, schema)| json!({ "name": n, "in": "query", "schema": schema })).collect()
}

fn listing_schema() -> Value {
    json!({ "type": "object", "required": ["keys", "cursor"], "properties": {
        "keys": { "type": "array", "items": { "type": "string" } },
        "cursor": { "type": ["string", "null"], "description": "Pass as `cursor` for the next page; null on the last page." } } })
}

fn op_id(parts: &[&str]) -> String {
    parts.iter().map(|p| p.replace(|c: char| !c.is_ascii_alphanumeric(), "_")).collect::<Vec<_>>().join("__")
}

fn app_paths(app: &App, paths: &mut Map<String, Value>) {
    let name = app.name();
    for f in app.functions() {
        let export = f.export();
        let args = [name, f.name()];
        let mut invoke = operation(
            format!("Call `{}`: {}", f.name(), export.signature()),
            name,
            ("200", json_response("The function's result", export.result_schema())),
            &[
                ("400", "Body is not JSON (`bad-json`) or an argument does not match its WIT type (`bad-argument`)"),
                ("413", "Body too large (`body-too-large`)"),
                ("500", "The guest trapped or hit a limit (`trap`, `memory-limit`, `stack-overflow`, `host-error`)"),
                ("504", "The call ran past its `timeout` (`timeout`)"),
            ],
        );
        if let Some(error) = export.error_schema() {
            let schema = json!({ "allOf": [{ "$ref": "#/components/schemas/Error" },
                { "type": "object", "required": ["error"], "properties": { "error": error } }] });
            invoke["responses"]["422"] = json_response("The function returned `err` (`guest-error`)", schema);
        }
        invoke["requestBody"] =
            json!({ "required": true, "content": { "application/json": { "schema": export.params_schema() } } });
        invoke["parameters"] = json!([{ "name": "async", "in": "query", "required": false,
            "description": "Run the call as a job: answer 202 with its execution id at once",
            "schema": { "type": "boolean", "default": false } },
            { "name": "enqueue", "in": "query", "required": false,
            "description": "Like `async`, but such calls of the function run one at a time, in order",
            "schema": { "type": "boolean", "default": false } }]);
        invoke["responses"]["202"] = json_response(
            "Started as a job (`?async=true` or `?enqueue=true`)",
            json!({
            "type": "object", "required": ["id", "status", "location"], "properties": {
                "id": { "type": "string" }, "status": { "const": "queued" }, "location": { "type": "string" } } }),
        );
        if export.may_return_media() {
            invoke["responses"]["200"]["content"]["*/*"] =
                json!({ "schema": { "type": "string", "format": "binary" } });
            invoke["description"] = "Media results (a `content-type` and `body` record) come as raw bytes of their content type unless `Accept` is exactly `application/json`.".into();
        }
        if export.takes_accept() {
            invoke["description"] = format!(
                "{} The `accept` argument defaults to the `Accept` header.",
                invoke["description"].as_str().unwrap_or_default()
            )
            .trim()
            .into();
        }
        let mut describe = operation(
            format!("Describe `{}`", f.name()),
            name,
            ("200", json_response("Signature and schemas", json!({ "$ref": "#/components/schemas/Function" }))),
            &[],
        );
        if super::public::is_public(app, f) {
            // Direct calls and the description need no token; jobs and enqueued calls still do.
            for op in [&mut invoke, &mut describe] {
                op["security"] = json!([{}, { "bearer": [] }]);
                op["responses"]["429"] = error_response(
                    "Too many requests without a token from this address (`rate-limited`); see `Retry-After`",
                );
            }
        }
        add(paths, Route::DescribeFunction, &args, describe);
        add(paths, Route::Call, &args, invoke);
        let outcomes = json!({ "type": "object", "required": ["results", "succeeded", "failed"], "properties": {
            "results": { "type": "array", "items": { "type": "object",
                "description": "`{\"ok\": RESULT}` or `{\"err\": {\"code\", \"message\"}}`" } },
            "succeeded": { "type": "integer" }, "failed": { "type": "integer" } } });
        let stream = json!([{ "name": "stream", "in": "query", "required": false,
            "description": "Answer one JSON line per call as each ends (`application/x-ndjson`)",
            "schema": { "type": "boolean", "default": false } }]);
        for (route, field, what) in [
            (
                Route::Map,
                "inputs",
                "a list of values of its single parameter, or an object of equally long lists by parameter name",
            ),
            (Route::Starmap, "args", "a list of argument lists (or objects by parameter name)"),
        ] {
            let mut op = operation(
                format!("Call `{}` once per input in parallel instances; outcomes in input order", f.name()),
                name,
                ("200", json_response("One outcome per input", outcomes.clone())),
                &[("400", "Body is not JSON (`bad-json`) or not the expected shape (`bad-argument`)")],
            );
            op["parameters"] = stream.clone();
            op["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": {
                "type": "object", "required": [field], "properties": { field: { "description": what } } } } } });
            add(paths, route, &args, op);
        }
        for (route, paused) in [(Route::Pause, true), (Route::Resume, false)] {
            let summary = if paused {
                format!("Pause the component of `{}`: its calls get 503 `paused`", f.name())
            } else {
                format!("Resume the component of `{}`", f.name())
            };
            let op = operation(summary, name, ("200", json_response("New state", json!({ "type": "object" }))), &[]);
            add(paths, route, &args, op);
        }
    }
    let (stores, buckets) = (app.manifest().granted(|g| &g.kv), app.manifest().granted(|g| &g.buckets));
    let key_param =
        json!([{ "name": "key", "in": "path", "required": true, "schema": { "type": "string", "minLength": 1 } }]);
    let kv = [Route::ListKv, Route::GetKv, Route::PutKv, Route::DeleteKv];
    let objects = [Route::ListBucket, Route::GetObject, Route::PutObject, Route::DeleteObject];
    for (routes, names, what, noun) in [(kv, stores, "a value", "store"), (objects, buckets, "an object", "bucket")] {
        for store in names {
            let args = [name, store.as_str()];
            let mut params = vec![
                json!({ "name": "prefix", "in": "query", "schema": { "type": "string" } }),
                json!({ "name": "cursor", "in": "query", "schema": { "type": "string" } }),
            ];
            if noun == "bucket" {
                params.push(json!({ "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }));
            }
            let mut list = operation(
                format!("List keys of {noun} `{store}`"),
                name,
                ("200", json_response("One page of keys", listing_schema())),
                &[("400", "Bad query (`bad-query`)")],
            );
            list["parameters"] = Value::Array(params);
            add(paths, routes[0], &args, list);
            let errors = [("400", "Invalid key (`invalid-key`)"), ("404", "No such key (`no-such-key`)")];
            let get =
                operation(format!("Read {what} of {noun} `{store}`"), name, ("200", octet_body("The bytes")), &errors);
            let conflict = (
                "409",
                "An object is where a folder of the key should be, or the key is a folder holding objects (`key-conflict`)",
            );
            let put_errors = [errors[0], ("413", "Body too large (`body-too-large`)"), conflict];
            let mut put = operation(
                format!("Write {what} of {noun} `{store}`"),
                name,
                ("204", json!({ "description": "Written and on disk" })),
                &put_errors[..if noun == "bucket" { 3 } else { 2 }],
            );
            put["requestBody"] = json!({ "required": true, "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } });
            let delete = operation(
                format!("Delete {what} of {noun} `{store}` (absent is fine)"),
                name,
                ("204", json!({ "description": "Gone" })),
                &errors[..1],
            );
            add(paths, routes[1], &args, get);
            add(paths, routes[2], &args, put);
            add(paths, routes[3], &args, delete)["parameters"] = key_param.clone();
        }
    }
    queue_and_topic_paths(app, paths);
    items::dataset_paths(app, paths);
    for route in &app.manifest().http_routes {
        let path = route.prefix().map_or(route.route.as_str(), |p| if p.is_empty() { "/" } else { p });
        let answer = json!({ "description": "Whatever the component answers", "content": { "*/*": { "schema": {} } } });
        let op = |verb: &str| {
            let mut op = json!({ "operationId": op_id(&[verb, name, "route", path]), "tags": [name],
                "summary": format!("wasi:http route served by function `{}`", route.function),
                "responses": { "default": answer.clone() } });
            if route.public {
                op["security"] = json!([]);
            }
            op
        };
        paths.insert(path.to_string(), json!({ "get": op("get"), "post": op("post") }));
    }
}

/// The operator's queue and topic endpoints of the queues and topics the app grants.
fn queue_and_topic_paths(app: &App, paths: &mut Map<String, Value>) {
    let name = app.name();
    let raw = json!({ "required": true, "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } });
    let created = (
        "201",
        json_response(
            "Accepted, on disk",
            json!({ "type": "object", "required": ["id"], "properties": { "id": { "type": "string" } } }),
        ),
    );
    let bad = [("400", "Bad query or body (`bad-query`, `bad-json`, `bad-argument`)")];
    for queue in
        app.manifest().granted(|g| &g.queues).iter().flat_map(|q| [q.clone(), crate::names::dead_letter_queue(q)])
    {
        let args = [name, queue.as_str()];
        let stats = operation(
            format!("Messages ready and waiting in `{queue}`"),
            name,
            (
                "200",
                json_response(
                    "Counts",
                    json!({ "type": "object", "properties": { "queue": { "type": "string" }, "ready": { "type": "integer" }, "waiting": { "type": "integer" }, "leased": { "type": "integer", "description": "Of `waiting`, the leased ones" } } }),
                ),
            ),
            &[],
        );
        let mut send = operation(format!("Send the body as a message to `{queue}`"), name, created.clone(), &bad);
        send["requestBody"] = raw.clone();
        send["parameters"] = json!([{ "name": "delay", "in": "query", "schema": { "type": "string" }, "description": "Visible after this long, e.g. `10s`" }]);
        let message = json!({ "type": "object", "properties": { "id": { "type": "string" }, "body": { "type": "string", "contentEncoding": "base64" }, "attempt": { "type": "integer" }, "lease": { "type": "string" } } });
        let mut receive = operation(
            format!("Lease visible messages of `{queue}`, oldest first"),
            name,
            ("200", json_response("Leased messages", json!({ "type": "array", "items": message }))),
            &bad,
        );
        receive["parameters"] = json!([
            { "name": "max", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 100, "default": 1 } },
            { "name": "visibility", "in": "query", "schema": { "type": "string", "default": "30s" } }]);
        let mut complete = operation(
            format!("Remove a leased message of `{queue}`"),
            name,
            ("204", json!({ "description": "Removed" })),
            &[bad[0], ("409", "The lease is over (`lease-expired`)")],
        );
        complete["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": {
            "type": "object", "required": ["lease"], "properties": { "lease": { "type": "string" } } } } } });
        let listed = json!({ "type": "object", "properties": { "id": { "type": "string" }, "body": { "type": "string", "contentEncoding": "base64" }, "size": { "type": "integer" } } });
        let mut list = operation(
            format!("Messages of `{queue}`, oldest first, leased or not, without leasing them"),
            name,
            ("200", json_response("Messages", json!({ "type": "array", "items": listed }))),
            &bad,
        );
        list["parameters"] = query_params(&[("limit", json!({ "type": "integer", "minimum": 0, "default": 100 }))]);
        let missing = ("404", "No such message (`no-such-message`)");
        let gone = ("204", json!({ "description": "Done" }));
        add(paths, Route::QueueStats, &args, stats);
        add(paths, Route::Send, &args, send);
        add(paths, Route::Receive, &args, receive);
        add(paths, Route::Complete, &args, complete);
        add(paths, Route::ListMessages, &args, list);
        let remove = operation(format!("Remove a message of `{queue}`, leased or not"), name, gone.clone(), &[]);
        add(paths, Route::DeleteMessage, &args, remove)["parameters"] = path_params(&["id"]);
        if crate::names::dead_letters_of(&queue).is_some() {
            let requeue =
                operation(format!("Send a dead letter of `{queue}` back to its queue"), name, gone, &[missing]);
            add(paths, Route::Requeue, &args, requeue)["parameters"] = path_params(&["id"]);
        }
    }
    let mut topics = app.manifest().granted(|g| &g.topics);
    topics.extend(app.manifest().topic_triggers.iter().map(|t| t.topic.clone()));
    topics.sort();
    topics.dedup();
    for topic in topics {
        let mut publish =
            operation(format!("Publish the body to every subscription of `{topic}`"), name, created.clone(), &bad);
        publish["requestBody"] = raw.clone();
        publish["description"] = "Query parameters become the event's attributes.".into();
        add(paths, Route::Publish, &[name, &topic], publish);
    }
}

/// The OpenAPI 3.1 document for the loaded apps.
pub(super) async fn document(State(server): State<Shared>) -> axum::Json<Value> {
    let mut paths = Map::new();
    let snapshot = server.running().snapshot();
    let names: Vec<&String> = snapshot.apps.keys().collect();
    for &route in Route::ALL {
        if let Some(op) = host::operation_of(route, &names) {
            add(&mut paths, route, &[], op);
        }
    }
    for served in snapshot.apps.values() {
        app_paths(&served.app, &mut paths);
    }
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "host serve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Functions of the loaded apps, generated from their WIT types. Errors are JSON with a stable `code`.",
        },
        "tags": std::iter::once(json!({ "name": "host", "description": "The host itself: apps, calls, metrics" }))
            .chain(snapshot.apps.keys().map(|name| json!({ "name": name, "description": format!("App `{name}`: its functions, stores, buckets and routes") })))
            .collect::<Vec<_>>(),
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "required": ["code", "message"], "properties": {
                    "code": { "type": "string", "description": "Stable, machine-readable" },
                    "message": { "type": "string", "description": "For humans" } } },
                "Function": { "type": "object", "required": ["name", "export", "signature", "params", "result", "paused"], "properties": {
                    "name": { "type": "string" }, "export": { "type": "string" }, "signature": { "type": "string" },
                    "params": { "type": "object" }, "result": { "type": "object" }, "error": { "type": ["object", "null"] },
                    "paused": { "type": "boolean" } } },
                "App": { "type": "object", "required": ["name", "functions"], "properties": {
                    "name": { "type": "string" },
                    "functions": { "type": "array", "items": { "$ref": "#/components/schemas/Function" } },
                    "routes": { "type": "array", "items": { "type": "object" } },
                    "site": { "type": ["string", "null"] },
                    "datasets": { "type": "array", "items": { "type": "string" } },
                    "queues": { "type": "array", "items": { "type": "string" } },
                    "subscriptions": { "type": "array", "description": "The app's `[[trigger.topic]]` subscriptions", "items": { "type": "object", "properties": {
                        "name": { "type": "string" }, "topic": { "type": "string" }, "function": { "type": "string" } } } },
                    "version": { "type": ["object", "null"], "description": "The deployed version it runs; null when served from a manifest file" } } },
                "Call": { "type": "object", "properties": {
                    "app": { "type": "string" }, "function": { "type": "string" }, "trigger": { "type": "string" },
                    "outcome": { "type": "string" }, "micros": { "type": "integer" }, "finished_ms": { "type": "integer" } } },
            },
        },
    });
    if server.config.token.is_some() {
        doc["security"] = json!([{ "bearer": [] }]);
    }
    axum::Json(doc)
}

//! The OpenAPI operations of the routes outside the apps: the app list, recent calls, the
//! execution records, this document, metrics, health, and the dashboard and docs pages.

use serde_json::{Value, json};

use super::{json_response, operation, path_params, query_params};
use crate::server::routes::{Access, Route};
use crate::storage::executions::Status;

/// The operation of `route`, with the table's summary, or `None` for a per-app route (those are
/// described once per app and granted resource).
pub(super) fn operation_of(route: Route, apps: &[&String]) -> Option<Value> {
    let op = |ok: (&str, Value), errors: &[(&str, &str)]| operation(route.summary().into(), "host", ok, errors);
    let mut op = match route {
        Route::ListApps => op(
            ("200", json_response("Apps", json!({ "type": "array", "items": { "$ref": "#/components/schemas/App" } }))),
            &[],
        ),
        Route::ShowApp => {
            let mut show = op(
                ("200", json_response("The app", json!({ "$ref": "#/components/schemas/App" }))),
                &[("404", "No such app (`unknown-app`)")],
            );
            show["parameters"] = json!([{ "name": "app", "in": "path", "required": true, "schema": { "type": "string", "enum": apps } }]);
            show
        }
        Route::Deploy | Route::Undeploy | Route::Versions | Route::Rollback => deploy(route),
        Route::RecentCalls => op(
            (
                "200",
                json_response("Calls", json!({ "type": "array", "items": { "$ref": "#/components/schemas/Call" } })),
            ),
            &[],
        ),
        Route::CallHistory => {
            let count = json!({ "type": "integer", "minimum": 0 });
            let minute = json!({ "type": "object", "properties": {
                "minute_ms": count, "calls": count, "errors": count, "p50_us": count, "p90_us": count, "p99_us": count } });
            let function = json!({ "type": "object", "properties": {
                "app": { "type": "string" }, "function": { "type": "string" },
                "minutes": { "type": "array", "items": minute } } });
            op(
                (
                    "200",
                    json_response(
                        "Functions with calls in the last hour",
                        json!({ "type": "array", "items": function }),
                    ),
                ),
                &[],
            )
        }
        Route::ListExecutions | Route::ShowExecution | Route::ExecutionLogs | Route::CancelExecution => {
            execution(route)
        }
        Route::OpenApi => op(("200", json_response("OpenAPI 3.1", json!({ "type": "object" }))), &[]),
        Route::Metrics => op(
            (
                "200",
                json!({ "description": "Prometheus text format", "content": { "text/plain": { "schema": { "type": "string" } } } }),
            ),
            &[],
        ),
        Route::Healthz => public(json!({
            "200": json_response("Alive", json!({ "type": "object", "properties": { "status": { "const": "ok" } } })),
            "503": super::error_response("The embedded store refuses writes (a full disk, say) until the host restarts (`store-failed`)"),
        })),
        Route::Login => {
            let mut login =
                public(json!({ "204": { "description": "The session cookie is set (or no token is needed)" },
                "400": super::error_response("Not a JSON body with a `token` (`bad-request`)"),
                "401": super::error_response("Wrong token (`unauthorized`)") }));
            login["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": {
                "type": "object", "required": ["token"], "properties": { "token": { "type": "string" } } } } } });
            login
        }
        Route::Logout => public(json!({ "204": { "description": "The session is over, its cookie expired" } })),
        Route::Dashboard | Route::Docs => text("text/html"),
        Route::DashboardScript | Route::DocsScript => text("text/javascript"),
        Route::Style => text("text/css"),
        // Per app: described by the app's paths.
        _ => return None,
    };
    op["summary"] = route.summary().into();
    if route.access() == Access::Public {
        op["security"] = json!([]);
    }
    Some(op)
}

/// A public operation with just `responses`.
fn public(responses: Value) -> Value {
    json!({ "tags": ["host"], "responses": responses })
}

/// A public page or asset of `content_type`.
fn text(content_type: &str) -> Value {
    public(
        json!({ "200": { "description": "The file", "content": { content_type: { "schema": { "type": "string" } } } } }),
    )
}

/// `PUT|DELETE /v1/apps/{app}`, its versions and rollback: deploys without a restart.
fn deploy(route: Route) -> Value {
    let version = json!({ "type": "object", "required": ["app", "version", "digest", "size", "deployed_ms"], "properties": {
        "app": { "type": "string" }, "version": { "type": "integer", "minimum": 1 },
        "digest": { "type": "string", "description": "sha256:HEX of the bundle" },
        "size": { "type": "integer" }, "deployed_ms": { "type": "integer" } } });
    let not_deployed = ("404", "The app is not deployed (`not-deployed`)");
    let from_file = ("409", "The app is served from a manifest file (`app-from-file`)");
    let load = ("422", "The version does not load: compile, models, variables, triggers (`load-failed`)");
    let op = |ok: (&str, Value), errors: &[(&str, &str)]| operation(route.summary().into(), "host", ok, errors);
    let mut op = match route {
        Route::Deploy => {
            let mut deployed = version.clone();
            deployed["properties"]["unchanged"] = json!({ "type": "boolean" });
            let mut op = op(
                ("201", json_response("The new version, now running", deployed.clone())),
                &[
                    ("200", "The bundle was the running version already (`unchanged`: true)"),
                    ("400", "Not a bundle, or one of another app (`bad-bundle`, `wrong-app`)"),
                    ("409", "Routes of another app, or an app served from a file (`route-conflict`, `app-from-file`)"),
                    ("413", "Over `--max-bundle` (`body-too-large`)"),
                    load,
                ],
            );
            op["requestBody"] = json!({ "required": true, "description": "A bundle made by `host deploy` or `host push`: a tar of `host.toml`, components, model files and site.",
                "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } });
            op
        }
        Route::Undeploy => {
            let mut op = op(
                ("204", json!({ "description": "Stopped; its versions are forgotten, its data stays" })),
                &[not_deployed, from_file],
            );
            op["responses"]["200"] = json_response(
                "With `purge`: how much was deleted",
                json!({ "type": "object",
                "properties": { "purged": { "type": "object", "properties": {
                    "keys": { "type": "integer" }, "objects": { "type": "integer" }, "items": { "type": "integer" } } } } }),
            );
            op["parameters"] = query_params(&[("purge", json!({ "type": "boolean" }))]);
            op
        }
        Route::Versions => op(
            (
                "200",
                json_response(
                    "Newest first, and the version running on this node",
                    json!({ "type": "object", "properties": {
                "app": { "type": "string" }, "running": { "type": ["integer", "null"] },
                "versions": { "type": "array", "items": version } } }),
                ),
            ),
            &[not_deployed],
        ),
        _ => {
            let mut op = op(
                ("200", json_response("The version now running", version)),
                &[
                    ("404", "Not deployed, or no such version (`not-deployed`, `unknown-version`)"),
                    ("409", "No earlier version, or an app from a file (`nothing-to-roll-back`, `app-from-file`)"),
                    load,
                ],
            );
            op["requestBody"] = json!({ "required": false, "content": { "application/json": { "schema": {
                "type": "object", "properties": { "version": { "type": "integer", "description": "Default: the one before the running one" } } } } } });
            op
        }
    };
    let mut parameters = path_params(&["app"]);
    if let Some(query) = op["parameters"].as_array() {
        parameters.as_array_mut().expect("a list").extend(query.iter().cloned());
    }
    op["parameters"] = parameters;
    op
}

/// `/v1/executions...`: the records of calls, jobs and triggered runs.
fn execution(route: Route) -> Value {
    let string = json!({ "type": "string" });
    let record = json!({ "type": "object", "required": ["id", "app", "function", "trigger", "status"], "properties": {
        "id": string, "app": string, "function": string, "trigger": string, "input": {},
        "status": { "enum": ["queued", "running", "succeeded", "failed", "timed-out"] },
        "output": {}, "error": { "type": ["object", "null"] }, "attempt": { "type": "integer" },
        "max_attempts": { "type": "integer" }, "queued_ms": { "type": "integer" },
        "started_ms": { "type": ["integer", "null"] }, "finished_ms": { "type": ["integer", "null"] },
        "item": { "type": ["array", "null"], "items": string } } });
    let bad = ("400", "Bad query (`bad-query`)");
    let unknown = ("404", "No such execution (`unknown-execution`)");
    let op = |ok: (&str, Value), errors: &[(&str, &str)]| operation(route.summary().into(), "host", ok, errors);
    let (mut op, query) = match route {
        Route::ListExecutions => (
            op(("200", json_response("Records", json!({ "type": "array", "items": record }))), &[bad]),
            query_params(&[
                ("app", string.clone()),
                ("function", string.clone()),
                ("trigger", string.clone()),
                ("status", json!({ "enum": Status::ALL.map(Status::as_str) })),
                ("before", string.clone()),
                ("limit", json!({ "type": "integer", "minimum": 0 })),
                (
                    "since",
                    json!({ "type": "integer", "minimum": 0, "description": "Queued at or after (ms since the Unix epoch)" }),
                ),
                (
                    "until",
                    json!({ "type": "integer", "minimum": 0, "description": "Queued before (ms since the Unix epoch)" }),
                ),
                ("dataset", json!({ "type": "string", "description": "With `item`: the item's dataset" })),
                (
                    "item",
                    json!({ "type": "string", "description": "With `dataset`: the executions of item triggers on this item" }),
                ),
            ]),
        ),
        Route::ShowExecution => (
            op(("200", json_response("The record", record)), &[bad, unknown]),
            query_params(&[(
                "wait",
                json!({ "type": "string", "description": "Wait up to this long (e.g. `10s`, at most 5 minutes) for it to finish" }),
            )]),
        ),
        Route::ExecutionLogs => {
            let text = json!({ "description": "The logs of every attempt, or (followed) Server-Sent Events", "content": {
                "text/plain": { "schema": { "type": "string" } }, "text/event-stream": { "schema": { "type": "string" } } } });
            (op(("200", text), &[bad, unknown]), query_params(&[("follow", json!({ "type": "boolean" }))]))
        }
        _ => (
            op(
                ("200", json_response("The execution's record", json!({ "type": "object" }))),
                &[unknown, ("409", "The execution is over already (`already-final`)")],
            ),
            json!([]),
        ),
    };
    // The path's own parameters (`{id}`) first, then the query's.
    let names: Vec<&str> = if route.template().contains("{id}") { vec!["id"] } else { Vec::new() };
    let mut params = path_params(&names);
    params.as_array_mut().expect("array").extend(query.as_array().into_iter().flatten().cloned());
    op["parameters"] = params;
    op
}

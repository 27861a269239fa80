//! The OpenAPI operations of the routes outside the apps: the app list, recent calls, the
//! execution records, this document, metrics, health, and the dashboard and docs pages.

use serde_json::{Value, json};

use super::{json_response, operation, path_params, query_params};
use crate::server::routes::{Access, Route};

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
        Route::RecentCalls => op(
            (
                "200",
                json_response("Calls", json!({ "type": "array", "items": { "$ref": "#/components/schemas/Call" } })),
            ),
            &[],
        ),
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
        Route::Healthz => public(json!({ "200": json_response("Alive",
            json!({ "type": "object", "properties": { "status": { "const": "ok" } } })) })),
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
                ("status", json!({ "enum": ["queued", "running", "succeeded", "failed", "timed-out"] })),
                ("before", string.clone()),
                ("limit", json!({ "type": "integer", "minimum": 0 })),
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

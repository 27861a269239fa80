//! `/v1/apps...` and `/v1/calls`: list apps and functions with their schemas, call functions
//! (now, as jobs, serially, or mapped over many inputs), pause and resume them, and see the most
//! recent calls.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::routes::{Access, Route};
use super::scopes::Grant;
use super::{ApiError, Shared, describe_route};
use crate::deploy::{Origin, Served};
use crate::{App, Function};

fn describe_function(app: &App, f: &Function) -> Value {
    let mut described = f.export().describe(f.name());
    let paused = app.guest(f.name()).is_ok_and(|g| g.paused());
    described.as_object_mut().expect("object").insert("paused".into(), paused.into());
    described
}

/// An app as it runs: its functions, routes, site, datasets, and the deployed version it runs
/// (`null` for an app served from a manifest file).
fn describe_app(served: &Served) -> Value {
    let app = &served.app;
    let version = match &served.origin {
        Origin::Deployed(version) => super::deploys::describe(version),
        Origin::File(_) => Value::Null,
    };
    json!({
        "name": app.name(),
        "functions": app.functions().iter().map(|f| describe_function(app, f)).collect::<Vec<_>>(),
        "routes": app.manifest().http_routes.iter().map(describe_route).collect::<Vec<_>>(),
        "site": app.manifest().site.as_ref().map(|s| s.route.clone()),
        "datasets": app.manifest().granted(|g| &g.datasets),
        "queues": app.manifest().granted(|g| &g.queues),
        "subscriptions": app.manifest().topic_triggers.iter()
            .map(|t| json!({ "name": t.name, "topic": t.topic, "function": t.function }))
            .collect::<Vec<_>>(),
        "version": version,
    })
}

/// The app named `name` as it runs now, or a 404 naming the apps there are.
pub(super) fn find(server: &Shared, name: &str) -> Result<Arc<App>, ApiError> {
    find_served(server, name).map(|served| served.app)
}

/// [`find`], with where the app comes from (a file or a deployed version).
fn find_served(server: &Shared, name: &str) -> Result<Served, ApiError> {
    let snapshot = server.running().snapshot();
    snapshot.apps.get(name).cloned().ok_or_else(|| ApiError {
        extra: json!({ "available": snapshot.apps.keys().collect::<Vec<_>>() }),
        ..ApiError::not_found("unknown-app", format!("no app `{name}`"))
    })
}

/// The apps the caller has a scope of (every app for `admin`).
pub(super) async fn list_apps(State(server): State<Shared>, Extension(grant): Extension<Grant>) -> axum::Json<Value> {
    let snapshot = server.running().snapshot();
    let visible = snapshot.apps.values().filter(|s| grant.allows(Access::AppAny, Some(s.app.name())).is_ok());
    axum::Json(Value::Array(visible.map(describe_app).collect()))
}

pub(super) async fn show_app(
    State(server): State<Shared>,
    Path(app): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    Ok(axum::Json(describe_app(&find_served(&server, &app)?)))
}

pub(super) async fn show_function(
    State(server): State<Shared>,
    Path((app, function)): Path<(String, String)>,
) -> Result<axum::Json<Value>, ApiError> {
    let app = find(&server, &app)?;
    Ok(axum::Json(describe_function(&app, &app.function(&function)?)))
}

/// Turn a body rejection into a JSON error.
pub(super) fn body_error(server: &Shared, rejection: BytesRejection) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("request body over {} bytes", server.config.max_body),
        ),
        status => ApiError::new(status, "bad-body", rejection.body_text()),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InvokeQuery {
    #[serde(default)]
    r#async: bool,
    #[serde(default)]
    enqueue: bool,
}

impl InvokeQuery {
    /// Whether the call runs now, not as a job or enqueued.
    pub(super) fn direct(&self) -> bool {
        !self.r#async && !self.enqueue
    }
}

/// The JSON of a request body; an empty body is `null`.
fn json_body(server: &Shared, body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = body.map_err(|e| body_error(server, e))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("bad-json", format!("request body is not JSON: {e}")))
}

/// Call a function with the JSON body as its arguments (an empty body: no arguments). The answer
/// is the JSON result, or the raw bytes of a media result (unless `Accept` is exactly
/// `application/json`); `Server-Timing` says how long the call took (failed calls included). An
/// `accept` parameter left out is taken from the `Accept` header. With `?async=true` the call
/// runs as a job: 202 with its execution id at once (follow it under `/v1/executions/ID`);
/// `?enqueue=true` does the same, but such calls of the function run one at a time, in order.
pub(super) async fn invoke(
    State(server): State<Shared>,
    Path((app, function)): Path<(String, String)>,
    Query(query): Query<InvokeQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let function = find(&server, &app)?.function(&function)?;
    let mut args = json_body(&server, body)?;
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok());
    if let Some(accept) = accept
        && function.export().takes_accept()
    {
        if args.is_null() {
            args = json!({});
        }
        if let Some(args) = args.as_object_mut() {
            args.entry("accept").or_insert_with(|| accept.into());
        }
    }
    if query.r#async || query.enqueue {
        let id = if query.enqueue { function.enqueue(&args).await? } else { function.spawn(&args).await? };
        let location = Route::ShowExecution.path(&[&id]);
        let body = json!({ "id": id, "status": "queued", "location": location });
        return Ok((StatusCode::ACCEPTED, [(LOCATION, location)], axum::Json(body)).into_response());
    }
    let report = function.invoke(&args).await.map_err(crate::Error::from)?;
    let timing = format!("call;dur={:.3}", report.elapsed.as_secs_f64() * 1000.0);
    let mut response = match report.result {
        Ok(value) => match function.export().media(&value).filter(|_| accept != Some("application/json")) {
            Some((content_type, body)) => ([(CONTENT_TYPE, content_type)], body).into_response(),
            None => axum::Json(value).into_response(),
        },
        Err(error) => ApiError::from(error).into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&timing) {
        response.headers_mut().insert("server-timing", value);
    }
    Ok(response)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MapQuery {
    /// Answer one JSON line per call as each ends (`{"index": I, "ok": ...}` or `"err"`).
    #[serde(default)]
    stream: bool,
}

/// `map`: body `{"inputs": [...]}`, a list of values of the function's single parameter, or an
/// object of equally long lists by parameter name. The answer is `{"results": [...]}` in input
/// order, each `{"ok": value}` or `{"err": {"code", "message"}}`, plus counts.
pub(super) async fn map(
    State(server): State<Shared>,
    Path((app, function)): Path<(String, String)>,
    Query(query): Query<MapQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let function = find(&server, &app)?.function(&function)?;
    let inputs = field(json_body(&server, body)?, "inputs")?;
    let arg_sets = function.map_inputs(inputs).map_err(crate::Error::from)?;
    Ok(run_many(function, arg_sets, query.stream).await)
}

/// `starmap`: body `{"args": [...]}`, one argument list (or object by parameter name) per call;
/// answers like `map`.
pub(super) async fn starmap(
    State(server): State<Shared>,
    Path((app, function)): Path<(String, String)>,
    Query(query): Query<MapQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let function = find(&server, &app)?.function(&function)?;
    let Value::Array(arg_sets) = field(json_body(&server, body)?, "args")? else {
        return Err(ApiError::bad_request("bad-argument", "`args`: expected a list of argument lists"));
    };
    Ok(run_many(function, Box::new(arg_sets.into_iter()), query.stream).await)
}

/// Field `name` of a JSON object body.
fn field(mut body: Value, name: &str) -> Result<Value, ApiError> {
    match body.get_mut(name).map(Value::take) {
        Some(value) => Ok(value),
        None => Err(ApiError::bad_request("bad-argument", format!("expected a JSON object with `{name}`"))),
    }
}

/// Lines of a streamed map that may wait for a slow client; calls start only as they are sent.
const STREAM_BUFFER: usize = 64;

/// Run a map; streamed, one JSON line per call as each ends. A streamed map whose client is gone
/// starts no more calls (those running finish and are recorded).
async fn run_many(function: Function, arg_sets: crate::MapInputs, stream: bool) -> Response {
    if !stream {
        let outcomes = function.starmap(arg_sets, |_, _| {}).await;
        let failed = outcomes.iter().filter(|o| o.is_err()).count();
        let results: Vec<Value> = outcomes.iter().map(crate::outcome_json).collect();
        let body = json!({ "results": results, "succeeded": outcomes.len() - failed, "failed": failed });
        return axum::Json(body).into_response();
    }
    let (lines, mut receiver) = tokio::sync::mpsc::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        let (mut calls, mut stopped) = (function.calls(arg_sets), false);
        while let Some((index, outcome)) = calls.next().await {
            let mut line = crate::outcome_json(&outcome);
            line["index"] = index.into();
            if lines.send(format!("{line}\n")).await.is_err() && !stopped {
                tracing::info!(function = function.name(), "the client of a streamed map is gone: no more calls start");
                calls.stop();
                stopped = true;
            }
        }
    });
    let body = futures_util::stream::poll_fn(move |cx| {
        receiver.poll_recv(cx).map(|l| l.map(Ok::<_, std::convert::Infallible>))
    });
    ([(CONTENT_TYPE, "application/x-ndjson")], axum::body::Body::from_stream(body)).into_response()
}

fn set_paused(server: &Shared, app: &str, function: &str, paused: bool) -> Result<axum::Json<Value>, ApiError> {
    let guest = find(server, app)?.guest(function)?.clone();
    guest.set_paused(paused);
    tracing::info!(app, function = guest.name(), paused, "function {}", if paused { "paused" } else { "resumed" });
    Ok(axum::Json(json!({ "app": app, "function": guest.name(), "paused": paused })))
}

/// Stop a function (every export and route of its component) taking calls: they get `503 paused`.
pub(super) async fn pause(
    State(server): State<Shared>,
    Path((app, function)): Path<(String, String)>,
) -> Result<axum::Json<Value>, ApiError> {
    set_paused(&server, &app, &function, true)
}

pub(super) async fn resume(
    State(server): State<Shared>,
    Path((app, function)): Path<(String, String)>,
) -> Result<axum::Json<Value>, ApiError> {
    set_paused(&server, &app, &function, false)
}

pub(super) async fn recent_calls(State(server): State<Shared>) -> axum::Json<Value> {
    axum::Json(json!(server.host.metrics().recent()))
}

pub(super) async fn call_history(State(server): State<Shared>) -> axum::Json<Value> {
    axum::Json(json!(server.host.metrics().history()))
}

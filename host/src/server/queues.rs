//! Operator access to an app's queues: `/v1/apps/{app}/queues/{queue}...` (send, look, receive,
//! complete; list, requeue and remove messages, for dead letters). Only queues granted to some
//! function of the app are reachable (a queue's grant covers `NAME.dead`). Bodies travel as raw
//! bytes on the way in and as base64 in JSON on the way out.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{body_error, find};
use super::{ApiError, Shared};
use crate::manifest::QueueSpec;
use crate::storage::queues::{Queue, QueueError};

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> ApiError {
        let message = error.to_string();
        match error {
            QueueError::LeaseExpired(_) => ApiError::new(StatusCode::CONFLICT, "lease-expired", message),
            QueueError::Invalid(_) => ApiError::bad_request("bad-argument", message),
            QueueError::NoMessage(..) => ApiError::not_found("no-such-message", message),
            QueueError::Storage(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store-error", message),
        }
    }
}

/// Queue `name` of `app`, when some function of the app is granted it.
fn queue(server: &Shared, app: &str, name: &str) -> Result<std::sync::Arc<Queue>, ApiError> {
    let app = find(server, app)?;
    if !app.manifest().functions.values().any(|f| f.grants.queue(name)) {
        return Err(ApiError {
            extra: json!({ "available": app.manifest().granted(|g| &g.queues) }),
            ..ApiError::not_found("unknown-queue", format!("app `{}` grants no queue `{name}`", app.name()))
        });
    }
    Ok(server.host.queue(app.name(), name, &QueueSpec::of(&app.manifest().queues, name))?)
}

fn duration(what: &str, text: Option<&str>, default: Duration) -> Result<Duration, ApiError> {
    text.map_or(Ok(default), |t| {
        humantime::parse_duration(t)
            .map_err(|e| ApiError::bad_request("bad-query", format!("{what} `{t}`: {e} (expected e.g. `10s`)")))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SendQuery {
    /// Visible after this long, e.g. `10s`.
    delay: Option<String>,
}

/// Send the raw request body as a message; 201 with its id.
pub(super) async fn send(
    State(server): State<Shared>,
    Path((app, name)): Path<(String, String)>,
    Query(q): Query<SendQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let queue = queue(&server, &app, &name)?;
    let body = body.map_err(|e| body_error(&server, e))?;
    let delay = duration("delay", q.delay.as_deref(), Duration::ZERO)?;
    let id = queue.send(body.to_vec(), delay).await?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "id": id }))))
}

/// How many messages are ready and waiting (leased or delayed).
pub(super) async fn stats(
    State(server): State<Shared>,
    Path((app, name)): Path<(String, String)>,
) -> Result<axum::Json<Value>, ApiError> {
    let stats = queue(&server, &app, &name)?.stats().await?;
    Ok(axum::Json(json!({ "queue": name, "ready": stats.ready, "waiting": stats.waiting, "leased": stats.leased })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReceiveQuery {
    /// At most this many messages (default 1, at most 100).
    max: Option<u32>,
    /// Lease them for this long (default `30s`).
    visibility: Option<String>,
}

/// Lease visible messages, oldest first: `[{id, body (base64), attempt, lease}]`.
pub(super) async fn receive(
    State(server): State<Shared>,
    Path((app, name)): Path<(String, String)>,
    Query(q): Query<ReceiveQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let queue = queue(&server, &app, &name)?;
    let visibility = duration("visibility", q.visibility.as_deref(), Duration::from_secs(30))?;
    let messages = queue.receive(server.host.queues(), q.max.unwrap_or(1), visibility).await?;
    let base64 = base64::engine::general_purpose::STANDARD;
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|m| json!({ "id": m.id, "body": base64.encode(&m.body), "attempt": m.attempt, "lease": m.lease }))
        .collect();
    Ok(axum::Json(Value::Array(messages)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    lease: String,
}

/// Remove a leased message: body `{"lease": "..."}`; 409 `lease-expired` if the lease is over.
pub(super) async fn complete(
    State(server): State<Shared>,
    Path((app, name)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let queue = queue(&server, &app, &name)?;
    let body = body.map_err(|e| body_error(&server, e))?;
    let CompleteBody { lease } = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("bad-json", format!("expected {{\"lease\": \"...\"}}: {e}")))?;
    queue.complete(&lease).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// At most this many (default 100, at most 1000).
    limit: Option<usize>,
}

/// The first messages, oldest first, leased or not, without leasing them: `[{id, body (base64),
/// size}]`.
pub(super) async fn list(
    State(server): State<Shared>,
    Path((app, name)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let listed = queue(&server, &app, &name)?.list(limit).await?;
    let base64 = base64::engine::general_purpose::STANDARD;
    Ok(axum::Json(Value::Array(
        listed
            .into_iter()
            .map(|m| json!({ "id": m.id, "body": base64.encode(&m.body), "size": m.body.len() }))
            .collect(),
    )))
}

/// Send dead letter `id` of `NAME.dead` back to `NAME`, visible now; 204.
pub(super) async fn requeue(
    State(server): State<Shared>,
    Path((app, name, id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    queue(&server, &app, &name)?.requeue(server.host.queues(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove message `id`, leased or not (absent is fine); 204.
pub(super) async fn remove(
    State(server): State<Shared>,
    Path((app, name, id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    queue(&server, &app, &name)?.remove(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

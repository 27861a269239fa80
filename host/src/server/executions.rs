//! `/v1/executions`: list and read execution records, wait for one, cancel one, and read or
//! follow its logs (Server-Sent Events). The embedded store reads on the blocking pool.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::permit;
use super::routes::Access;
use super::scopes::Grant;
use super::{ApiError, Shared};
use crate::executions::{CancelError, Execution, ExecutionFilter, Status};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    app: Option<String>,
    function: Option<String>,
    trigger: Option<String>,
    status: Option<String>,
    /// Only records older than this id (the last id of the previous page).
    before: Option<String>,
    limit: Option<usize>,
    /// Only executions queued at or after this time, ms since the Unix epoch.
    since: Option<u64>,
    /// Only executions queued before this time, ms since the Unix epoch.
    until: Option<u64>,
    /// With `item`: only the executions of item triggers on that item of this dataset.
    dataset: Option<String>,
    item: Option<String>,
}

/// Records newest first, 100 a page (at most 1000): of one app with its `read` scope, of every
/// app with `admin`.
pub(super) async fn list(
    State(server): State<Shared>,
    Extension(grant): Extension<Grant>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    match &q.app {
        Some(app) => permit(&grant, Access::Read, Some(app))?,
        None => permit(&grant, Access::Admin, None)?,
    }
    let status = match q.status.as_deref().map(str::parse::<Status>) {
        Some(Err(message)) => return Err(ApiError::bad_request("bad-query", message)),
        Some(Ok(status)) => Some(status),
        None => None,
    };
    let item = match (q.dataset, q.item) {
        (Some(dataset), Some(item)) => Some((dataset, item)),
        (None, None) => None,
        _ => return Err(ApiError::bad_request("bad-query", "`dataset` and `item` go together: an item of a dataset")),
    };
    let filter = ExecutionFilter {
        app: q.app,
        function: q.function,
        trigger: q.trigger,
        status,
        since_ms: q.since,
        until_ms: q.until,
        item,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let records = server.host.executions().list(&filter, q.before.as_deref(), limit).await;
    Ok(axum::Json(json!(records)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ShowQuery {
    /// Wait up to this long (e.g. `10s`, at most 5 minutes) for the execution to finish.
    wait: Option<String>,
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found("unknown-execution", format!("no execution `{id}`"))
}

/// The record `id`, when `grant` may `access` (read or write) its app.
async fn record(server: &Shared, grant: &Grant, access: Access, id: &str) -> Result<Execution, ApiError> {
    let record = server.host.executions().get(id).await.ok_or_else(|| unknown(id))?;
    permit(grant, access, Some(&record.app))?;
    Ok(record)
}

pub(super) async fn show(
    State(server): State<Shared>,
    Extension(grant): Extension<Grant>,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let record = record(&server, &grant, Access::Read, &id).await?;
    let executions = server.host.executions();
    let record = match q.wait {
        Some(wait) => {
            let wait = humantime::parse_duration(&wait)
                .map_err(|e| ApiError::bad_request("bad-query", format!("wait `{wait}`: {e} (expected e.g. `10s`)")))?;
            executions.wait(&id, wait.min(Duration::from_secs(300))).await
        }
        None => Some(record),
    };
    Ok(axum::Json(json!(record.ok_or_else(|| unknown(&id))?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogsQuery {
    /// Stream with Server-Sent Events until the execution finishes.
    #[serde(default)]
    follow: bool,
}

/// The logs as text, or followed: `log` events carrying new text, then one `end` event carrying
/// the final record.
pub(super) async fn logs(
    State(server): State<Shared>,
    Extension(grant): Extension<Grant>,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    record(&server, &grant, Access::Read, &id).await?;
    let executions = server.host.executions().clone();
    if !q.follow {
        let text = executions.logs(&id).await.unwrap_or_default();
        return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response());
    }
    // State: the text sent so far, and whether the end was sent. The text only grows, except
    // for a moment when an attempt finishes (its live output is replaced by the same output kept).
    let stream = futures_util::stream::unfold((String::new(), false), move |(sent, ended)| {
        let (executions, id) = (executions.clone(), id.clone());
        async move {
            if ended {
                return None;
            }
            loop {
                let record = executions.get(&id).await?;
                let text = executions.logs(&id).await.unwrap_or_default();
                if text.len() > sent.len() && text.starts_with(&sent) {
                    let event = Event::default().event("log").data(&text[sent.len()..]);
                    return Some((Ok::<_, Infallible>(event), (text, false)));
                }
                if record.status.is_final() {
                    if !text.starts_with(&sent) {
                        // The kept logs differ from what was streamed live: send them whole.
                        let event = Event::default().event("log").data(&text);
                        return Some((Ok(event), (text, false)));
                    }
                    let event = Event::default().event("end").json_data(&record).ok()?;
                    return Some((Ok(event), (sent, true)));
                }
                executions.wait(&id, Duration::from_millis(250)).await;
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// Cancel a queued or running execution: it ends `cancelled` (a running one within an epoch
/// tick); answers the record. A final one is a `409 already-final`.
pub(super) async fn cancel(
    State(server): State<Shared>,
    Extension(grant): Extension<Grant>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    record(&server, &grant, Access::Write, &id).await?;
    match server.host.executions().cancel(&id).await {
        Ok(record) => Ok(axum::Json(json!(record))),
        Err(CancelError::Unknown(_)) => Err(unknown(&id)),
        Err(error @ CancelError::Final { .. }) => {
            Err(ApiError::new(StatusCode::CONFLICT, "already-final", error.to_string()))
        }
        Err(error @ CancelError::Storage(_)) => {
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store-error", error.to_string()))
        }
    }
}

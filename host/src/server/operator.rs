//! Operator access to an app's data: `/v1/apps/{app}/kv/{store}/...` and
//! `/v1/apps/{app}/buckets/{bucket}/...`. Only stores and buckets granted to some function of the
//! app are reachable; values and objects travel as raw bytes (`application/octet-stream`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{body_error, find};
use super::{ApiError, Shared};
use crate::App;
use crate::storage::blobs::{self, BlobError, Bucket};
use crate::storage::kv::{self, KvStore};

/// `?prefix=&cursor=&limit=` of a listing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    #[serde(default)]
    prefix: String,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// Which resources of an app the operator may reach: those granted to one of its functions.
fn granted(app: &App, kind: &'static str, name: &str) -> Result<(), ApiError> {
    let available =
        if kind == "store" { app.manifest().granted(|g| &g.kv) } else { app.manifest().granted(|g| &g.buckets) };
    if available.iter().any(|n| n == name) {
        return Ok(());
    }
    Err(ApiError {
        extra: json!({ "available": available }),
        ..ApiError::not_found(
            if kind == "store" { "unknown-store" } else { "unknown-bucket" },
            format!("app `{}` grants no {kind} `{name}`", app.name()),
        )
    })
}

fn octets(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}

fn store_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store-error", e.to_string())
}

async fn kv_store(server: &Shared, app: &str, store: &str) -> Result<std::sync::Arc<dyn KvStore>, ApiError> {
    granted(&*find(server, app)?, "store", store)?;
    server.host.kv().open(app, store).await.map_err(store_error)
}

fn no_key(kind: &str, key: &str) -> ApiError {
    ApiError::not_found("no-such-key", format!("no {kind} under key {key:?}"))
}

/// Keys of a store starting with `prefix`, 1000 a page; pass the returned `cursor` for the next.
pub(super) async fn kv_list(
    State(server): State<Shared>,
    Path((app, store)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    if q.limit.is_some() {
        return Err(ApiError::bad_request("bad-query", "`limit` applies to buckets; KV pages hold 1000 keys"));
    }
    let store = kv_store(&server, &app, &store).await?;
    let page = store.list(&q.prefix, q.cursor.as_deref(), kv::PAGE).await.map_err(store_error)?;
    Ok(axum::Json(json!({ "keys": page.keys, "cursor": page.cursor })))
}

pub(super) async fn kv_get(
    State(server): State<Shared>,
    Path((app, store, key)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let entry = kv_store(&server, &app, &store).await?.get(&key).await.map_err(store_error)?;
    Ok(octets(entry.ok_or_else(|| no_key("value", &key))?.value.to_vec()))
}

pub(super) async fn kv_put(
    State(server): State<Shared>,
    Path((app, store, key)): Path<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let store = kv_store(&server, &app, &store).await?;
    let body = body.map_err(|e| body_error(&server, e))?;
    store.put(&key, body).await.map_err(store_error)?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn kv_delete(
    State(server): State<Shared>,
    Path((app, store, key)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    kv_store(&server, &app, &store).await?.delete(&key).await.map_err(store_error)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn bucket(server: &Shared, app: &str, name: &str) -> Result<std::sync::Arc<dyn Bucket>, ApiError> {
    granted(&*find(server, app)?, "bucket", name)?;
    server.host.blobs().open(app, name).await.map_err(bucket_error)
}

fn bucket_error(error: BlobError) -> ApiError {
    match error {
        BlobError::NoSuchKey(_) => ApiError::not_found("no-such-key", error.to_string()),
        BlobError::InvalidKey(reason) => ApiError::bad_request("invalid-key", reason),
        BlobError::ObjectInTheWay { .. } | BlobError::FolderInTheWay { .. } => {
            ApiError::new(StatusCode::CONFLICT, "key-conflict", error.to_string())
        }
        BlobError::Open { message, .. } | BlobError::Io(message) => store_error(message),
    }
}

/// Keys of a bucket starting with `prefix`, `limit` (default and most 1000) a page.
pub(super) async fn bucket_list(
    State(server): State<Shared>,
    Path((app, name)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let bucket = bucket(&server, &app, &name).await?;
    let page = bucket.list(&q.prefix, q.cursor.as_deref(), q.limit.unwrap_or(1000)).await.map_err(bucket_error)?;
    Ok(axum::Json(json!({ "keys": page.keys, "cursor": page.cursor })))
}

pub(super) async fn bucket_get(
    State(server): State<Shared>,
    Path((app, name, key)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let object = bucket(&server, &app, &name).await?.read(&key, 0, u64::MAX).await.map_err(bucket_error)?;
    Ok(octets(blobs::read_to_vec(&key, object).await.map_err(bucket_error)?))
}

/// Write an object; `409 key-conflict` when an object is where one of the key's folders should
/// be, or the key is a folder holding objects.
pub(super) async fn bucket_put(
    State(server): State<Shared>,
    Path((app, name, key)): Path<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let bucket = bucket(&server, &app, &name).await?;
    let body = body.map_err(|e| body_error(&server, e))?;
    bucket.write(&key, blobs::from_bytes(body)).await.map_err(bucket_error)?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn bucket_delete(
    State(server): State<Shared>,
    Path((app, name, key)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    bucket(&server, &app, &name).await?.delete(&key).await.map_err(bucket_error)?;
    Ok(StatusCode::NO_CONTENT)
}

//! `/v1/apps/{app}/datasets/{dataset}/items...`: upload (raw body or multipart), list, get,
//! download, update metadata, delete, and annotations, for datasets granted to the app.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{body_error, find};
use super::{ApiError, Shared};
use crate::storage::datasets::{Dataset, Geometry, ItemFilter, ItemsError};

impl From<ItemsError> for ApiError {
    fn from(e: ItemsError) -> ApiError {
        match e {
            ItemsError::NoSuchItem(_) => ApiError::not_found("no-such-item", e.to_string()),
            ItemsError::Invalid(message) => ApiError::bad_request("invalid", message),
            ItemsError::Storage(message) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store-error", message),
        }
    }
}

/// The dataset, when a function of the app is granted it.
async fn dataset(server: &Shared, app: &str, name: &str) -> Result<Dataset, ApiError> {
    let found = find(server, app)?;
    let granted = found.manifest().functions.values().any(|f| f.grants.dataset(name));
    if !granted {
        return Err(ApiError::not_found("unknown-dataset", format!("app `{app}` grants no dataset `{name}`")));
    }
    Ok(server.host.dataset(app, name).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    dir: Option<String>,
    mimetype: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

pub(super) async fn list(
    State(server): State<Shared>,
    Path((app, name)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let filter = ItemFilter { dir: q.dir, mimetype: q.mimetype, metadata: Vec::new() };
    let page = dataset(&server, &app, &name).await?.list(&filter, q.cursor.as_deref(), q.limit.unwrap_or(100)).await?;
    Ok(axum::Json(json!(page)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UploadQuery {
    /// The folder (default `/`).
    dir: Option<String>,
    /// The file name; required for a raw body.
    name: Option<String>,
    /// JSON object text.
    metadata: Option<String>,
}

/// Upload: a raw body (`?name=` required, `Content-Type` is the mimetype) answers the item; a
/// `multipart/form-data` body uploads every file field and answers the list of items.
pub(super) async fn upload(
    State(server): State<Shared>,
    Path((app, name)): Path<(String, String)>,
    Query(q): Query<UploadQuery>,
    request: Request,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let dataset = dataset(&server, &app, &name).await?;
    let dir = q.dir.as_deref().unwrap_or("/");
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    if content_type.as_deref().is_some_and(|c| c.starts_with("multipart/form-data")) {
        let mut form = Multipart::from_request(request, &())
            .await
            .map_err(|e| ApiError::bad_request("bad-multipart", e.body_text()))?;
        let mut items = Vec::new();
        while let Some(field) =
            form.next_field().await.map_err(|e| ApiError::bad_request("bad-multipart", e.body_text()))?
        {
            let Some(file_name) = field.file_name().map(str::to_string) else { continue };
            let mimetype = field.content_type().map(str::to_string).filter(|m| m != "application/octet-stream");
            let data = field.bytes().await.map_err(|e| ApiError::bad_request("bad-multipart", e.body_text()))?;
            items.push(dataset.upload(dir, &file_name, mimetype.as_deref(), data, q.metadata.as_deref(), None).await?);
        }
        if items.is_empty() {
            return Err(ApiError::bad_request("bad-multipart", "no file fields in the form"));
        }
        return Ok((StatusCode::CREATED, axum::Json(json!(items))));
    }
    let file_name = q.name.ok_or_else(|| ApiError::bad_request("bad-query", "`name` is required for a raw upload"))?;
    let body: Result<Bytes, BytesRejection> = Bytes::from_request(request, &()).await;
    let body = body.map_err(|e| body_error(&server, e))?;
    let mimetype = content_type.filter(|m| m != "application/octet-stream" && m != "application/x-www-form-urlencoded");
    let item = dataset.upload(dir, &file_name, mimetype.as_deref(), body, q.metadata.as_deref(), None).await?;
    Ok((StatusCode::CREATED, axum::Json(json!(item))))
}

pub(super) async fn show(
    State(server): State<Shared>,
    Path((app, name, id)): Path<(String, String, String)>,
) -> Result<axum::Json<Value>, ApiError> {
    Ok(axum::Json(json!(dataset(&server, &app, &name).await?.get(&id).await?)))
}

pub(super) async fn download(
    State(server): State<Shared>,
    Path((app, name, id)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let dataset = dataset(&server, &app, &name).await?;
    let item = dataset.get(&id).await?;
    let bytes = dataset.read(&id, u64::MAX).await?.expect("no item holds more than u64::MAX bytes");
    let length = bytes.size;
    let body = axum::body::Body::from_stream(bytes.chunks());
    Ok(([(header::CONTENT_TYPE, item.mimetype), (header::CONTENT_LENGTH, length.to_string())], body).into_response())
}

pub(super) async fn update_metadata(
    State(server): State<Shared>,
    Path((app, name, id)): Path<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let body = body.map_err(|e| body_error(&server, e))?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("invalid", "metadata is not UTF-8"))?;
    Ok(axum::Json(json!(dataset(&server, &app, &name).await?.update_metadata(&id, text, None).await?)))
}

pub(super) async fn remove(
    State(server): State<Shared>,
    Path((app, name, id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    dataset(&server, &app, &name).await?.delete(&id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn annotations(
    State(server): State<Shared>,
    Path((app, name, id)): Path<(String, String, String)>,
) -> Result<axum::Json<Value>, ApiError> {
    Ok(axum::Json(json!(dataset(&server, &app, &name).await?.annotations(&id).await?)))
}

/// One annotation to add, as JSON.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAnnotation {
    geometry: Geometry,
    label: String,
    confidence: Option<f32>,
    model: Option<String>,
}

pub(super) async fn add_annotations(
    State(server): State<Shared>,
    Path((app, name, id)): Path<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let body = body.map_err(|e| body_error(&server, e))?;
    let new: Vec<NewAnnotation> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "bad-json",
            format!("expected a JSON array of {{geometry, label, confidence?, model?}}: {e}"),
        )
    })?;
    let new = new.into_iter().map(|a| (a.geometry, a.label, a.confidence, a.model)).collect();
    let added = dataset(&server, &app, &name).await?.add_annotations(&id, new).await?;
    Ok((StatusCode::CREATED, axum::Json(json!(added))))
}

pub(super) async fn delete_annotation(
    State(server): State<Shared>,
    Path((app, name, id, annotation)): Path<(String, String, String, String)>,
) -> Result<StatusCode, ApiError> {
    dataset(&server, &app, &name).await?.delete_annotation(&id, &annotation).await?;
    Ok(StatusCode::NO_CONTENT)
}

//! `PUT|DELETE /v1/apps/NAME`, `GET /v1/apps/NAME/versions`, `POST /v1/apps/NAME/rollback`:
//! deploys without a restart, over [`crate::deploy::Deployments`].

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::{ApiError, Shared};
use crate::deploy::{Bundle, DeployError, Version};

impl From<DeployError> for ApiError {
    fn from(error: DeployError) -> ApiError {
        let message = error.to_string();
        let (status, code) = match &error {
            DeployError::BadBundle(_) | DeployError::Manifest(_) | DeployError::Pack(_) => {
                (StatusCode::BAD_REQUEST, "bad-bundle")
            }
            DeployError::WrongApp { .. } => (StatusCode::BAD_REQUEST, "wrong-app"),
            DeployError::Load { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "load-failed"),
            DeployError::DuplicateApp(_) | DeployError::RouteConflict { .. } => {
                (StatusCode::CONFLICT, "route-conflict")
            }
            DeployError::FromFile { .. } => (StatusCode::CONFLICT, "app-from-file"),
            DeployError::NothingToRollBack(_) => (StatusCode::CONFLICT, "nothing-to-roll-back"),
            DeployError::NotDeployed(_) => (StatusCode::NOT_FOUND, "not-deployed"),
            DeployError::UnknownVersion { .. } => (StatusCode::NOT_FOUND, "unknown-version"),
            DeployError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "deploy-store"),
        };
        ApiError::new(status, code, message)
    }
}

/// A deployed version as the API shows it.
pub(super) fn describe(version: &Version) -> Value {
    json!({
        "app": version.app,
        "version": version.version,
        "digest": version.digest,
        "size": version.size,
        "deployed_ms": version.deployed_at_ms,
    })
}

/// The body is the bundle (a tar); read up to `max_bundle` bytes.
pub(super) async fn deploy(
    State(server): State<Shared>,
    Path(app): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let max = server.config.max_bundle;
    let bytes = match http_body_util::Limited::new(body, max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                format!("the bundle is over the limit of {max} bytes (`host serve --max-bundle`)"),
            ));
        }
        Err(error) => return Err(ApiError::bad_request("bad-body", format!("cannot read the bundle: {error}"))),
    };
    let bundle = Bundle::from_bytes(bytes.to_vec())?;
    if bundle.app() != app {
        return Err(DeployError::WrongApp { path: app, bundle: bundle.app().into() }.into());
    }
    let deployed = server.deployments.deploy(&bundle).await?;
    let status = if deployed.unchanged { StatusCode::OK } else { StatusCode::CREATED };
    let mut body = describe(&deployed.version);
    body["unchanged"] = deployed.unchanged.into();
    Ok((status, axum::Json(body)).into_response())
}

/// `?purge=true` also deletes the app's data.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UndeployQuery {
    #[serde(default)]
    purge: bool,
}

/// 204, or with `purge`: 200 and how many keys, objects and items were deleted.
pub(super) async fn undeploy(
    State(server): State<Shared>,
    Path(app): Path<String>,
    Query(query): Query<UndeployQuery>,
) -> Result<Response, ApiError> {
    Ok(match server.deployments.remove(&app, query.purge).await? {
        Some(purged) => axum::Json(json!({ "purged": purged })).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

pub(super) async fn versions(
    State(server): State<Shared>,
    Path(app): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let (versions, running) = server.deployments.versions(&app).await?;
    Ok(axum::Json(json!({
        "app": app,
        "running": running.map(|v| v.version),
        "versions": versions.iter().map(describe).collect::<Vec<_>>(),
    })))
}

/// `{"version": N}` runs version N; an empty body or `{}` the version before the running one.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RollbackBody {
    version: Option<u64>,
}

pub(super) async fn rollback(
    State(server): State<Shared>,
    Path(app): Path<String>,
    body: axum::body::Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let wanted: RollbackBody = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("bad-body", format!("expected {{\"version\": N}} or nothing: {e}")))?
    };
    let version = server.deployments.rollback(&app, wanted.version).await?;
    Ok(axum::Json(describe(&version)))
}

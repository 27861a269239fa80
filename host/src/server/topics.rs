//! Operator access to an app's topics: `/v1/apps/{app}/topics/{topic}` (publish), for topics
//! granted to some function of the app or subscribed to by one of its triggers.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::api::{body_error, find};
use super::{ApiError, Shared};
use crate::storage::topics::PublishError;

/// Publish the raw request body to every subscription of the topic; 201 with the event id.
/// Query parameters become the event's attributes.
pub(super) async fn publish(
    State(server): State<Shared>,
    Path((app, topic)): Path<(String, String)>,
    Query(attributes): Query<Vec<(String, String)>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let found = find(&server, &app)?;
    let available = found.manifest().granted(|g| &g.topics);
    let subscribed = found.manifest().topic_triggers.iter().any(|t| t.topic == topic);
    if !available.contains(&topic) && !subscribed {
        return Err(ApiError {
            extra: json!({ "available": available }),
            ..ApiError::not_found("unknown-topic", format!("app `{app}` has no topic `{topic}`"))
        });
    }
    let body = body.map_err(|e| body_error(&server, e))?;
    let id = server.host.topics().publish(&app, &topic, body.to_vec(), attributes).await?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "id": id }))))
}

impl From<PublishError> for ApiError {
    fn from(error: PublishError) -> ApiError {
        let message = error.to_string();
        match error {
            PublishError::Invalid(_) => ApiError::bad_request("bad-argument", message),
            PublishError::Storage(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store-error", message),
        }
    }
}

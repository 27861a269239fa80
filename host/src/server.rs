//! `host serve`: the REST API over loaded apps, a thin layer over the library.
//!
//! Every error body is JSON `{"code": "...", "message": "..."}` with a stable `code`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::{App, CallError, Error, Function};

/// Largest request body accepted, in bytes.
pub const MAX_BODY: usize = 16 << 20;

type Apps = Arc<BTreeMap<String, App>>;

/// An error answer: status, stable code, human message, and extra fields.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    extra: Value,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), extra: Value::Null }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code, "message": self.message });
        if let Value::Object(extra) = self.extra {
            body.as_object_mut().expect("object").extend(extra);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        let message = error.to_string();
        match error {
            Error::UnknownFunction { .. } => ApiError::new(StatusCode::NOT_FOUND, "unknown-function", message),
            Error::Argument(a) => ApiError {
                extra: json!({ "path": a.path, "expected": a.expected }),
                ..ApiError::new(StatusCode::BAD_REQUEST, "bad-argument", message)
            },
            Error::Call(call) => call.into(),
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "host-error", message),
        }
    }
}

impl From<CallError> for ApiError {
    fn from(error: CallError) -> ApiError {
        let message = error.to_string();
        match error {
            CallError::Timeout { .. } => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message),
            CallError::Guest { value } => ApiError {
                extra: json!({ "error": value }),
                ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "guest-error", message)
            },
            CallError::MemoryLimit { .. } => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "memory-limit", message),
            CallError::StackOverflow => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "stack-overflow", message),
            CallError::Trap { .. } => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "trap", message),
            CallError::Host { .. } => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "host-error", message),
        }
    }
}

/// The REST API for `apps` (by name).
pub fn router(apps: Vec<App>) -> Router {
    let apps: Apps = Arc::new(apps.into_iter().map(|a| (a.name().to_string(), a)).collect());
    Router::new()
        .route("/v1/apps", get(list_apps))
        .route("/v1/apps/{app}", get(show_app))
        .route("/v1/apps/{app}/functions/{function}", get(show_function).post(invoke))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(apps)
}

fn describe_function(f: &Function) -> Value {
    f.export().describe(f.name())
}

fn describe_app(app: &App) -> Value {
    json!({ "name": app.name(), "functions": app.functions().iter().map(describe_function).collect::<Vec<_>>() })
}

fn find<'a>(apps: &'a Apps, name: &str) -> Result<&'a App, ApiError> {
    apps.get(name).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown-app", format!("no app `{name}`")))
}

async fn list_apps(State(apps): State<Apps>) -> axum::Json<Value> {
    axum::Json(Value::Array(apps.values().map(describe_app).collect()))
}

async fn show_app(State(apps): State<Apps>, Path(app): Path<String>) -> Result<axum::Json<Value>, ApiError> {
    Ok(axum::Json(describe_app(find(&apps, &app)?)))
}

async fn show_function(
    State(apps): State<Apps>,
    Path((app, function)): Path<(String, String)>,
) -> Result<axum::Json<Value>, ApiError> {
    let function = find(&apps, &app)?.function(&function)?;
    Ok(axum::Json(describe_function(&function)))
}

/// Call a function with the JSON body as its arguments (an empty body: no arguments).
async fn invoke(
    State(apps): State<Apps>,
    Path((app, function)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let function = find(&apps, &app)?.function(&function)?;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("request body over {MAX_BODY} bytes"),
        ),
        status => ApiError::new(status, "bad-body", e.body_text()),
    })?;
    let args = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-json", format!("request body is not JSON: {e}")))?
    };
    Ok(axum::Json(function.call(args).await.map_err(ApiError::from)?))
}

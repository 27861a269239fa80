//! `host serve`: the REST API, OpenAPI document, `wasi:http` routes, static sites, metrics and the
//! dashboard, a thin layer over the library.
//!
//! Every error body is JSON `{"code": "...", "message": "..."}` with a stable `code`.

mod api;
mod auth;
mod bind;
mod deploys;
mod executions;
mod guard;
mod items;
mod listen;
mod openapi;
mod operator;
mod public;
mod queues;
mod ratelimit;
pub mod routes;
pub mod scopes;
mod site;
mod topics;

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

pub use listen::serve;

use crate::deploy::{Deployments, Running};
use crate::manifest::HttpRoute;
use crate::triggers::http::HttpHandler;
use crate::{CallError, Error, Host};

/// Default largest request body accepted, in bytes.
pub const MAX_BODY: usize = 16 << 20;

/// Default largest bundle `PUT /v1/apps/NAME` accepts, in bytes.
pub const MAX_BUNDLE: usize = 256 << 20;

/// Default most requests handled at once; more get `503 overloaded`.
pub const MAX_REQUESTS: usize = 1024;

/// The largest `max_requests` accepted.
pub const MAX_REQUESTS_LIMIT: usize = 1 << 20;

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bearer token required on `/v1`, `/metrics` and non-public routes, with every scope.
    /// Without it and without `tokens`: no auth.
    pub token: Option<String>,
    /// Tokens with scopes (`--tokens FILE`), besides `token`.
    pub tokens: Vec<scopes::Token>,
    /// Largest request body, in bytes, but for bundles.
    pub max_body: usize,
    /// Largest bundle a deploy may upload, in bytes.
    pub max_bundle: usize,
    /// Most requests handled at once (1 to [`MAX_REQUESTS_LIMIT`]).
    pub max_requests: usize,
    /// Host names the server answers to besides IP addresses and `localhost` (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Origins (`https://app.example.com`) whose pages may call the API (CORS).
    pub cors_origins: Vec<String>,
    /// How long a connection may take to send a request's head, also while idle between requests.
    pub header_timeout: std::time::Duration,
    /// How long a request's body may take to arrive in full.
    pub body_timeout: std::time::Duration,
    /// At shutdown, how long requests in flight may still run.
    pub shutdown_grace: std::time::Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            token: None,
            tokens: Vec::new(),
            max_body: MAX_BODY,
            max_bundle: MAX_BUNDLE,
            max_requests: MAX_REQUESTS,
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            header_timeout: std::time::Duration::from_secs(10),
            body_timeout: std::time::Duration::from_secs(60),
            shutdown_grace: std::time::Duration::from_secs(30),
        }
    }
}

/// The apps could not be served together.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A setting is out of range.
    #[error("{0}")]
    Config(String),
    /// A `[site]` folder cannot be opened.
    #[error("app `{app}`: cannot open site folder {dir}: {message}")]
    Site {
        /// The app.
        app: String,
        /// The folder.
        dir: std::path::PathBuf,
        /// Why.
        message: String,
    },
}

/// What every handler sees.
struct Server {
    host: Host,
    deployments: Arc<Deployments>,
    config: ServerConfig,
    auth: auth::Auth,
    /// Routes and sites of the running apps, rebuilt when they change.
    mounts: RwLock<Arc<Mounts>>,
    requests: Semaphore,
    /// Buckets of the clients calling without a token.
    limiter: ratelimit::RateLimiter,
}

impl Server {
    fn running(&self) -> &Running {
        self.deployments.running()
    }

    /// The routes and sites of the apps running now.
    fn mounts(&self) -> Arc<Mounts> {
        let generation = self.running().snapshot().generation;
        let mounts = self.mounts.read().expect("lock").clone();
        if mounts.generation == generation {
            return mounts;
        }
        // A site that cannot be opened was refused at start (a file app) or is part of a
        // checked bundle; one that vanished since is left out and logged.
        let rebuilt = Arc::new(Mounts::of(self.running()).unwrap_or_else(|error| {
            tracing::error!(%error, "a site cannot be served");
            Mounts { generation, list: Vec::new() }
        }));
        *self.mounts.write().expect("lock") = rebuilt.clone();
        rebuilt
    }
}

/// Routes and sites, most specific first, of one generation of the running apps.
struct Mounts {
    generation: u64,
    list: Vec<Mount>,
}

impl Mounts {
    fn of(running: &Running) -> Result<Mounts, ServerError> {
        let snapshot = running.snapshot();
        let mut list: Vec<Mount> = Vec::new();
        for served in snapshot.apps.values() {
            let app = &served.app;
            list.extend(app.routes().iter().cloned().map(Mount::Route));
            if let Some(s) = &app.manifest().site {
                let site = site::Site::open(s).map_err(|e| ServerError::Site {
                    app: app.name().into(),
                    dir: s.dir.clone(),
                    message: e.to_string(),
                })?;
                list.push(Mount::Site(site));
            }
        }
        // Longest path first, routes before a site on the same path.
        list.sort_by_key(|m| (std::cmp::Reverse(m.path().len()), matches!(m, Mount::Site(_))));
        Ok(Mounts { generation: snapshot.generation, list })
    }
}

type Shared = Arc<Server>;

/// Something served outside the host's own paths.
enum Mount {
    Route(HttpHandler),
    Site(site::Site),
}

impl Mount {
    /// The path prefix (or exact path) it claims, for ordering.
    fn path(&self) -> &str {
        match self {
            Mount::Route(h) => h.route().prefix().unwrap_or(&h.route().route),
            Mount::Site(site) => site.route(),
        }
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            Mount::Route(h) => h.route().matches(path),
            Mount::Site(site) => site.matches(path),
        }
    }
}

/// An error answer: status, stable code, human message, and extra fields.
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    extra: Value,
}

/// The stable code of an error answer, left on the response for the metrics layer.
#[derive(Clone, Copy)]
struct ErrorCode(&'static str);

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), extra: Value::Null }
    }

    pub(crate) fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code, "message": self.message });
        if let Value::Object(extra) = self.extra {
            body.as_object_mut().expect("object").extend(extra);
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(self.code));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        let message = error.to_string();
        match error {
            Error::UnknownFunction { available, .. } => ApiError {
                extra: json!({ "available": available }),
                ..ApiError::not_found("unknown-function", message)
            },
            Error::Argument(a) => ApiError {
                extra: json!({ "path": a.path, "expected": a.expected }),
                ..ApiError::bad_request("bad-argument", message)
            },
            Error::Call(call) => call.into(),
            Error::Queue(queue) => queue.into(),
            Error::Publish(publish) => publish.into(),
            Error::Record(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store-error", message),
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "host-error", message),
        }
    }
}

impl From<CallError> for ApiError {
    fn from(error: CallError) -> ApiError {
        let message = error.to_string();
        let code = error.code();
        match error {
            CallError::Timeout { .. } => ApiError::new(StatusCode::GATEWAY_TIMEOUT, code, message),
            CallError::Guest { value } => ApiError {
                extra: json!({ "error": value }),
                ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            },
            CallError::Paused { .. } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message),
            CallError::Reference { .. } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message),
            CallError::Cancelled => ApiError::new(StatusCode::CONFLICT, code, message),
            CallError::MemoryLimit { .. }
            | CallError::StackOverflow
            | CallError::Trap { .. }
            | CallError::Host { .. } => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, code, message),
        }
    }
}

/// The whole server for the apps of `deployments`: API, deploys, routes, sites, metrics,
/// dashboard.
pub fn router(deployments: Arc<Deployments>, config: ServerConfig) -> Result<Router, ServerError> {
    check_config(&config)?;
    let mounts = Mounts::of(deployments.running())?;
    let server = Arc::new(Server {
        host: deployments.host().clone(),
        deployments,
        requests: Semaphore::new(config.max_requests),
        auth: auth::Auth::new(
            config.token.iter().map(|t| scopes::Token::admin(t)).chain(config.tokens.clone()).collect(),
        ),
        config,
        mounts: RwLock::new(Arc::new(mounts)),
        limiter: ratelimit::RateLimiter::new(),
    });
    let max_body = server.config.max_body;
    Ok(bind::table(&server)
        .fallback(mounted)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(server.clone(), front))
        .with_state(server))
}

/// Refuse settings that would panic or make no sense, naming the setting.
fn check_config(config: &ServerConfig) -> Result<(), ServerError> {
    if !(1..=MAX_REQUESTS_LIMIT).contains(&config.max_requests) {
        return Err(ServerError::Config(format!(
            "max-requests {}: expected 1 to {MAX_REQUESTS_LIMIT}",
            config.max_requests
        )));
    }
    for (name, value) in [("max-body", config.max_body), ("max-bundle", config.max_bundle)] {
        if value == 0 {
            return Err(ServerError::Config(format!("{name} 0: expected at least 1 byte")));
        }
    }
    for (name, value) in [("header-timeout", config.header_timeout), ("body-timeout", config.body_timeout)] {
        if value.is_zero() || value > std::time::Duration::from_secs(24 * 3600) {
            return Err(ServerError::Config(format!("{name} {value:?}: expected more than 0 and at most 24h")));
        }
    }
    if let Some(origin) = config.cors_origins.iter().find(|o| !crate::manifest::valid_origin(o)) {
        return Err(ServerError::Config(format!("cors-origin `{origin}`: {}", crate::manifest::ORIGIN_EXPECTED)));
    }
    Ok(())
}

/// What every request passes before its handler, outermost first: the access log, the request
/// limit, JSON errors, the browser guard and the body limits. One middleware calling the next
/// step directly: as separate layers, each cloned the stack below it and boxed a future per
/// request.
async fn front(State(server): State<Shared>, request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let started = std::time::Instant::now();
    let response = limit_requests(&server, request, async |request| {
        json_errors(&server, request, async |request| {
            guard::check(&server, request, async |request| {
                listen::limit_body(&server, request, async |request| next.run(request).await).await
            })
            .await
        })
        .await
    })
    .await;
    // One `debug` line per request (`HOST_LOG=host=debug`): method, path, status, time to the head.
    tracing::debug!(%method, path, status = response.status().as_u16(), elapsed = ?started.elapsed(), "request");
    response
}

/// Refuse requests beyond `max_requests` at once with `503 overloaded`, instead of queueing.
async fn limit_requests(server: &Shared, request: Request, next: impl AsyncFnOnce(Request) -> Response) -> Response {
    // A health check must answer even when every slot is taken.
    if request.uri().path() == routes::Route::Healthz.template() {
        return next(request).await;
    }
    match server.requests.try_acquire() {
        Ok(_permit) => next(request).await,
        Err(_) => {
            server.host.metrics().record_error("overloaded");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!("more than {} requests at once; retry later", server.config.max_requests),
            )
            .into_response()
        }
    }
}

/// Count error answers by code, and turn the framework's own plain-text errors (a bad query
/// string, a wrong method) into the JSON error shape. Guest answers pass through untouched.
async fn json_errors(server: &Shared, request: Request, next: impl AsyncFnOnce(Request) -> Response) -> Response {
    let response = next(request).await;
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
        server.host.metrics().record_error(code);
        return response;
    }
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || response.extensions().get::<GuestAnswer>().is_some() {
        return response;
    }
    let (code, default_message) = match status {
        StatusCode::BAD_REQUEST => ("bad-request", "bad request"),
        StatusCode::NOT_FOUND => ("not-found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", "method not allowed here"),
        StatusCode::PAYLOAD_TOO_LARGE => ("body-too-large", "request body too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported-media-type", "unsupported content type"),
        _ => ("http-error", "request failed"),
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let text = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let text = String::from_utf8_lossy(&text[..text.len().min(500)]).trim().to_string();
    let mut response =
        ApiError::new(status, code, if text.is_empty() { default_message.to_string() } else { text }).into_response();
    if let Some(allow) = allow {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    server.host.metrics().record_error(code);
    response
}

/// Marks a response written by a guest, which keeps its own status and body.
#[derive(Clone, Copy)]
struct GuestAnswer;

/// Requests outside the host's own paths: `[[trigger.http]]` routes, then `[site]` folders.
async fn mounted(State(server): State<Shared>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let mounts = server.mounts();
    let Some(mount) = mounts.list.iter().find(|m| m.matches(&path)) else {
        return ApiError::not_found("not-found", format!("nothing is served at `{path}`")).into_response();
    };
    match mount {
        Mount::Site(site) => site.serve(request.method(), &path),
        Mount::Route(handler) => {
            let app = Some(handler.guest().app.as_str());
            let open = if handler.route().public { public::Openness::Open } else { public::Openness::Closed };
            let (mut parts, body) = request.into_parts();
            if let Some(refused) = auth::refusal(&server, &mut parts, routes::Access::Invoke, app, open) {
                return refused;
            }
            serve_route(handler, Request::from_parts(parts, body), server.config.max_body).await
        }
    }
}

/// A declared length over the limit was refused by [`listen::limit_body`]; a chunked body is
/// cut off at the limit here.
async fn serve_route(handler: &HttpHandler, request: Request, max_body: usize) -> Response {
    let request = request.map(|body| {
        http_body_util::Limited::new(body, max_body)
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    wasmtime_wasi_http::Error::HttpRequestBodySize(None)
                } else {
                    wasmtime_wasi_http::Error::HttpRequestDenied
                }
            })
            .boxed_unsync()
    });
    match handler.handle(request).await {
        Ok(response) => {
            let mut response = response.map(Body::new);
            response.extensions_mut().insert(GuestAnswer);
            response
        }
        // Route answers may reach the public: the trap's details go to the log, not the client.
        Err(
            error @ (CallError::Trap { .. }
            | CallError::Host { .. }
            | CallError::MemoryLimit { .. }
            | CallError::StackOverflow),
        ) => {
            tracing::warn!(route = %handler.route().route, %error, "http handler failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                error.code(),
                format!("the handler failed ({}); details are in the server log", error.code()),
            )
            .into_response()
        }
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// Describe a route for the API listing.
fn describe_route(route: &HttpRoute) -> Value {
    json!({ "route": route.route, "function": route.function, "public": route.public })
}

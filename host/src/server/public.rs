//! Requests let in without a token: direct calls and descriptions of public exports (`public` of
//! `[function.NAME]`) and public `[[trigger.http]]` routes. Each client address is held to the
//! app's `[access] public-rate-limit`; requests with a valid token are not limited.
//!
//! Jobs, enqueued calls, map and starmap of a public export still need a token: an anonymous
//! caller must not fill the queue or start many instances with one request.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, Query};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::api::InvokeQuery;
use super::auth::Admitted;
use super::routes::{Access, Route};
use super::{ApiError, Server};
use crate::{App, Function};

/// Whether a request may go without a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Openness {
    /// No: it needs its route's scope.
    Closed,
    /// Yes, held to the rate limit.
    Open,
    /// A public export, but not in this mode (a job, an enqueued call, a map): the refusal says
    /// that only direct calls are public.
    DirectOnly,
}

/// How open `route` is for `function` (its path parameter) of `app`, called with `uri`.
pub(super) fn openness(
    server: &Server,
    route: Route,
    app: Option<&str>,
    function: Option<&str>,
    uri: &Uri,
) -> Openness {
    let direct = match route {
        Route::Call => Query::<InvokeQuery>::try_from_uri(uri).is_ok_and(|q| q.direct()),
        Route::DescribeFunction => true,
        Route::Map | Route::Starmap => false,
        _ => return Openness::Closed,
    };
    let public = app
        .and_then(|a| server.apps.get(a))
        .zip(function)
        .is_some_and(|(app, function)| app.function(function).is_ok_and(|f| is_public(app, &f)));
    match (public, direct) {
        (false, _) => Openness::Closed,
        (true, true) => Openness::Open,
        (true, false) => Openness::DirectOnly,
    }
}

/// Whether `function` of `app` is a public export (`public` of its `[function.NAME]`).
pub(super) fn is_public(app: &App, function: &Function) -> bool {
    let component = app.guest(function.name()).map(|g| g.name());
    component.is_ok_and(|c| app.manifest().functions.get(c).is_some_and(|s| s.public.covers(&function.export().name)))
}

/// The answer refusing a request for a route of `access` (of `app`), or `None` when it may go
/// on: by its token, or without one when the route is `open`, held to the rate limit.
pub(super) fn refusal(
    server: &Server,
    headers: &HeaderMap,
    extensions: &Extensions,
    access: Access,
    app: Option<&str>,
    open: Openness,
) -> Option<Response> {
    match server.auth.admit(headers, access, app, open) {
        Ok(Admitted::Token) => None,
        Ok(Admitted::Public) => over_limit(server, app.unwrap_or_default(), extensions),
        Err(error) => Some(error.into_response()),
    }
}

/// Take one call of the client's bucket for `app`, or answer `429 rate-limited` with
/// `Retry-After` in whole seconds. The client is the TCP peer (put there by `listen::serve`).
fn over_limit(server: &Server, app: &str, extensions: &Extensions) -> Option<Response> {
    // A router served some other way has no peer address: its clients share one bucket.
    let ip = extensions.get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let limit = server.apps.get(app).map(|a| a.manifest().access.public_rate_limit).unwrap_or_default();
    let wait = server.limiter.take(app, ip, &limit, Instant::now()).err()?;
    server.host.metrics().record_rate_limited(app);
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let message = format!(
        "too many requests without a token from this address to app `{app}` (limit {limit}): retry in {seconds} s, or send a bearer token"
    );
    let error = ApiError {
        extra: json!({ "retry_after": seconds }),
        ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", message)
    };
    let mut response = error.into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    Some(response)
}

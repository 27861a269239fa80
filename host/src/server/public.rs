//! Which requests may go without a token: direct calls and descriptions of public exports
//! (`public` of `[function.NAME]`); public `[[trigger.http]]` routes say so themselves. `auth`
//! lets them in, each client address held to the app's `[access] public-rate-limit`
//! (`ratelimit`); requests with a valid token are not limited.
//!
//! Jobs, enqueued calls, map and starmap of a public export still need a token: an anonymous
//! caller must not fill the queue or start many instances with one request.

use axum::extract::Query;
use axum::http::Uri;

use super::Server;
use super::api::InvokeQuery;
use super::routes::Route;
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
        .and_then(|a| server.running().get(a))
        .zip(function)
        .is_some_and(|(served, function)| served.app.function(function).is_ok_and(|f| is_public(&served.app, &f)));
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

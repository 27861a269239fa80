//! Who may talk to the server from a browser: the `Host` check (against DNS rebinding), the
//! cross-origin check on `/v1`, `/ui` and `/metrics` (against cross-site request forgery), CORS for
//! the origins the operator allows (`--cors-origin`) and, on one app's API paths and
//! `[[trigger.http]]` routes, those the app allows (`[access] cors-origins`), and the headers that
//! keep stored content from running as a page of the server's origin.
//!
//! Non-browser clients (curl, the CLI, other services) send neither `Origin` nor `Sec-Fetch-Site`
//! and pass untouched; browsers always send them on the requests that matter.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, Mount, Shared};

/// Refuse requests for a `Host` the server does not answer to (DNS rebinding), then refuse
/// cross-origin requests to the API and the dashboard unless their origin is allowed, answer
/// CORS preflights for allowed origins, and mark every answer with the security headers.
pub(super) async fn check(server: &Shared, request: Request, next: impl AsyncFnOnce(Request) -> Response) -> Response {
    let path = request.uri().path().to_string();
    if path != "/healthz"
        && let Some(host) = request.headers().get(header::HOST)
    {
        let host = host.to_str().unwrap_or("");
        if !host_allowed(host, &server.config.allowed_hosts) {
            let shown: String = host.chars().take(100).collect();
            let message = format!(
                "this server does not answer to the host name `{shown}`: use its IP address or `localhost`, or start it with `--allowed-host NAME`"
            );
            return ApiError::new(StatusCode::FORBIDDEN, "host-not-allowed", message).into_response();
        }
    }
    let guarded = ["/v1", "/ui", "/metrics"].iter().any(|p| under(&path, p));
    // The app whose API paths or `[[trigger.http]]` route this is: its `[access] cors-origins`
    // may call it too. On a route, only those: other origins reach the guest as they always did.
    let app = if guarded { api_app(&path).map(str::to_string) } else { routed_app(server, &path) };
    if !guarded && app.is_none() {
        return secured(&path, next(request).await);
    }
    let served = app.and_then(|a| server.running().get(&a));
    let app_origins = served.as_ref().map_or(&[][..], |s| &s.app.manifest().access.cors_origins[..]);
    let server_origins = if guarded { &server.config.cors_origins[..] } else { &[] };
    let origin = request.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_string);
    let allowed =
        origin.as_deref().filter(|o| server_origins.iter().chain(app_origins).any(|c| c.eq_ignore_ascii_case(o)));
    if let Some(origin) = allowed {
        let origin = HeaderValue::from_str(origin).expect("checked ASCII");
        let response = if is_preflight(&request) { preflight(request.headers()) } else { next(request).await };
        return secured(&path, with_cors(response, origin));
    }
    if !guarded {
        return secured(&path, next(request).await);
    }
    if cross_origin(&request, origin.as_deref()) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross-origin",
            format!(
                "cross-origin request{} refused: the API and dashboard answer pages of this server only; start the server with `--cors-origin ORIGIN` to allow a site",
                origin.map(|o| format!(" from `{}`", o.chars().take(100).collect::<String>())).unwrap_or_default()
            ),
        )
        .into_response();
    }
    secured(&path, next(request).await)
}

/// The app of an API path `/v1/apps/APP` or `/v1/apps/APP/...`.
fn api_app(path: &str) -> Option<&str> {
    let app = path.strip_prefix("/v1/apps/")?.split('/').next()?;
    (!app.is_empty()).then_some(app)
}

/// The app whose `[[trigger.http]]` route answers `path` (not a `[site]`: static files need no
/// CORS).
fn routed_app(server: &Shared, path: &str) -> Option<String> {
    match server.mounts().list.iter().find(|m| m.matches(path))? {
        Mount::Route(handler) => Some(handler.guest().app.clone()),
        Mount::Site(_) => None,
    }
}

/// Whether `path` is `prefix` or below it.
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether `host` (a `Host` header, with or without a port) names this server: an IP address (a
/// rebinding attack needs a name), `localhost`, or a name the operator allowed.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => return v6.split_once(']').is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok()),
        None => {
            host.rsplit_once(':').map_or(host, |(name, port)| if port.parse::<u16>().is_ok() { name } else { host })
        }
    };
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name) || a.eq_ignore_ascii_case(host))
}

/// Whether a browser sent this request from a page of another origin. The own origin is the one
/// whose authority is the request's `Host`; `Sec-Fetch-Site` catches what `Origin` does not show
/// (a cross-site GET carries no `Origin`). A top-level navigation to the dashboard page itself (a
/// link to `/ui` on another site) is let through: it cannot read or change anything.
fn cross_origin(request: &Request, origin: Option<&str>) -> bool {
    let headers = request.headers();
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let navigation = matches!(*request.method(), Method::GET | Method::HEAD)
        && request.uri().path() == "/ui"
        && headers.get("sec-fetch-mode").is_some_and(|m| m == "navigate");
    if navigation {
        return false;
    }
    if fetch_site.is_some_and(|s| s != "same-origin" && s != "none") {
        return true;
    }
    let Some(origin) = origin else { return false };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
    !(origin.starts_with("http") && !host.is_empty() && authority.eq_ignore_ascii_case(host))
}

fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to a preflight from an allowed origin: every method the API uses and the headers
/// the browser asked to send.
fn preflight(headers: &HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE"));
    if let Some(asked) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    response
}

/// Let the allowed `origin` read the answer (bearer tokens only: cookies are never sent cross-site).
fn with_cors(mut response: Response, origin: HeaderValue) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("content-disposition, location, retry-after, server-timing"),
    );
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    response
}

/// Headers for every answer: no MIME sniffing anywhere; API answers (item and object bytes among
/// them) are sandboxed and downloaded rather than shown, so stored HTML never runs as a page of
/// this origin; the dashboard and docs pages cannot be framed by other pages.
fn secured(path: &str, mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if path.starts_with("/v1/") {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'"));
        let json = headers.get(header::CONTENT_TYPE).is_some_and(|t| {
            t.to_str().is_ok_and(|t| t.starts_with("application/json") || t.starts_with("text/event-stream"))
        });
        if !json && !headers.contains_key(header::CONTENT_DISPOSITION) {
            headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment"));
        }
    } else if under(path, "/ui") || under(path, "/docs") {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'; object-src 'none'; base-uri 'none'"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_by_ip_localhost_or_allowed_name() {
        let allowed = vec!["api.example.com".to_string()];
        for ok in
            ["127.0.0.1:8080", "127.0.0.1", "[::1]:8080", "localhost:9", "LOCALHOST", "api.example.com:443", "10.1.2.3"]
        {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for bad in
            ["attacker.example:8080", "attacker.example", "127.0.0.1.nip.io:80", "[evil]:80", "localhost.evil:80", ""]
        {
            assert!(!host_allowed(bad, &allowed), "{bad}");
        }
    }

    #[test]
    fn api_paths_name_their_app() {
        assert_eq!(api_app("/v1/apps/shop"), Some("shop"));
        assert_eq!(api_app("/v1/apps/shop/functions/f.g"), Some("shop"));
        for none in ["/v1/apps", "/v1/apps/", "/v1/calls", "/shop"] {
            assert_eq!(api_app(none), None, "{none}");
        }
    }
}

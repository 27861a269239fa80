//! Authentication: the bearer tokens and their scopes, and the dashboard's sessions.
//!
//! The dashboard never keeps the token where a page's script can read it: it trades the token once
//! for a session cookie that is `HttpOnly` (no script reads it) and `SameSite=Strict` (never sent
//! with a request from another site). Sessions live in the server's memory and end with it, and
//! hold the scopes of the token they were opened with.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::RawPathParams;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::public::{self, Openness};
use super::routes::{Access, Route};
use super::scopes::{Digest32, Grant, Token, digest};
use super::{ApiError, Server, Shared, ratelimit};

/// The dashboard session cookie's name.
const COOKIE: &str = "host_session";

/// How long a dashboard session lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Most dashboard sessions at once; the oldest goes first.
const MAX_SESSIONS: usize = 1024;

/// Equal in constant time: both sides are digests of the same size, so neither the time nor an
/// early exit tells anything about the secret's length or content.
fn same(a: &Digest32, b: &Digest32) -> bool {
    a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How a request was let in.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Admitted {
    /// By its token or session (with its scopes), or on a server without tokens: not rate limited.
    Token(Grant),
    /// Without a token, to something public: held to the app's rate limit.
    Public,
}

/// The server's tokens (as digests, with their scopes) and the dashboard sessions they opened.
pub(super) struct Auth {
    tokens: Vec<Token>,
    /// Session id digest → when it ends, and the scopes of the token that opened it.
    sessions: Mutex<HashMap<Digest32, (Instant, Grant)>>,
}

impl Auth {
    /// No tokens: no auth, every request may do everything.
    pub(super) fn new(tokens: Vec<Token>) -> Auth {
        Auth { tokens, sessions: Mutex::new(HashMap::new()) }
    }

    /// The scopes of the token `given`, if it is one. Every token is compared, so the time
    /// taken does not tell which one matched.
    fn token_grant(&self, given: &str) -> Option<Grant> {
        let given = digest(given.as_bytes());
        self.tokens.iter().fold(None, |found, t| if same(&t.digest, &given) { Some(&t.scopes) } else { found }).cloned()
    }

    /// The scopes of the request's bearer token or live dashboard session (everything on a
    /// server without tokens); `None` when it has neither.
    pub(super) fn grant(&self, headers: &HeaderMap) -> Option<Grant> {
        if self.tokens.is_empty() {
            return Some(Grant::admin());
        }
        let bearer =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if let Some(given) = bearer {
            return self.token_grant(given);
        }
        let id = digest(session_cookie(headers)?.as_bytes());
        let now = Instant::now();
        let sessions = self.sessions.lock().expect("sessions lock");
        sessions.iter().find(|(known, (ends, _))| same(known, &id) && *ends > now).map(|(_, (_, grant))| grant.clone())
    }

    /// How a request for a route of `access` (of `app`) is let in: by a token with the scope,
    /// else without one when the route is `open`. Refused: `401` without a valid token, `403`
    /// naming the missing scope with one; for a public export in another mode, saying that only
    /// its direct calls are public.
    fn admit(
        &self,
        headers: &HeaderMap,
        access: Access,
        app: Option<&str>,
        open: Openness,
    ) -> Result<Admitted, ApiError> {
        let granted = self.grant(headers).ok_or_else(unauthorized);
        match (granted.and_then(|grant| permit(&grant, access, app).map(|()| grant)), open) {
            (Ok(grant), _) => Ok(Admitted::Token(grant)),
            (Err(_), Openness::Open) => Ok(Admitted::Public),
            (Err(mut error), Openness::DirectOnly) => {
                error.message.push_str(
                    "; only direct calls of this function are public: jobs, enqueued calls, map and starmap need a token",
                );
                Err(error)
            }
            (Err(error), Openness::Closed) => Err(error),
        }
    }

    /// A new session id with `grant`, remembered until it expires.
    fn open_session(&self, grant: Grant) -> Result<String, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut sessions = self.sessions.lock().expect("sessions lock");
        sessions.retain(|_, (ends, _)| *ends > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, (ends, _))| *ends).map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(digest(id.as_bytes()), (now + SESSION_LIFETIME, grant));
        Ok(id)
    }

    fn close_session(&self, headers: &HeaderMap) {
        if let Some(session) = session_cookie(headers) {
            self.sessions.lock().expect("sessions lock").remove(&digest(session.as_bytes()));
        }
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// `Ok` when `grant` opens `access` (of `app`), else `403 forbidden` naming the missing scope.
pub(super) fn permit(grant: &Grant, access: Access, app: Option<&str>) -> Result<(), ApiError> {
    grant.allows(access, app).map_err(|scope| {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("this token lacks the scope {scope}"))
    })
}

pub(super) fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong bearer token: send `Authorization: Bearer <token>`",
    )
}

/// Middleware of a route of the table: the request needs the route's scope, for the app in its
/// path, unless it is a direct call or description of a public export (then it is rate limited).
pub(super) async fn require_scope(
    State((server, route)): State<(Shared, Route)>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let params = axum::RequestPartsExt::extract::<RawPathParams>(&mut parts).await.ok();
    let param = |wanted: &str| params.as_ref()?.iter().find(|(name, _)| *name == wanted).map(|(_, value)| value);
    let (app, function) = (param("app"), param("function"));
    let open = public::openness(&server, route, app, function, &parts.uri);
    match refusal(&server, &mut parts, route.access(), app, open) {
        Some(refused) => refused,
        None => next.run(Request::from_parts(parts, body)).await,
    }
}

/// The answer refusing a request for a route of `access` (of `app`), or `None` when it may go
/// on: by its token (whose scopes it then carries), or without one when the route is `open`,
/// held to the rate limit.
pub(super) fn refusal(
    server: &Server,
    parts: &mut Parts,
    access: Access,
    app: Option<&str>,
    open: Openness,
) -> Option<Response> {
    match server.auth.admit(&parts.headers, access, app, open) {
        Ok(Admitted::Token(grant)) => {
            // Handlers that find the app in what they read (execution records) check it there.
            parts.extensions.insert(grant);
            None
        }
        Ok(Admitted::Public) => ratelimit::over_limit(server, app.unwrap_or_default(), &parts.extensions),
        Err(error) => Some(error.into_response()),
    }
}

/// `POST /ui/session` with `{"token": "..."}`: a session cookie for the dashboard and docs pages.
/// Without a server token there is nothing to trade (204).
pub(super) async fn login(State(server): State<Shared>, body: axum::body::Bytes) -> Response {
    if server.auth.tokens.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let token = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("token")?.as_str().map(str::to_string));
    let Some(token) = token else {
        return ApiError::bad_request("bad-request", "expected a JSON body `{\"token\": \"...\"}`").into_response();
    };
    let Some(grant) = server.auth.token_grant(&token) else {
        return unauthorized().into_response();
    };
    match server.auth.open_session(grant) {
        Ok(id) => {
            let cookie =
                format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}", SESSION_LIFETIME.as_secs());
            let mut response = StatusCode::NO_CONTENT.into_response();
            response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("ASCII"));
            response
        }
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "host-error", format!("no randomness: {e}"))
            .into_response(),
    }
}

/// `DELETE /ui/session`: end the dashboard session.
pub(super) async fn logout(State(server): State<Shared>, headers: HeaderMap) -> Response {
    server.auth.close_session(&headers);
    let mut response = StatusCode::NO_CONTENT.into_response();
    let expired = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&expired).expect("ASCII"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.parse::<header::HeaderName>().unwrap(), v.parse().unwrap())).collect()
    }

    #[test]
    fn token_and_sessions() {
        let auth = Auth::new(vec![Token::admin("s3cret")]);
        assert_eq!(auth.grant(&headers(&[("authorization", "Bearer s3cret")])), Some(Grant::admin()));
        for wrong in ["Bearer s3cre", "Bearer s3cret2", "Bearer ", "s3cret"] {
            assert_eq!(auth.grant(&headers(&[("authorization", wrong)])), None, "{wrong}");
        }
        assert_eq!(auth.grant(&headers(&[])), None);
        let id = auth.open_session(Grant::admin()).unwrap();
        let cookie = format!("a=b; {COOKIE}={id}");
        assert_eq!(auth.grant(&headers(&[("cookie", &cookie)])), Some(Grant::admin()));
        assert_eq!(auth.grant(&headers(&[("cookie", &format!("{COOKIE}={id}0"))])), None);
        auth.close_session(&headers(&[("cookie", &cookie)]));
        assert_eq!(auth.grant(&headers(&[("cookie", &cookie)])), None);
        assert_eq!(Auth::new(Vec::new()).grant(&headers(&[])), Some(Grant::admin()));
    }
}

//! Authentication: the bearer token, and the dashboard's sessions.
//!
//! The dashboard never keeps the token where a page's script can read it: it trades the token once
//! for a session cookie that is `HttpOnly` (no script reads it) and `SameSite=Strict` (never sent
//! with a request from another site). Sessions live in the server's memory and end with it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{ApiError, Server, Shared};

/// The dashboard session cookie's name.
const COOKIE: &str = "host_session";

/// How long a dashboard session lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Most dashboard sessions at once; the oldest goes first.
const MAX_SESSIONS: usize = 1024;

type Digest32 = [u8; 32];

fn digest(secret: &[u8]) -> Digest32 {
    Sha256::digest(secret).into()
}

/// Equal in constant time: both sides are digests of the same size, so neither the time nor an
/// early exit tells anything about the secret's length or content.
fn same(a: &Digest32, b: &Digest32) -> bool {
    a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The server's token (as a digest) and the dashboard sessions it has opened.
pub(super) struct Auth {
    token: Option<Digest32>,
    /// Session id digest → when it ends.
    sessions: Mutex<HashMap<Digest32, Instant>>,
}

impl Auth {
    pub(super) fn new(token: Option<&str>) -> Auth {
        Auth { token: token.map(|t| digest(t.as_bytes())), sessions: Mutex::new(HashMap::new()) }
    }

    fn token_matches(&self, given: &str) -> bool {
        self.token.as_ref().is_some_and(|t| same(t, &digest(given.as_bytes())))
    }

    /// Whether the request carries the bearer token or a live dashboard session (always true
    /// without a token).
    pub(super) fn authorized(&self, headers: &HeaderMap) -> bool {
        if self.token.is_none() {
            return true;
        }
        let bearer =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if let Some(given) = bearer {
            return self.token_matches(given);
        }
        let Some(session) = session_cookie(headers) else { return false };
        let id = digest(session.as_bytes());
        let now = Instant::now();
        let sessions = self.sessions.lock().expect("sessions lock");
        sessions.iter().any(|(known, ends)| same(known, &id) && *ends > now)
    }

    /// A new session id, remembered until it expires.
    fn open_session(&self) -> Result<String, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut sessions = self.sessions.lock().expect("sessions lock");
        sessions.retain(|_, ends| *ends > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, ends)| **ends).map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(digest(id.as_bytes()), now + SESSION_LIFETIME);
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

pub(super) fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong bearer token: send `Authorization: Bearer <token>`",
    )
}

/// Middleware of the protected paths.
pub(super) async fn require_token(State(server): State<Shared>, request: Request, next: Next) -> Response {
    if server.auth.authorized(request.headers()) { next.run(request).await } else { unauthorized().into_response() }
}

/// `POST /ui/session` with `{"token": "..."}`: a session cookie for the dashboard and docs pages.
/// Without a server token there is nothing to trade (204).
pub(super) async fn login(State(server): State<Shared>, body: axum::body::Bytes) -> Response {
    if server.auth.token.is_none() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let token = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("token")?.as_str().map(str::to_string));
    let Some(token) = token else {
        return ApiError::bad_request("bad-request", "expected a JSON body `{\"token\": \"...\"}`").into_response();
    };
    if !server.auth.token_matches(&token) {
        return unauthorized().into_response();
    }
    match server.auth.open_session() {
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

/// Whether a request of `server` may use non-public routes.
pub(super) fn authorized(server: &Server, request: &Request) -> bool {
    server.auth.authorized(request.headers())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.parse::<header::HeaderName>().unwrap(), v.parse().unwrap())).collect()
    }

    #[test]
    fn token_and_sessions() {
        let auth = Auth::new(Some("s3cret"));
        assert!(auth.authorized(&headers(&[("authorization", "Bearer s3cret")])));
        for wrong in ["Bearer s3cre", "Bearer s3cret2", "Bearer ", "s3cret"] {
            assert!(!auth.authorized(&headers(&[("authorization", wrong)])), "{wrong}");
        }
        assert!(!auth.authorized(&headers(&[])));
        let id = auth.open_session().unwrap();
        let cookie = format!("a=b; {COOKIE}={id}");
        assert!(auth.authorized(&headers(&[("cookie", &cookie)])));
        assert!(!auth.authorized(&headers(&[("cookie", &format!("{COOKIE}={id}0"))])));
        auth.close_session(&headers(&[("cookie", &cookie)]));
        assert!(!auth.authorized(&headers(&[("cookie", &cookie)])));
        assert!(Auth::new(None).authorized(&headers(&[])));
    }
}

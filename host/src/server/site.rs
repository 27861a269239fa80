//! `[site]`: static files from a folder opened with cap-std, so no request path (`..`, absolute
//! paths, symlinks) reaches outside it. A folder answers with its `index.html`.

use std::io::ErrorKind;

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cap_std::ambient_authority;
use cap_std::fs::Dir;

use super::ApiError;

/// An opened site folder and the path prefix it is served under.
pub(super) struct Site {
    dir: Dir,
    route: String,
}

impl Site {
    pub(super) fn open(site: &crate::manifest::Site) -> std::io::Result<Site> {
        Ok(Site { dir: Dir::open_ambient_dir(&site.dir, ambient_authority())?, route: site.route.clone() })
    }

    /// The path prefix, e.g. `/` or `/app`.
    pub(super) fn route(&self) -> &str {
        &self.route
    }

    pub(super) fn matches(&self, path: &str) -> bool {
        self.relative(path).is_some()
    }

    /// `path` relative to the site root, when it is under the route.
    fn relative<'a>(&self, path: &'a str) -> Option<&'a str> {
        let rest = path.strip_prefix(self.route.trim_end_matches('/'))?;
        if rest.is_empty() || rest.starts_with('/') { Some(rest.trim_start_matches('/')) } else { None }
    }

    pub(super) fn serve(&self, method: &Method, path: &str) -> Response {
        if method != Method::GET && method != Method::HEAD {
            return ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "a site answers GET and HEAD only",
            )
            .into_response();
        }
        let Some(relative) = self.relative(path).and_then(decode) else {
            return ApiError::bad_request("bad-path", format!("invalid path `{path}`")).into_response();
        };
        let not_found = || ApiError::not_found("not-found", format!("no file at `{path}`")).into_response();
        let mut file = relative.trim_end_matches('/').to_string();
        match self.dir.metadata(if file.is_empty() { "." } else { &file }) {
            Ok(meta) if meta.is_dir() => {
                if !path.ends_with('/') {
                    // Relative links in the index resolve against the folder only with the slash.
                    let location = format!("{path}/");
                    return (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, location)]).into_response();
                }
                file = if file.is_empty() { "index.html".into() } else { format!("{file}/index.html") };
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => return not_found(),
            // cap-std refuses paths that would leave the folder: same answer as a missing file.
            Err(e) if e.kind() == ErrorKind::PermissionDenied || e.raw_os_error().is_none() => return not_found(),
            Err(e) => {
                return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "site-error", e.to_string()).into_response();
            }
        }
        match self.dir.read(&file) {
            Ok(bytes) => {
                let body = if method == Method::HEAD { Body::empty() } else { Body::from(bytes) };
                ([(header::CONTENT_TYPE, content_type(&file))], body).into_response()
            }
            Err(_) => not_found(),
        }
    }
}

/// Percent-decode a path; `None` when it decodes to invalid UTF-8 or holds a NUL or backslash.
fn decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().filter(|p| !p.contains(['\0', '\\']))
}

/// The content type for a file name: its mimetype, with the charset for text.
fn content_type(file: &str) -> String {
    match crate::mimetype::guess(file) {
        text if text.starts_with("text/") || text == "application/json" => format!("{text}; charset=utf-8"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_and_decoding() {
        assert_eq!(content_type("a/index.HTML"), "text/html; charset=utf-8");
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
        assert_eq!(content_type("a.png"), "image/png");
        assert_eq!(decode("a%20b/c.txt").as_deref(), Some("a b/c.txt"));
        assert_eq!(decode("%2e%2e/etc/passwd").as_deref(), Some("../etc/passwd"));
        assert_eq!(decode("bad%zz"), None);
        assert_eq!(decode("a%00b"), None);
    }
}

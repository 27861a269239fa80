//! Outbound HTTP (`wasi:http/outgoing-handler`): a small blocking client that follows redirects.
//!
//! The host sends a request only where the function's `grants.http` allows it, and refuses the
//! rest with `http-request-denied` before connecting; a redirect is sent as a new request, so every
//! hop is checked again. Status codes are left to the caller: a `404` is a [`Response`].
//!
//! ```ignore
//! use guest_sdk::http::{self, Request};
//!
//! let page = http::get("https://api.example.com/status")?.text()?;
//! let boxes: Vec<Detection> = Request::post("https://api.example.com/detect")
//!     .header("authorization", &format!("Bearer {key}"))
//!     .body(image)
//!     .send()?
//!     .json()?;
//! ```

mod url;

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, IncomingResponse, OutgoingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

pub use self::url::Url;
/// What the host or the network answered instead of a response (`wasi:http`'s `error-code`).
pub use wasip2::http::types::ErrorCode;
/// A request's method.
pub use wasip2::http::types::Method;

/// Redirects followed before [`Error::TooManyRedirects`].
pub const MAX_REDIRECTS: usize = 5;

/// How much of the body is written, or asked for, at a time (`wasi:io` writes at most 4096
/// bytes per blocking call).
const CHUNK: usize = 4096;

/// Headers a redirect to another origin does not carry along.
const CREDENTIALS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// Why a request got no response.
#[derive(Debug, Clone)]
pub enum Error {
    /// The URL (or a redirect's `Location`) is not an absolute `http`/`https` URL.
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header name or value is not allowed.
    InvalidHeader {
        /// The header's name.
        name: String,
    },
    /// The host refused the request, or the request or response failed on the way.
    Request {
        /// The URL of the request (the redirect hop that failed).
        url: String,
        /// `wasi:http`'s reason.
        code: ErrorCode,
    },
    /// The redirects went on past [`MAX_REDIRECTS`].
    TooManyRedirects {
        /// The URL first asked for.
        url: String,
    },
    /// Streaming a body failed other than with an HTTP error code.
    Body {
        /// The URL of the request.
        url: String,
        /// What happened.
        reason: String,
    },
    /// The response body is not what [`Response::text`] or [`Response::json`] expected.
    Decode {
        /// The URL of the request.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl { url, reason } => write!(f, "invalid URL {url:?}: {reason}"),
            Self::InvalidHeader { name } => write!(f, "invalid or forbidden request header {name:?}"),
            Self::Request { url, code: ErrorCode::HttpRequestDenied } => write!(
                f,
                "HTTP request to {url} denied (http-request-denied): the function's `grants.http` does not allow it \
                 (the call's logs say why)"
            ),
            Self::Request { url, code } => write!(f, "HTTP request to {url} failed ({})", describe(code)),
            Self::TooManyRedirects { url } => write!(f, "HTTP request to {url}: more than {MAX_REDIRECTS} redirects"),
            Self::Body { url, reason } => write!(f, "HTTP request to {url}: body: {reason}"),
            Self::Decode { url, reason } => write!(f, "HTTP response from {url}: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

/// The result of an HTTP request.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `GET url`.
pub fn get(url: &str) -> Result<Response> {
    Request::get(url).send()
}

/// A request to send: method, URL, headers and body.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: Method, url: &str) -> Request {
        Request { method, url: url.into(), headers: Vec::new(), body: Vec::new() }
    }

    /// `GET url`.
    pub fn get(url: &str) -> Request {
        Request::new(Method::Get, url)
    }

    /// `POST url`.
    pub fn post(url: &str) -> Request {
        Request::new(Method::Post, url)
    }

    /// Adds a header (names are case-insensitive; a repeated name is sent twice).
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_ascii_lowercase(), value.as_bytes().to_vec()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets the body to `value` as JSON, with `content-type: application/json`.
    pub fn json(self, value: &impl Serialize) -> Request {
        let body = serde_json::to_vec(value).expect("a Serialize value without maps keyed by non-strings");
        self.header("content-type", "application/json").body(body)
    }

    /// Sends the request and reads the whole response, following up to [`MAX_REDIRECTS`]
    /// redirects (301, 302, 303, 307, 308): 303, and 301 or 302 after a `POST`, go on as a `GET`
    /// without the body; a hop to another scheme, host or port drops the credential headers
    /// (`authorization`, `proxy-authorization`, `cookie`).
    pub fn send(self) -> Result<Response> {
        let first = self.url.clone();
        let mut url = Url::parse(&self.url).map_err(|reason| Error::InvalidUrl { url: first.clone(), reason })?;
        let mut request = self;
        for _ in 0..=MAX_REDIRECTS {
            let response = request.send_once(&url)?;
            let status = response.status();
            let location = redirect_location(&response);
            let (Some(location), 301 | 302 | 303 | 307 | 308) = (location, status) else {
                return read_response(&url, response);
            };
            let next = url.join(&location).map_err(|reason| Error::InvalidUrl { url: location.clone(), reason })?;
            request = request.redirected(status, !url.same_origin(&next));
            url = next;
        }
        Err(Error::TooManyRedirects { url: first })
    }

    /// This request as the next hop of a redirect with `status`.
    fn redirected(mut self, status: u16, other_origin: bool) -> Request {
        let to_get = status == 303 || (matches!(status, 301 | 302) && matches!(self.method, Method::Post));
        if to_get && !matches!(self.method, Method::Head) {
            self.method = Method::Get;
            self.body.clear();
            self.headers.retain(|(name, _)| !name.starts_with("content-"));
        }
        if other_origin {
            self.headers.retain(|(name, _)| !CREDENTIALS.contains(&name.as_str()));
        }
        self
    }

    /// Sends the request to `url` once and waits for the response head.
    fn send_once(&self, url: &Url) -> Result<IncomingResponse> {
        let failed = |code| Error::Request { url: url.to_string(), code };
        let headers = fields(&self.headers)?;
        let outgoing = OutgoingRequest::new(headers);
        let invalid =
            |part: &str| Error::InvalidUrl { url: url.to_string(), reason: format!("the host refused its {part}") };
        outgoing.set_method(&self.method).map_err(|()| invalid("method"))?;
        outgoing
            .set_scheme(Some(if url.https { &Scheme::Https } else { &Scheme::Http }))
            .map_err(|()| invalid("scheme"))?;
        outgoing.set_authority(Some(&url.authority)).map_err(|()| invalid("authority"))?;
        outgoing.set_path_with_query(Some(&url.path_and_query)).map_err(|()| invalid("path"))?;
        let body = outgoing.body().expect("the body of a new request");
        let future = outgoing_handler::handle(outgoing, None).map_err(failed)?;
        // The body is written once the host has the request, so it streams to the connection
        // rather than filling a buffer first.
        {
            let stream = body.write().expect("the stream of a new body");
            for chunk in self.body.chunks(CHUNK) {
                stream.blocking_write_and_flush(chunk).map_err(|e| stream_error(url, e))?;
            }
        }
        OutgoingBody::finish(body, None).map_err(failed)?;
        future.subscribe().block();
        future.get().expect("ready after blocking").expect("the response, taken once").map_err(failed)
    }
}

/// `headers` as `wasi:http` fields; the first header it refuses, otherwise.
fn fields(headers: &[(String, Vec<u8>)]) -> Result<Fields> {
    Fields::from_list(headers).map_err(|_| {
        // The host says only that one of them is wrong: find which, one at a time.
        let wrong = headers.iter().find(|header| Fields::from_list(std::slice::from_ref(header)).is_err());
        Error::InvalidHeader { name: wrong.map(|(name, _)| name.clone()).unwrap_or_default() }
    })
}

/// The `Location` of a response, if it has one.
fn redirect_location(response: &IncomingResponse) -> Option<String> {
    let values = response.headers().get("location");
    values.first().map(|value| String::from_utf8_lossy(value).into_owned())
}

/// Reads the head and the whole body of `response` to `url`, in blocking reads.
fn read_response(url: &Url, response: IncomingResponse) -> Result<Response> {
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
        .collect();
    let incoming = response.consume().expect("the body of a new response");
    let mut body = Vec::new();
    {
        let stream = incoming.stream().expect("the stream of a new body");
        loop {
            match stream.blocking_read(CHUNK as u64 * 16) {
                Ok(bytes) => body.extend_from_slice(&bytes),
                Err(StreamError::Closed) => break,
                Err(error) => return Err(stream_error(url, error)),
            }
        }
    }
    drop(wasip2::http::types::IncomingBody::finish(incoming));
    Ok(Response { url: url.to_string(), status: response.status(), headers, body })
}

/// The error of a body stream: the HTTP error code behind it when there is one (e.g. the
/// response body over the host's limit).
fn stream_error(url: &Url, error: StreamError) -> Error {
    let url = url.to_string();
    match error {
        StreamError::Closed => Error::Body { url, reason: "the stream was closed".into() },
        StreamError::LastOperationFailed(io) => match wasip2::http::types::http_error_code(&io) {
            Some(code) => Error::Request { url, code },
            None => Error::Body { url, reason: io.to_debug_string() },
        },
    }
}

/// An answer: its status, headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The URL that answered (the last hop of the redirects).
    pub url: String,
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<String> {
        String::from_utf8(self.body.clone())
            .map_err(|e| Error::Decode { url: self.url.clone(), reason: format!("the body is not UTF-8: {e}") })
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Decode {
            url: self.url.clone(),
            reason: format!("the body is not the JSON expected: {e}"),
        })
    }
}

/// `wasi:http`'s name of an error code, with its details when it has some.
fn describe(code: &ErrorCode) -> String {
    let name = match code {
        ErrorCode::DnsTimeout => "dns-timeout",
        ErrorCode::DnsError(e) => return format!("dns-error: {:?} {:?}", e.rcode, e.info_code),
        ErrorCode::DestinationNotFound => "destination-not-found",
        ErrorCode::DestinationUnavailable => "destination-unavailable",
        ErrorCode::DestinationIpProhibited => "destination-ip-prohibited",
        ErrorCode::DestinationIpUnroutable => "destination-ip-unroutable",
        ErrorCode::ConnectionRefused => "connection-refused",
        ErrorCode::ConnectionTerminated => "connection-terminated",
        ErrorCode::ConnectionTimeout => "connection-timeout",
        ErrorCode::ConnectionReadTimeout => "connection-read-timeout",
        ErrorCode::ConnectionWriteTimeout => "connection-write-timeout",
        ErrorCode::ConnectionLimitReached => "connection-limit-reached",
        ErrorCode::TlsProtocolError => "tls-protocol-error",
        ErrorCode::TlsCertificateError => "tls-certificate-error",
        ErrorCode::TlsAlertReceived(alert) => return format!("tls-alert-received: {:?}", alert.alert_message),
        ErrorCode::HttpRequestDenied => "http-request-denied",
        ErrorCode::HttpRequestLengthRequired => "http-request-length-required",
        ErrorCode::HttpRequestBodySize(_) => "http-request-body-size",
        ErrorCode::HttpRequestMethodInvalid => "http-request-method-invalid",
        ErrorCode::HttpRequestUriInvalid => "http-request-uri-invalid",
        ErrorCode::HttpRequestUriTooLong => "http-request-uri-too-long",
        ErrorCode::HttpRequestHeaderSectionSize(_) => "http-request-header-section-size",
        ErrorCode::HttpRequestHeaderSize(_) => "http-request-header-size",
        ErrorCode::HttpRequestTrailerSectionSize(_) => "http-request-trailer-section-size",
        ErrorCode::HttpRequestTrailerSize(_) => "http-request-trailer-size",
        ErrorCode::HttpResponseIncomplete => "http-response-incomplete",
        ErrorCode::HttpResponseHeaderSectionSize(_) => "http-response-header-section-size",
        ErrorCode::HttpResponseHeaderSize(_) => "http-response-header-size",
        ErrorCode::HttpResponseBodySize(Some(limit)) => return format!("http-response-body-size: over {limit} bytes"),
        ErrorCode::HttpResponseBodySize(None) => "http-response-body-size",
        ErrorCode::HttpResponseTrailerSectionSize(_) => "http-response-trailer-section-size",
        ErrorCode::HttpResponseTrailerSize(_) => "http-response-trailer-size",
        ErrorCode::HttpResponseTransferCoding(coding) => return format!("http-response-transfer-coding: {coding:?}"),
        ErrorCode::HttpResponseContentCoding(coding) => return format!("http-response-content-coding: {coding:?}"),
        ErrorCode::HttpResponseTimeout => "http-response-timeout",
        ErrorCode::HttpUpgradeFailed => "http-upgrade-failed",
        ErrorCode::HttpProtocolError => "http-protocol-error",
        ErrorCode::LoopDetected => "loop-detected",
        ErrorCode::ConfigurationError => "configuration-error",
        ErrorCode::InternalError(Some(message)) => return format!("internal-error: {message}"),
        ErrorCode::InternalError(None) => "internal-error",
    };
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload() -> Request {
        Request::post("http://a.example/up").header("Authorization", "key").json(&[1, 2]).header("x-trace", "t")
    }

    fn names(request: &Request) -> Vec<&str> {
        request.headers.iter().map(|(name, _)| name.as_str()).collect()
    }

    #[test]
    fn a_see_other_or_moved_post_goes_on_as_a_get_without_its_body() {
        for status in [301, 302, 303] {
            let next = upload().redirected(status, false);
            assert!(matches!(next.method, Method::Get), "{status}");
            assert!(next.body.is_empty(), "{status}");
            assert_eq!(names(&next), ["authorization", "x-trace"], "{status}");
        }
        let head = Request::new(Method::Head, "http://a.example/").redirected(303, false);
        assert!(matches!(head.method, Method::Head));
    }

    #[test]
    fn a_temporary_or_permanent_redirect_keeps_method_and_body() {
        for status in [307, 308] {
            let next = upload().redirected(status, false);
            assert!(matches!(next.method, Method::Post), "{status}");
            assert_eq!(next.body, b"[1,2]", "{status}");
            assert_eq!(names(&next), ["authorization", "content-type", "x-trace"], "{status}");
        }
    }

    #[test]
    fn credentials_stay_with_their_origin() {
        let next = upload().header("cookie", "c").header("proxy-authorization", "p").redirected(307, true);
        assert_eq!(names(&next), ["content-type", "x-trace"]);
    }

    #[test]
    fn errors_name_the_url_and_the_code() {
        let denied = Error::Request { url: "https://x.example/a".into(), code: ErrorCode::HttpRequestDenied };
        assert!(denied.to_string().starts_with("HTTP request to https://x.example/a denied (http-request-denied): "));
        let large = Error::Request { url: "http://h/".into(), code: ErrorCode::HttpResponseBodySize(Some(1024)) };
        assert_eq!(large.to_string(), "HTTP request to http://h/ failed (http-response-body-size: over 1024 bytes)");
        let slow = Error::Request { url: "http://h/".into(), code: ErrorCode::ConnectionReadTimeout };
        assert_eq!(slow.to_string(), "HTTP request to http://h/ failed (connection-read-timeout)");
    }
}

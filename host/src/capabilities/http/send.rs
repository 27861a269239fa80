//! Sending one granted request: resolve (the app's `resolve` overrides first), refuse internal
//! addresses the grant does not name, connect (TLS for `https`), send, and hand back a response
//! whose body is capped and timed. Written here rather than taken from `wasmtime-wasi-http`'s
//! default sender because that one resolves the name itself: the address that is checked must be
//! the address that is connected to.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep, timeout, timeout_at};
use wasmtime_wasi_http::{RequestOptions, WasiBody};

use super::{Function, HttpError, InFlight, IoFuture};
use crate::manifest::{OutboundSpec, default_port, is_internal, parse_ip};

/// Where a request goes: scheme, host (lower case, IPv6 without brackets) and port.
pub(super) struct Target {
    scheme: String,
    host: String,
    port: u16,
}

impl Target {
    /// The target of `uri`; the error says what is missing or wrong.
    pub(super) fn of(uri: &http::Uri) -> Result<Target, String> {
        let scheme = uri.scheme_str().unwrap_or_default();
        if scheme != "http" && scheme != "https" {
            return Err(format!("scheme `{scheme}` of {uri} is not http or https"));
        }
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| format!("no host in {uri}"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        Ok(Target { port: uri.port_u16().unwrap_or(default_port(scheme)), scheme: scheme.into(), host })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match parse_ip(&self.host) {
            Some(IpAddr::V6(_)) => write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port),
            _ => write!(f, "{}://{}:{}", self.scheme, self.host, self.port),
        }
    }
}

/// Why a request got no response: the guest sees [`Refusal::into_error`], the call's logs the
/// text.
pub(super) enum Refusal {
    /// The request's URI cannot be sent (no host, another scheme).
    Invalid(String),
    /// No entry of the function's grant matches.
    NotGranted { target: Target, function: String },
    /// The name resolved to an internal address no entry names.
    Internal { target: Target, address: IpAddr, function: String },
    /// The call has `[outbound] requests-at-once` requests in flight.
    Limit { target: Target, label: String, limit: u32 },
    /// Resolving, connecting or sending failed.
    Failed { target: Target, label: String, error: HttpError },
}

impl Refusal {
    /// The `host` label of its metric: the matching grant entry, or `other` (requests to hosts
    /// outside the grant are not labelled by host, which a guest could make up without end).
    pub(super) fn host_label(&self) -> String {
        match self {
            Refusal::Invalid(_) | Refusal::NotGranted { .. } => "other".into(),
            Refusal::Internal { target, .. } => target.host.clone(),
            Refusal::Limit { label, .. } | Refusal::Failed { label, .. } => label.clone(),
        }
    }

    /// The `outcome` label of its metric.
    pub(super) fn outcome(&self) -> &'static str {
        match self {
            Refusal::Invalid(_) => "invalid",
            Refusal::NotGranted { .. } | Refusal::Internal { .. } => "denied",
            Refusal::Limit { .. } => "connection-limit-reached",
            Refusal::Failed { error, .. } => error_code(error),
        }
    }

    /// The error the guest gets.
    pub(super) fn into_error(self) -> HttpError {
        match self {
            Refusal::Invalid(_) => HttpError::HttpRequestUriInvalid,
            Refusal::NotGranted { .. } | Refusal::Internal { .. } => HttpError::HttpRequestDenied,
            Refusal::Limit { .. } => HttpError::ConnectionLimitReached,
            Refusal::Failed { error, .. } => error,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Invalid(why) => write!(f, "refused (HTTP-request-URI-invalid): {why}"),
            Refusal::NotGranted { target, function } => {
                write!(f, "{target} refused (HTTP-request-denied): not in grants.http of function `{function}`")
            }
            Refusal::Internal { target, address, function } => write!(
                f,
                "{target} refused (HTTP-request-denied): it resolves to {address}, an internal address that grants.http \
                 of function `{function}` does not name"
            ),
            Refusal::Limit { target, limit, .. } => write!(
                f,
                "{target} refused (connection-limit-reached): {limit} requests of this call are in flight \
                 (`[outbound] requests-at-once`)"
            ),
            Refusal::Failed { target, error, .. } => write!(f, "{target} failed ({}): {error}", error_code(error)),
        }
    }
}

/// A stable kebab-case name of `error` (the `outcome` label of failed requests).
fn error_code(error: &HttpError) -> &'static str {
    match error {
        HttpError::DnsTimeout => "dns-timeout",
        HttpError::DnsError { .. } => "dns-error",
        HttpError::DestinationNotFound => "destination-not-found",
        HttpError::ConnectionRefused => "connection-refused",
        HttpError::ConnectionTimeout => "connection-timeout",
        HttpError::ConnectionReadTimeout => "connection-read-timeout",
        HttpError::Connect(_) => "connection-error",
        HttpError::TlsCertificateError => "tls-certificate-error",
        HttpError::TlsAlertReceived { .. } => "tls-alert-received",
        HttpError::TlsProtocolError | HttpError::Tls(_) => "tls-protocol-error",
        HttpError::HttpResponseTimeout => "http-response-timeout",
        _ => "http-protocol-error",
    }
}

/// A request that got a response.
pub(super) struct Sent {
    /// Where it went.
    pub(super) target: Target,
    /// The host label of the grant entry that let it through.
    pub(super) label: String,
    /// The response, its body capped and timed.
    pub(super) response: http::Response<WasiBody>,
    /// The connection, for the caller to drive while the body is read.
    pub(super) io: IoFuture,
}

/// Sends `request` to `target` for the function `f`, holding `in_flight` (none: the call is at its
/// limit) until the response body ends.
pub(super) async fn send(
    f: &Function,
    target: Target,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    in_flight: Option<InFlight>,
) -> Result<Sent, Refusal> {
    let Some(entry) = f.grant.allowing(&target.scheme, &target.host, target.port) else {
        return Err(Refusal::NotGranted { target, function: f.function.clone() });
    };
    let label = entry.host_label();
    let spec = &f.settings.spec;
    let Some(in_flight) = in_flight else {
        return Err(Refusal::Limit { target, label, limit: spec.requests_at_once });
    };
    let limits = Limits::of(spec, options);
    let addresses = match resolve(&target, spec, limits.connect).await {
        Ok(addresses) => addresses,
        Err(error) => return Err(Refusal::Failed { target, label, error }),
    };
    if let Some(address) =
        addresses.iter().map(SocketAddr::ip).find(|ip| is_internal(*ip) && !f.grant.names_address(&target.scheme, *ip, target.port))
    {
        return Err(Refusal::Internal { target, address, function: f.function.clone() });
    }
    // Origin form on the wire; the `host` header already names the authority.
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = http::Uri::try_from(path).unwrap_or_else(|_| http::Uri::from_static("/"));
    let sent = async {
        let stream = connect(&target, &addresses, &f.settings, limits.connect).await?;
        exchange(stream, request, limits, in_flight).await
    };
    match sent.await {
        Ok((response, io)) => Ok(Sent { target, label, response, io }),
        Err(error) => Err(Refusal::Failed { target, label, error }),
    }
}

/// The timeouts and cap of one request: the app's, or the guest's `request-options` when shorter.
#[derive(Clone, Copy)]
struct Limits {
    connect: Duration,
    first_byte: Duration,
    between_bytes: Duration,
    max_body: u64,
}

impl Limits {
    fn of(spec: &OutboundSpec, options: Option<RequestOptions>) -> Limits {
        let options = options.unwrap_or_default();
        let shorter = |ours: Duration, theirs: Option<Duration>| theirs.map_or(ours, |t| t.min(ours));
        Limits {
            connect: shorter(spec.connect_timeout, options.connect_timeout),
            first_byte: shorter(spec.first_byte_timeout, options.first_byte_timeout),
            // Tokio's timers cannot be zero.
            between_bytes: shorter(spec.between_bytes_timeout, options.between_bytes_timeout)
                .max(Duration::from_millis(1)),
            max_body: spec.max_response_body,
        }
    }
}

/// The addresses of `target`: the app's override, the literal address, or DNS.
async fn resolve(target: &Target, spec: &OutboundSpec, limit: Duration) -> Result<Vec<SocketAddr>, HttpError> {
    if let Some(address) = spec.resolve.get(&format!("{}:{}", target.host, target.port)) {
        return Ok(vec![*address]);
    }
    if let Some(ip) = parse_ip(&target.host) {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    match timeout(limit, tokio::net::lookup_host((target.host.as_str(), target.port))).await {
        Err(_) => Err(HttpError::DnsTimeout),
        Ok(Err(e)) => Err(HttpError::DnsError { rcode: Some(e.to_string()), info_code: None }),
        Ok(Ok(found)) => Some(found.collect::<Vec<_>>()).filter(|a| !a.is_empty()).ok_or(HttpError::DestinationNotFound),
    }
}

/// A connection, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for S {}

/// Connects to the first of `addresses` that answers, then TLS for `https`, all within `limit`.
async fn connect(
    target: &Target,
    addresses: &[SocketAddr],
    settings: &super::AppOutbound,
    limit: Duration,
) -> Result<Box<dyn Stream>, HttpError> {
    let deadline = Instant::now() + limit;
    let mut last = HttpError::ConnectionRefused;
    let mut stream = None;
    for address in addresses {
        match timeout_at(deadline, TcpStream::connect(address)).await {
            Err(_) => return Err(HttpError::ConnectionTimeout),
            Ok(Ok(s)) => {
                stream = Some(s);
                break;
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => last = HttpError::ConnectionRefused,
            Ok(Err(e)) => last = HttpError::Connect(e),
        }
    }
    let stream = stream.ok_or(last)?;
    // Requests go out as head and body in separate writes; without this the body waits for the
    // head's acknowledgement (Nagle).
    let _ = stream.set_nodelay(true);
    if target.scheme != "https" {
        return Ok(Box::new(stream));
    }
    let name = rustls::pki_types::ServerName::try_from(target.host.clone()).map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let connector = tokio_rustls::TlsConnector::from(settings.tls());
    match timeout_at(deadline, connector.connect(name, stream)).await {
        Err(_) => Err(HttpError::ConnectionTimeout),
        Ok(Ok(tls)) => Ok(Box::new(tls)),
        Ok(Err(e)) => Err(tls_error(e)),
    }
}

/// The wasi:http error of a failed TLS handshake.
fn tls_error(error: std::io::Error) -> HttpError {
    match error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(_)) => HttpError::TlsCertificateError,
        Some(rustls::Error::AlertReceived(alert)) => HttpError::TlsAlertReceived {
            alert_id: Some(u8::from(*alert)),
            alert_message: Some(format!("{alert:?}")),
        },
        _ => HttpError::TlsProtocolError,
    }
}

/// HTTP/1.1 over `stream`: sends `request` and waits for the response's head, driving the
/// connection meanwhile; the connection's future is handed back for the caller to drive.
async fn exchange(
    stream: Box<dyn Stream>,
    request: http::Request<WasiBody>,
    limits: Limits,
    in_flight: InFlight,
) -> Result<(http::Response<WasiBody>, IoFuture), HttpError> {
    let handshake = hyper::client::conn::http1::handshake(TokioIo::new(stream));
    let (mut sender, conn) = timeout(limits.connect, handshake).await.map_err(|_| HttpError::ConnectionTimeout)??;
    let mut conn = Box::pin(conn);
    let response = timeout(limits.first_byte, sender.send_request(request));
    tokio::pin!(response);
    let mut conn_done = false;
    let response = tokio::select! {
        biased;
        response = &mut response => response,
        // The connection ended before the head came: its error, or the response's.
        result = &mut conn => {
            result?;
            conn_done = true;
            (&mut response).await
        }
    };
    let response = response.map_err(|_| HttpError::ConnectionReadTimeout)??;
    let io: IoFuture = Box::new(async move {
        if !conn_done {
            conn.await?;
        }
        Ok(())
    });
    let (parts, incoming) = response.into_parts();
    let body = ResponseBody::new(incoming, limits, in_flight);
    Ok((http::Response::from_parts(parts, body.boxed_unsync()), io))
}

/// A response body that fails once more than `max` bytes came or `between` passed without a
/// piece, and keeps its request counted as in flight until it ends or is dropped.
struct ResponseBody {
    incoming: Option<Incoming>,
    read: u64,
    max: u64,
    between: Duration,
    idle: Pin<Box<Sleep>>,
    _in_flight: InFlight,
}

impl ResponseBody {
    fn new(incoming: Incoming, limits: Limits, in_flight: InFlight) -> ResponseBody {
        ResponseBody {
            incoming: Some(incoming),
            read: 0,
            max: limits.max_body,
            between: limits.between_bytes,
            idle: Box::pin(tokio::time::sleep(limits.between_bytes)),
            _in_flight: in_flight,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        let Some(incoming) = this.incoming.as_mut() else { return Poll::Ready(None) };
        match Pin::new(incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.read += frame.data_ref().map_or(0, |d| d.len() as u64);
                if this.read > this.max {
                    this.incoming = None;
                    return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(this.max)))));
                }
                this.idle.as_mut().reset(Instant::now() + this.between);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(HttpError::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.as_ref().is_none_or(Incoming::is_end_stream)
    }
}

/// The TLS client configuration: HTTP/1.1 over TLS 1.2 or 1.3, the system's roots and `extra`.
pub(super) fn tls_config(extra: &[rustls::pki_types::CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    // The system's roots are read once per process, not once per app.
    static NATIVE: std::sync::OnceLock<Vec<rustls::pki_types::CertificateDer<'static>>> = std::sync::OnceLock::new();
    let native = NATIVE.get_or_init(|| {
        let native = rustls_native_certs::load_native_certs();
        if !native.errors.is_empty() {
            tracing::warn!(errors = ?native.errors, "some of the system's TLS roots could not be read");
        }
        native.certs
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(native.iter().cloned());
    roots.add_parsable_certificates(extra.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

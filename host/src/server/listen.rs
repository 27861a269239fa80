//! Connections: accept, serve HTTP/1.1 with a deadline for each request's head and body, and shut
//! down gracefully. A client that sends its head or body too slowly (or declares a body it never
//! sends) loses its connection instead of holding a request slot.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::task::JoinSet;

use super::{ApiError, ServerConfig, Shared};
use crate::Host;

/// Serve `router` on `listener` until `shutdown` resolves; then stop accepting, give requests in
/// flight up to `config.shutdown_grace` to finish, and flush the store. Returns whether every
/// request finished.
pub async fn serve(
    host: &Host,
    listener: tokio::net::TcpListener,
    router: Router,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<bool> {
    let mut http = hyper::server::conn::http1::Builder::new();
    // The head timer also runs while a kept-alive connection waits for its next request, so it
    // is the idle timeout as well.
    http.timer(TokioTimer::new()).header_read_timeout(config.header_timeout);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        // Answers streamed from a guest (head first, body after) must not wait for the client's
        // delayed ACK: without TCP_NODELAY, Nagle's algorithm added ~40 ms to some of them.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let router = hyper_util::service::TowerToHyperService::new(router.clone());
        // Handlers learn the client's address (the TCP peer, never a header it could forge) from
        // this extension: the rate limit of calls without a token is per client.
        let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            hyper::service::Service::call(&router, request)
        });
        let connection = http.serve_connection(TokioIo::new(tcp), service).with_upgrades();
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let stop = async move {
                let _ = stopping.wait_for(|s| *s).await.map(|_| ());
            };
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = stop => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    tracing::info!(
        "shutting down: no new connections; waiting up to {:?} for requests in flight",
        config.shutdown_grace
    );
    let _ = stop.send(true);
    let finished =
        tokio::time::timeout(config.shutdown_grace, async { while connections.join_next().await.is_some() {} })
            .await
            .is_ok();
    if !finished {
        tracing::warn!("requests still running after {:?}; stopping them", config.shutdown_grace);
        connections.abort_all();
    }
    if let Err(error) = host.flush() {
        tracing::error!(%error, "flushing the store failed");
    }
    Ok(finished)
}

/// Refuse a declared body over the limit before reading it, and give the body `body_timeout`
/// to arrive in full: past it the request ends with `408 body-timeout` and the connection closes.
pub(super) async fn limit_body(
    server: &Shared,
    request: Request,
    next: impl AsyncFnOnce(Request) -> Response,
) -> Response {
    let deploy = request.method() == axum::http::Method::PUT
        && request.uri().path().strip_prefix("/v1/apps/").is_some_and(|app| !app.contains('/'));
    let max_body = if deploy { server.config.max_bundle } else { server.config.max_body };
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("request body of {} bytes is over the limit of {max_body} bytes", declared.unwrap_or(0)),
        )
        .into_response();
    }
    // Most requests have no body (a GET): nothing to wait for, so no timer to arm.
    if hyper::body::Body::is_end_stream(request.body()) {
        return next(request).await;
    }
    let timed_out = Arc::new(AtomicBool::new(false));
    let deadline = tokio::time::Instant::now() + server.config.body_timeout;
    let request = request.map(|body| {
        Body::new(Deadline { body, sleep: Box::pin(tokio::time::sleep_until(deadline)), timed_out: timed_out.clone() })
    });
    let response = next(request).await;
    if !timed_out.load(Ordering::Relaxed) {
        return response;
    }
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body-timeout",
        format!("the request body did not arrive within {:?}", server.config.body_timeout),
    )
    .into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that fails once its deadline passes.
struct Deadline {
    body: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timed_out: Arc<AtomicBool>,
}

/// The error a [`Deadline`] body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimeout;

impl hyper::body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if self.body.is_end_stream() || self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.timed_out.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(axum::Error::new(BodyTimeout))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

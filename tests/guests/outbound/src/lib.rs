//! Test guest: outgoing requests through raw `wasi:http` (no client library, so the host's checks
//! are what is tested), each error as its wasi:http error code.

use wasip2::http::outgoing_handler::{self, FutureIncomingResponse};
use wasip2::http::types::{ErrorCode, Fields, IncomingResponse, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

wit_bindgen::generate!({ world: "outbound" });

/// The component's exports.
struct Outbound;

/// Starts `method url` with `body`.
fn start(method: &str, url: &str, body: Option<&str>) -> Result<FutureIncomingResponse, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("no scheme in {url}"))?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let request = OutgoingRequest::new(Fields::new());
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.into()),
    };
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        other => Method::Other(other.into()),
    };
    request.set_method(&method).map_err(|()| "bad method")?;
    request.set_scheme(Some(&scheme)).map_err(|()| "bad scheme")?;
    request.set_authority(Some(authority)).map_err(|()| "bad authority")?;
    request.set_path_with_query(Some(path)).map_err(|()| "bad path")?;
    let outgoing = request.body().map_err(|()| "no body")?;
    let future = outgoing_handler::handle(request, None).map_err(|e| code(&e))?;
    let stream = outgoing.write().map_err(|()| "no body stream")?;
    if let Some(body) = body {
        stream.blocking_write_and_flush(body.as_bytes()).map_err(|e| format!("{e:?}"))?;
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).map_err(|e| code(&e))?;
    Ok(future)
}

/// Waits for the response's head.
fn wait(future: FutureIncomingResponse) -> Result<IncomingResponse, String> {
    future.subscribe().block();
    future.get().expect("ready").expect("first get").map_err(|e| code(&e))
}

/// Reads `response`'s body to the end.
fn read(response: IncomingResponse) -> Result<Vec<u8>, String> {
    let body = response.consume().map_err(|()| "body taken")?;
    let stream = body.stream().map_err(|()| "stream taken")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 << 10) {
            Ok(chunk) => bytes.extend(chunk),
            Err(StreamError::Closed) => return Ok(bytes),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(wasip2::http::types::http_error_code(&e).map_or_else(|| e.to_debug_string(), |c| code(&c)));
            }
        }
    }
}

/// The error code's name as the guest sees it (`HttpRequestDenied`, `HttpResponseBodySize`...).
fn code(error: &ErrorCode) -> String {
    let text = format!("{error:?}");
    text.strip_prefix("ErrorCode::").unwrap_or(&text).split('(').next().unwrap_or_default().to_string()
}

impl Guest for Outbound {
    fn fetch(method: String, url: String, body: Option<String>) -> Result<Response, String> {
        let response = wait(start(&method, &url, body.as_deref())?)?;
        let status = response.status();
        let body = read(response)?;
        Ok(Response { status, body: String::from_utf8_lossy(&body).into_owned() })
    }

    fn fetch_many(url: String, count: u32) -> Vec<String> {
        let started: Vec<_> = (0..count).map(|_| start("GET", &url, None)).collect();
        let answers: Vec<_> = started.into_iter().map(|f| f.and_then(wait)).collect();
        answers.iter().map(|a| a.as_ref().map_or_else(String::clone, |r| r.status().to_string())).collect()
    }
}

export!(Outbound);

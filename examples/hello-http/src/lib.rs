//! A plain `wasi:http/incoming-handler`: no host-specific imports, so the same component runs under
//! `host serve` (as an `[[trigger.http]]` route) and under `wasmtime serve`.
//!
//! - `GET /hello` (or any path): `Hello, world!`
//! - `GET /hello?name=Ada`: `Hello, Ada!`
//! - `POST` with a body: echoes the body back, upper-cased.

use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct HelloHttp;

wasip2::http::proxy::export!(HelloHttp);

impl wasip2::exports::http::incoming_handler::Guest for HelloHttp {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let body = match request.method() {
            Method::Post | Method::Put => match read_body(&request) {
                Ok(bytes) => bytes.to_ascii_uppercase(),
                Err(message) => return respond(response_out, 400, message.as_bytes()),
            },
            _ => format!("Hello, {}!\n", name(&request)).into_bytes(),
        };
        respond(response_out, 200, &body);
    }
}

/// The `name` query parameter, or `world`.
fn name(request: &IncomingRequest) -> String {
    let path = request.path_with_query().unwrap_or_default();
    let query = path.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("name="))
        .filter(|n| !n.is_empty())
        .map_or_else(|| "world".to_string(), |n| n.replace('+', " "))
}

fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, String> {
    let body = request.consume().map_err(|()| "request body already consumed".to_string())?;
    let stream = body.stream().map_err(|()| "request body has no stream".to_string())?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 << 10) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(wasip2::io::streams::StreamError::Closed) => break,
            Err(e) => return Err(format!("reading request body: {e:?}")),
        }
    }
    drop(stream);
    IncomingBody::finish(body);
    Ok(bytes)
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain; charset=utf-8".to_vec())])
        .expect("valid header");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("stream is taken once");
    for chunk in body.chunks(4096) {
        stream.blocking_write_and_flush(chunk).expect("write response body");
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("finish response body");
}

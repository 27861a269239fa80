//! The handler `{{name}}`: a plain `wasi:http/incoming-handler` (the world `wasi:http/proxy`, from
//! the `wasip2` crate), so the same component also runs under `wasmtime serve`.
//!
//! - `GET /{{name}}`: `Hello, world!`
//! - `GET /{{name}}?name=Ada`: `Hello, Ada!`

use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

/// The component's export.
struct Handler;

wasip2::http::proxy::export!(Handler);

impl wasip2::exports::http::incoming_handler::Guest for Handler {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let body = format!("Hello, {}!\n", name(&request));
        let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain; charset=utf-8".to_vec())])
            .expect("a valid header");
        let response = OutgoingResponse::new(headers);
        let outgoing = response.body().expect("the body of a new response");
        ResponseOutparam::set(response_out, Ok(response));
        let stream = outgoing.write().expect("the stream of a new body");
        stream.blocking_write_and_flush(body.as_bytes()).expect("writing the body");
        drop(stream);
        OutgoingBody::finish(outgoing, None).expect("finishing the body");
    }
}

/// The `name` query parameter, or `world`.
fn name(request: &IncomingRequest) -> String {
    let path = request.path_with_query().unwrap_or_default();
    let query = path.split_once('?').map_or("", |(_, query)| query);
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("name="))
        .filter(|name| !name.is_empty())
        .map_or_else(|| "world".to_string(), |name| name.replace('+', " "))
}

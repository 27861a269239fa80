//! A `wasi:http` handler that misbehaves on request, by the last segment of the path:
//! - `.../trap`: panics before answering;
//! - `.../slow?ms=N`: sleeps N ms (in a host-side wait), then answers `slept N`;
//! - `.../spin`: loops forever;
//! - `.../fetch`: tries an outgoing request and answers with what happened;
//! - anything else: `ok`, the method and the path.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam, Scheme,
};

struct HttpHostile;

wasip2::http::proxy::export!(HttpHostile);

impl wasip2::exports::http::incoming_handler::Guest for HttpHostile {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let (route, query) = path.split_once('?').unwrap_or((&path, ""));
        // The last path segment picks the behaviour, whatever prefix the route is mounted on.
        let body = match route.rsplit('/').next().unwrap_or_default() {
            "trap" => panic!("asked to trap"),
            "spin" => loop {
                std::hint::black_box(());
            },
            "slow" => {
                let ms: u64 = query.strip_prefix("ms=").and_then(|n| n.parse().ok()).unwrap_or(100);
                wasip2::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
                format!("slept {ms}")
            }
            "fetch" => {
                let outgoing = OutgoingRequest::new(Fields::new());
                outgoing.set_scheme(Some(&Scheme::Http)).unwrap();
                outgoing.set_authority(Some("example.com")).unwrap();
                outgoing.set_path_with_query(Some("/")).unwrap();
                let answer = outgoing_handler::handle(outgoing, None).and_then(|future| {
                    future.subscribe().block();
                    future.get().expect("ready").expect("first get")
                });
                match answer {
                    Ok(response) => format!("fetch answered {}", response.status()),
                    Err(e) => format!("fetch refused: {e:?}"),
                }
            }
            _ => format!("ok {:?} {route}", request.method()),
        };
        let response = OutgoingResponse::new(Fields::new());
        let outgoing = response.body().unwrap();
        ResponseOutparam::set(out, Ok(response));
        let stream = outgoing.write().unwrap();
        stream.blocking_write_and_flush(body.as_bytes()).unwrap();
        drop(stream);
        OutgoingBody::finish(outgoing, None).unwrap();
    }
}

//! Cost of an outbound HTTP request from a guest, printed as ratios against baselines measured in
//! the same run, all against one HTTP/1.1 server on loopback (hyper, answering `ok`):
//!
//! * native: a new TCP connection, one GET, the response read (what a guest request does);
//! * a fresh instance whose request is refused by its grant (the call without the network);
//! * a fresh instance sending one granted GET through the host (`tests/guests/outbound`).
//!
//! The difference of the last two, against the native request, is what the host adds to a request
//! (grant and address checks, the wasi:http resources, copying the body into the guest).
//! Run with `cargo bench -p host --bench outbound`. Timings on a shared machine are noisy: compare
//! the ratios, and the medians across runs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Instant;

use host::Host;
use host::manifest::Manifest;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;

/// Median and 99th percentile of `samples` timings, in microseconds.
fn measure(samples: usize, mut run: impl FnMut()) -> (f64, f64) {
    let mut times: Vec<f64> = (0..samples)
        .map(|_| {
            let started = Instant::now();
            run();
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

fn row(name: &str, (median, p99): (f64, f64), baseline: Option<(&str, f64)>) {
    let ratio = baseline.map_or(String::new(), |(b, base)| format!("  = {:.1}x {b}", median / base));
    println!("  {name:<52} median {median:>9.1} µs   p99 {p99:>9.1} µs{ratio}");
}

/// An HTTP/1.1 server on a free loopback port answering every request with `ok`.
async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let answer = service_fn(|_| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(&b"ok"[..])))
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), answer).await;
            });
        }
    });
    addr
}

/// One GET on a new connection, read to the end (the server closes after `connection: close`).
fn native_get(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(b"GET /ok HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    assert!(answer.ends_with(b"ok"));
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let guest = root.join("tests/guests/outbound/host.toml");
    host::build::build(&Manifest::load(&guest).unwrap()).unwrap();
    let threads = std::env::var("BENCH_THREADS").ok().and_then(|n| n.parse().ok()).unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().unwrap();
    let addr = rt.block_on(serve());

    let dir = tempfile::tempdir().unwrap();
    let wasm = root.join("target/wasm32-wasip2/release/outbound.wasm");
    let manifest = format!(
        "[app]\nname = \"bench\"\n[function.granted]\nsource = {wasm:?}\ngrants = {{ http = [\"http://127.0.0.1:*\"] }}\n\
         [function.refused]\nsource = {wasm:?}\n"
    );
    std::fs::write(dir.path().join("host.toml"), manifest).unwrap();
    let host = Host::builder().data_dir(dir.path().join("data")).build().unwrap();
    let app = host.load(dir.path().join("host.toml")).unwrap();
    let url = format!("http://{addr}/ok");
    let (rt, app, url) = (&rt, &app, &url);
    let call = |function: &'static str| {
        let f = app.function(&format!("{function}.fetch")).unwrap();
        let args = json!(["GET", url, null]);
        move || {
            let answer = rt.block_on(f.call(args.clone()));
            assert!(answer.is_ok() == (function == "granted"), "{function}: {answer:?}");
        }
    };
    let samples = std::env::var("BENCH_SAMPLES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000);
    // Warm up every path (compiled component, TLS config, connection setup).
    for _ in 0..50 {
        native_get(addr);
        call("granted")();
        call("refused")();
    }
    println!("outbound HTTP, {samples} samples each");
    let native = measure(samples, || native_get(addr));
    let refused = measure(samples, call("refused"));
    let granted = measure(samples, call("granted"));
    row("native GET, new connection", native, None);
    row("fresh instance, request refused by its grant", refused, None);
    row("fresh instance + granted GET through the host", granted, Some(("native GET", native.0)));
    let added = (granted.0 - refused.0, granted.1 - refused.1);
    row("what the host adds to a request (difference)", added, Some(("native GET", native.0)));
}

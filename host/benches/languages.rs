//! The greeter in Rust, Python (componentize-py), JavaScript (componentize-qjs) and C (wit-bindgen +
//! zig cc): component size, first load (compile) and second load (from the compiled cache) time,
//! per-call latency with a fresh instance per call, each against the Rust greeter measured in the
//! same run, and the minor page faults per `noop` call.
//!
//! Run with `cargo bench -p host --bench languages [LANGUAGE...]` (no language: all; Rust, the
//! baseline, always runs; the first run installs the toolchains into `.cache/toolchains`).
//! Timings on a shared machine are noisy: compare the ratios.

use std::path::Path;
use std::time::{Duration, Instant};

use host::Host;
use host::manifest::Manifest;
use serde_json::json;

/// The greeters, Rust first (the baseline).
const GREETERS: [(&str, &str); 4] = [
    ("Rust", "examples/hello/host.toml"),
    ("Python", "examples/python-hello/host.toml"),
    ("JavaScript", "examples/js-hello/host.toml"),
    ("C", "examples/c-hello/host.toml"),
];

/// Median and 99th percentile of per-call times, in microseconds.
struct Stats {
    median: f64,
    p99: f64,
}

/// Times calls for about `budget` (at least 50), one call per sample.
fn measure(budget: Duration, mut run: impl FnMut()) -> Stats {
    let started = Instant::now();
    let mut times = Vec::new();
    while times.len() < 50 || started.elapsed() < budget {
        let call = Instant::now();
        run();
        times.push(call.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    Stats { median: times[times.len() / 2], p99: times[times.len() * 99 / 100] }
}

/// Minor page faults of this process so far (Linux; 0 elsewhere).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (in parentheses, which may hold spaces): minflt is the
    // 10th field of the whole line, the 8th after the name.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after_name.split_whitespace().nth(7).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Loads `manifest` in a new host on a fresh data dir using the compiled-component cache `cache`;
/// the time it took and whether it compiled.
fn load(manifest: &Path, cache: &Path) -> (Duration, u64) {
    let data = tempfile::tempdir().unwrap();
    let host = Host::builder().data_dir(data.path()).cache_dir(cache).build().unwrap();
    let started = Instant::now();
    host.load(manifest).unwrap();
    (started.elapsed(), host.compilations())
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let who = json!({ "who": { "name": "Ada", "age": 36 } });
    let budget = Duration::from_secs(3);
    println!(
        "{:<11} {:>12} {:>12} {:>12} {:>22} {:>22} {:>10} {:>12}",
        "greeter",
        "component",
        "first load",
        "second load",
        "greet median / p99",
        "noop median / p99",
        "vs Rust",
        "faults/noop"
    );
    let chosen: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let mut rust_greet = None;
    for (language, manifest) in GREETERS {
        if rust_greet.is_some() && !chosen.is_empty() && !chosen.iter().any(|c| c.eq_ignore_ascii_case(language)) {
            continue;
        }
        let manifest = root.join(manifest);
        let parsed = Manifest::load(&manifest).unwrap();
        host::build::build(&parsed).unwrap();
        let size = std::fs::metadata(&parsed.functions["hello"].source).unwrap().len();
        let cache = tempfile::tempdir().unwrap();
        let (first, compiled) = load(&manifest, cache.path());
        let (second, recompiled) = load(&manifest, cache.path());
        assert_eq!((compiled, recompiled), (1, 0), "{language}: the second load must come from the cache");

        let data = tempfile::tempdir().unwrap();
        let host = Host::builder().data_dir(data.path()).cache_dir(cache.path()).build().unwrap();
        let app = host.load(&manifest).unwrap();
        let call = |name: &str, args: &serde_json::Value| {
            let report = rt.block_on(app.function(name).unwrap().invoke(args)).unwrap();
            assert!(report.result.is_ok(), "{language} {name}: {:?}", report.result);
        };
        for _ in 0..20 {
            call("hello.greet", &who);
        }
        let greet = measure(budget, || call("hello.greet", &who));
        let (faults, mut calls) = (minor_faults(), 0u64);
        let noop = measure(budget, || {
            calls += 1;
            call("hello.noop", &json!({}));
        });
        let faults_per_call = minor_faults().saturating_sub(faults) as f64 / calls as f64;
        let baseline = *rust_greet.get_or_insert(greet.median);
        println!(
            "{language:<11} {:>9.1} KB {:>9.0} ms {:>9.1} ms {:>10.0} / {:>6.0} µs {:>10.0} / {:>6.0} µs {:>9.1}x {:>12.1}",
            size as f64 / 1e3,
            first.as_secs_f64() * 1e3,
            second.as_secs_f64() * 1e3,
            greet.median,
            greet.p99,
            noop.median,
            noop.p99,
            greet.median / baseline,
            faults_per_call,
        );
    }
}

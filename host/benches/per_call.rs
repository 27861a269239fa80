//! Per-call cost of the host, printed as ratios against baselines measured in the same run:
//!
//! * a native Rust function call and a call on a reused instance, against a fresh, isolated
//!   instance per call through the public API (`Function::invoke`);
//! * fresh calls from one caller per core, with execution records on, against records off;
//! * a key-value `get` from inside a guest, against a raw sled `get`;
//! * durable KV writes one at a time, against the same writes from concurrent calls (group commit).
//!
//! Run with `cargo bench -p host --bench per_call [calls|kv|commit|fresh]` (no section: all but
//! `fresh`, which repeats the fresh calls of `calls` five times as often, for `perf`). Timings on a shared machine are noisy: compare
//! the ratios, and the medians across runs, not single numbers.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use host::manifest::Manifest;
use host::{Function, Host};
use serde_json::json;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Median and 99th percentile of per-call times, in microseconds.
struct Stats {
    median: f64,
    p99: f64,
}

/// `samples` timings of `batch` calls each, reported per call.
fn measure(samples: usize, batch: usize, mut run: impl FnMut()) -> Stats {
    let mut times: Vec<f64> = (0..samples)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..batch {
                run();
            }
            started.elapsed().as_secs_f64() * 1e6 / batch as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    Stats { median: times[times.len() / 2], p99: times[times.len() * 99 / 100] }
}

fn row(name: &str, s: &Stats, baseline: Option<(&str, &Stats)>) {
    let ratio = baseline.map_or(String::new(), |(b, base)| format!("  = {:.1}x {b}", s.median / base.median));
    println!("  {name:<44} median {:>9.3} µs   p99 {:>9.3} µs{ratio}", s.median, s.p99);
}

#[inline(never)]
fn native_noop(x: u64) -> u64 {
    black_box(x)
}

struct Plain {
    wasi: WasiCtx,
    table: wasmtime::component::ResourceTable,
}

impl WasiView for Plain {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// A call on one long-lived instance: no isolation between calls, the floor for a Wasm call.
fn reused_instance(rt: &tokio::runtime::Runtime, wasm: &Path, samples: usize) -> Stats {
    let engine = Engine::new(&Config::new()).unwrap();
    let component = Component::from_file(&engine, wasm).unwrap();
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    let mut store = Store::new(&engine, Plain { wasi: WasiCtxBuilder::new().build(), table: Default::default() });
    let instance = rt.block_on(linker.instantiate_async(&mut store, &component)).unwrap();
    let noop = instance.get_func(&mut store, "noop").unwrap();
    measure(samples, 100, || rt.block_on(noop.call_async(&mut store, &[], &mut [])).unwrap())
}

fn invoke(rt: &tokio::runtime::Runtime, f: &Function, args: &serde_json::Value) {
    let report = rt.block_on(f.invoke(args)).unwrap();
    assert!(report.result.is_ok(), "{:?}", report.result);
}

/// Calls per second of `f` from `callers` concurrent tasks, every core busy, over two seconds.
fn throughput(rt: &tokio::runtime::Runtime, f: &Function, callers: usize) -> f64 {
    let window = Duration::from_secs(2);
    let calls: u64 = rt.block_on(async {
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let f = f.clone();
                tokio::spawn(async move {
                    let (started, mut calls) = (Instant::now(), 0u64);
                    while started.elapsed() < window {
                        f.invoke(&json!({})).await.unwrap().result.unwrap();
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap();
        }
        total
    });
    calls as f64 / window.as_secs_f64()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for m in ["examples/hello/host.toml", "examples/counter/host.toml"] {
        host::build::build(&Manifest::load(root.join(m)).unwrap()).unwrap();
    }
    let data = tempfile::tempdir().unwrap();
    let host = Host::builder().data_dir(data.path()).build().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let hello = host.load(root.join("examples/hello/host.toml")).unwrap();
    let counter = host.load(root.join("examples/counter/host.toml")).unwrap();
    let samples = 20_000;
    println!("pooling allocator: {}", if host.pooling() { "on" } else { "off (on-demand fallback)" });

    let sections: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let run = |section: &str| (sections.is_empty() && section != "fresh") || sections.iter().any(|s| s == section);

    // The same component with `record = "none"`: its calls keep no execution record.
    let quiet = data.path().join("quiet");
    std::fs::create_dir_all(&quiet).unwrap();
    let wasm = root.join("target/wasm32-wasip2/release/hello.wasm");
    let toml = format!("[app]\nname = \"quiet\"\n\n[function.hello]\nsource = {:?}\nrecord = \"none\"\n", wasm);
    std::fs::write(quiet.join("host.toml"), toml).unwrap();
    let unrecorded = host.load(quiet.join("host.toml")).unwrap().function("hello.noop").unwrap();

    if run("fresh") {
        // Only fresh calls, five times as many: the section to run under `perf`.
        println!("\nfresh calls of `hello.noop`");
        let args = json!({});
        let noop = hello.function("hello.noop").unwrap();
        for (name, f) in [("records on", &noop), ("records off", &unrecorded)] {
            for _ in 0..1000 {
                invoke(&rt, f, &args);
            }
            row(
                &format!("fresh instance + call + teardown, {name}"),
                &measure(samples * 5, 1, || invoke(&rt, f, &args)),
                None,
            );
        }
    }

    if run("calls") {
        println!("\nper call, `hello.noop` (no arguments, no result)");
        let native = measure(samples, 1000, || {
            black_box(native_noop(black_box(1)));
        });
        row("native Rust function call", &native, None);
        let reused = reused_instance(&rt, &root.join("target/wasm32-wasip2/release/hello.wasm"), samples / 10);
        row("reused instance (no isolation)", &reused, Some(("native", &native)));
        let noop = hello.function("hello.noop").unwrap();
        let args = json!({});
        for _ in 0..1000 {
            invoke(&rt, &noop, &args);
        }
        let fresh = measure(samples, 1, || invoke(&rt, &noop, &args));
        row("fresh instance + call + teardown (host)", &fresh, Some(("reused", &reused)));
        println!("  {:<44} {:.0}x native", "", fresh.median / native.median);
        for _ in 0..1000 {
            invoke(&rt, &unrecorded, &args);
        }
        let bare = measure(samples, 1, || invoke(&rt, &unrecorded, &args));
        row("same, records off (`record = \"none\"`)", &bare, Some(("records on", &fresh)));
        let greet = hello.function("hello.greet").unwrap();
        let who = json!({ "who": { "name": "Ada", "age": 36 } });
        let typed = measure(samples, 1, || invoke(&rt, &greet, &who));
        row("same, `hello.greet` with a record argument", &typed, Some(("noop", &fresh)));

        // Latency above has instantiation and teardown off the call path when a core is free;
        // throughput with every core busy shows the whole cost of a call, its execution record
        // included (the same component with `record = "none"` is the baseline).
        let callers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let off = throughput(&rt, &unrecorded, callers);
        let on = throughput(&rt, &noop, callers);
        for (name, per_second, base) in [("records off", off, None), ("records on", on, Some(off))] {
            let ratio = base.map_or(String::new(), |b| format!("  = {:.2}x records off", per_second / b));
            println!(
                "  {:<44} {:>9.0} calls/s = {:.1} µs of CPU per call{ratio}",
                format!("throughput, {callers} callers, {name}"),
                per_second,
                callers as f64 * 1e6 / per_second,
            );
        }
    }

    if run("kv") {
        println!("\nkey-value get");
        let tree = sled::Config::new().temporary(true).open().unwrap().open_tree("t").unwrap();
        tree.insert("visits", &7i64.to_le_bytes()).unwrap();
        let raw = measure(samples / 10, 1000, || {
            black_box(tree.get(black_box("visits")).unwrap());
        });
        row("raw sled get", &raw, None);
        let gets = counter.function("counter.kv-gets").unwrap();
        rt.block_on(counter.function("counter.increment").unwrap().call(json!(["visits", 7]))).unwrap();
        let n = 1000;
        let (none, many) = (json!(["visits", 0]), json!(["visits", n]));
        let base = measure(2000, 1, || invoke(&rt, &gets, &none));
        let with = measure(2000, 1, || invoke(&rt, &gets, &many));
        let per_get = (with.median - base.median) / n as f64;
        println!(
            "  {:<44} median {per_get:>9.3} µs (difference of medians)  = {:.1}x raw sled",
            "guest get through wasi:keyvalue (per get)",
            per_get / raw.median
        );
    }

    if run("commit") {
        println!("\ndurable increments (each acknowledged only once on disk)");
        let increment = counter.function("counter.increment").unwrap();
        let one = json!(["hits", 1]);
        let before = host.commit_stats();
        let sequential = measure(200, 1, || invoke(&rt, &increment, &one));
        let after = host.commit_stats();
        row("one at a time (per call)", &sequential, None);
        println!(
            "  {:<44} {} flushes for {} writes",
            "",
            after.flushes - before.flushes,
            after.tickets - before.tickets
        );
        let concurrent = 64;
        let rounds = 20;
        let started = Instant::now();
        rt.block_on(async {
            for _ in 0..rounds {
                let calls: Vec<_> = (0..concurrent)
                    .map(|_| {
                        let f = increment.clone();
                        let args = one.clone();
                        tokio::spawn(async move { f.call(args).await.unwrap() })
                    })
                    .collect();
                for call in calls {
                    call.await.unwrap();
                }
            }
        });
        let elapsed: Duration = started.elapsed();
        let done = host.commit_stats();
        let per_call = elapsed.as_secs_f64() * 1e6 / f64::from(concurrent * rounds);
        println!(
            "  {:<44} {:>9.3} µs per call   {} flushes for {} writes = {:.1}x fewer flushes; {:.1}x the throughput of one at a time",
            format!("{concurrent} concurrent calls, {rounds} rounds"),
            per_call,
            done.flushes - after.flushes,
            done.tickets - after.tickets,
            (done.tickets - after.tickets) as f64 / (done.flushes - after.flushes).max(1) as f64,
            sequential.median / per_call,
        );
    }
}

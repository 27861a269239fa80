//! Items with a trigger attached: uploads per second, and how fast their events become finished
//! executions, against direct calls of the same function in the same run.
//!
//! The handler is `tests/guests/item-probe` (`probe`: a KV increment and an annotation per item),
//! on an `always` trigger with `concurrency = 2`. Run with `cargo bench -p host --bench items`
//! (`BENCH_ITEMS` items, default 500). The machine is shared and noisy: compare the ratios.

use std::path::Path;
use std::time::{Duration, Instant};

use host::Host;
use host::executions::{ExecutionFilter, Status};
use host::manifest::Manifest;
use host::triggers::Triggers;
use serde_json::json;

fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn main() {
    let n: usize = std::env::var("BENCH_ITEMS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/guests/item-probe/host.toml");
    host::build::build(&Manifest::load(&manifest).unwrap()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let host = Host::builder().data_dir(data.path()).build().unwrap();
    let app = host.load(&manifest).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dataset = runtime.block_on(host.dataset("probe", "inbox")).unwrap();

    // Baseline: the same function called directly, n times, two at a time (its concurrency).
    let probe = app.function("probe.probe").unwrap();
    let item = runtime.block_on(dataset.upload("/direct", "x.txt", None, b"x", None, None)).unwrap();
    let args = json!([item.to_wit_json()]);
    let started = Instant::now();
    runtime.block_on(async {
        let calls: Vec<_> = (0..n)
            .map(|_| {
                let (probe, args) = (probe.clone(), args.clone());
                tokio::spawn(async move { probe.call(args).await.unwrap() })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
    });
    let direct = n as f64 / started.elapsed().as_secs_f64();

    // Uploads with the trigger running: each upload is durable (its event too) when it returns.
    let triggers = {
        let _entered = runtime.enter();
        Triggers::start(&host, &[&app]).unwrap()
    };
    let started = Instant::now();
    for i in 0..n {
        runtime.block_on(dataset.upload("/always", &format!("{i}.txt"), None, b"hello", None, None)).unwrap();
    }
    let upload_time = started.elapsed();
    let filter = ExecutionFilter { trigger: Some("always".into()), ..ExecutionFilter::default() };
    let records = loop {
        let records = runtime.block_on(host.executions().list(&filter, None, n + 10));
        if records.len() >= n && records.iter().all(|r| r.status.is_final()) {
            break records;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let all_done = started.elapsed();
    runtime.block_on(triggers.stop());
    assert!(records.iter().all(|r| r.status == Status::Succeeded), "some executions failed");
    let mut latency: Vec<f64> = records.iter().map(|r| (r.finished_ms.unwrap() - r.queued_ms) as f64).collect();
    latency.sort_by(f64::total_cmp);

    let uploads = n as f64 / upload_time.as_secs_f64();
    let triggered = n as f64 / all_done.as_secs_f64();
    println!("{n} items, handler `probe.probe` (KV increment + annotation), concurrency 2");
    println!("  direct calls of the handler       {direct:>9.0} calls/s   1.00×");
    println!("  uploads (durable, event included) {uploads:>9.0} items/s   {:.2}× direct", uploads / direct);
    println!("  upload -> finished execution      {triggered:>9.0} items/s   {:.2}× direct", triggered / direct);
    println!(
        "  event accepted -> execution finished: median {:.0} ms, p99 {:.0} ms (while uploads kept arriving)",
        percentile(&latency, 50),
        percentile(&latency, 99)
    );
}

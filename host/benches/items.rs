//! Items with a trigger attached: uploads per second, and how fast their events become finished
//! executions, against direct calls of the same function in the same run.
//!
//! The handler is `tests/guests/item-probe` (`probe`: a durable KV increment and an annotation per item), on an
//! `always` trigger with `concurrency = BENCH_CONCURRENCY` (default 64: an execution waits for
//! group commits on its way, so few at a time leave the cores idle); items are uploaded by 64
//! uploaders at once. Run with `cargo bench -p host --bench items` (`BENCH_ITEMS` items, default
//! 5000). The machine is shared and noisy: compare the ratios.

use std::time::{Duration, Instant};

use host::executions::{ExecutionFilter, Status};
use host::triggers::Triggers;
use serde_json::json;

mod support;

use support::{Loaded, env_number, load_guest, percentile};

fn main() {
    let (n, concurrency) = (env_number("BENCH_ITEMS", 5000), env_number("BENCH_CONCURRENCY", 64));
    let Loaded { host, app, dirs: _dirs } = load_guest("item-probe", "item_probe", |wasm| {
        format!(
            "[app]\nname = \"probe\"\n[function.probe]\nsource = {wasm:?}\nlimits = {{ concurrency = {concurrency} }}\ngrants = {{ kv = [\"runs\"], datasets = [\"inbox\"] }}\n[[trigger.item]]\nname = \"always\"\ndataset = \"inbox\"\non = [\"created\"]\nfilter = {{ dir = \"/always\" }}\nfunction = \"probe.probe\"\n"
        )
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dataset = runtime.block_on(host.dataset("probe", "inbox")).unwrap();

    // Baseline: the same function called directly, n times, `concurrency` at a time.
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
    let commits = host.commit_stats();
    let started = Instant::now();
    let items: Vec<String> = runtime.block_on(async {
        let uploaders: Vec<_> = (0..64)
            .map(|u| {
                let dataset = dataset.clone();
                tokio::spawn(async move {
                    let mut ids = Vec::new();
                    for i in (u..n).step_by(64) {
                        let name = format!("{i}.txt");
                        let item = dataset.upload("/always", &name, None, b"hello", None, None).await.unwrap();
                        ids.push(item.id);
                    }
                    ids
                })
            })
            .collect();
        let mut ids = Vec::new();
        for uploader in uploaders {
            ids.extend(uploader.await.unwrap());
        }
        ids
    });
    let upload_time = started.elapsed();
    // Every handler ran (its count in KV; reading a key costs the host little, unlike listing
    // thousands of records), then every record is final.
    let runs = runtime.block_on(host.kv().open("probe", "runs")).unwrap();
    for item in &items {
        while runtime.block_on(runs.get(&format!("runs/{item}"))).unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let filter = ExecutionFilter { trigger: Some("always".into()), ..ExecutionFilter::default() };
    let records = loop {
        let records = runtime.block_on(host.executions().list(&filter, None, n + 10));
        if records.len() >= n && records.iter().all(|r| r.status.is_final()) {
            break records;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let all_done = started.elapsed();
    let stats = host.commit_stats();
    runtime.block_on(triggers.stop());
    assert!(records.iter().all(|r| r.status == Status::Succeeded), "some executions failed");
    let mut latency: Vec<f64> = records.iter().map(|r| (r.finished_ms.unwrap() - r.queued_ms) as f64).collect();
    latency.sort_by(f64::total_cmp);

    let uploads = n as f64 / upload_time.as_secs_f64();
    let triggered = n as f64 / all_done.as_secs_f64();
    println!(
        "{n} items from 64 uploaders, handler `probe.probe` (KV increment + annotation), concurrency {concurrency}"
    );
    println!("  direct calls of the handler       {direct:>9.0} calls/s   1.00×");
    println!("  uploads (durable, event included) {uploads:>9.0} items/s   {:.2}× direct", uploads / direct);
    println!("  upload -> finished execution      {triggered:>9.0} items/s   {:.2}× direct", triggered / direct);
    println!(
        "  event accepted -> execution finished: median {:.0} ms, p99 {:.0} ms (while uploads kept arriving)",
        percentile(&latency, 50),
        percentile(&latency, 99)
    );
    println!(
        "  group commits: {} flushes for {} durable writes",
        stats.flushes - commits.flushes,
        stats.tickets - commits.tickets
    );
}

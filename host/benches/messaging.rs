//! Queues and topics, durability on: messages per second from `send` to handled and completed by
//! a `[[trigger.queue]]`, against direct calls of the same handler in the same run; and the
//! latency of a topic event's fan-out to four subscriptions.
//!
//! The handler is `tests/guests/messaging` (`handle`: one durable KV increment per message;
//! `on-event-a`: the same per event), with `concurrency = BENCH_CONCURRENCY` (default 64: each
//! call waits for its increment's group commit, so fewer calls at a time leave the cores idle).
//! Run with `cargo bench -p host --bench messaging` (`BENCH_MESSAGES`, default 20000;
//! `BENCH_EVENTS`, default 100). The machine is shared and noisy: compare the ratios.

use std::time::{Duration, Instant};

use host::executions::{ExecutionFilter, Status};
use host::manifest::QueueSpec;
use host::triggers::Triggers;
use serde_json::json;

mod support;

use support::{Loaded, env_number, load_guest, percentile};

fn main() {
    let (n, events) = (env_number("BENCH_MESSAGES", 20_000), env_number("BENCH_EVENTS", 100));
    let concurrency = env_number("BENCH_CONCURRENCY", 64);
    let subscriptions: String = (0..4)
        .map(|i| format!("[[trigger.topic]]\nname = \"sub-{i}\"\ntopic = \"news\"\nfunction = \"m.on-event-a\"\n"))
        .collect();
    let Loaded { host, app, dirs: _dirs } = load_guest("messaging", "messaging", |wasm| {
        format!(
            "[app]\nname = \"messaging\"\n[function.m]\nsource = {wasm:?}\nlimits = {{ concurrency = {concurrency} }}\ngrants = {{ kv = [\"seen\"], queues = [\"bench\"], topics = [\"news\"] }}\n[[trigger.queue]]\nname = \"consumer\"\nqueue = \"bench\"\nfunction = \"m.handle\"\n{subscriptions}"
        )
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let triggers = {
        let _entered = runtime.enter();
        Triggers::start(&host, &[&app]).unwrap()
    };
    // Topic first, on a host with few records (lists, which the wait below polls, walk them):
    // one event at a time; latency from publish to all four subscriptions finished.
    let mut latencies = Vec::new();
    for i in 0..events {
        let started = Instant::now();
        let id =
            runtime.block_on(host.topics().publish("messaging", "news", format!("e{i}").into_bytes(), vec![])).unwrap();
        loop {
            let done = (0..4)
                .filter(|s| {
                    let filter = ExecutionFilter {
                        trigger: Some(format!("sub-{s}")),
                        status: Some(Status::Succeeded),
                        ..Default::default()
                    };
                    let newest = runtime.block_on(host.executions().list(&filter, None, 1));
                    newest.first().is_some_and(|r| r.input[0]["id"] == id.as_str())
                })
                .count();
            if done == 4 {
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);

    // Baseline: the handler called directly n times, `concurrency` at a time.
    let handle = app.function("m.handle").unwrap();
    let message = json!([{ "id": "0", "body": "eA==", "attempt": 1, "lease": "bench/0/1" }]);
    let started = Instant::now();
    runtime.block_on(async {
        let calls: Vec<_> = (0..n)
            .map(|_| {
                let (handle, message) = (handle.clone(), message.clone());
                tokio::spawn(async move { handle.call(message).await.unwrap() })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
    });
    let direct = n as f64 / started.elapsed().as_secs_f64();

    // Queue: n durable sends from 64 senders, consumed by the trigger; done when every message
    // was handled and completed (the queue is empty; that n executions succeeded is checked
    // after the clock stops, as listing them costs the host CPU).
    let queue = host.queue("messaging", "bench", &QueueSpec::default()).unwrap();
    let commits = host.commit_stats();
    let started = Instant::now();
    runtime.block_on(async {
        let senders: Vec<_> = (0..64)
            .map(|s| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    for i in (s..n).step_by(64) {
                        queue.send(format!("m{i}").into_bytes(), Duration::ZERO).await.unwrap();
                    }
                })
            })
            .collect();
        for sender in senders {
            sender.await.unwrap();
        }
    });
    let sent = started.elapsed();
    while queue.next_visible_ms().is_some() {
        std::thread::sleep(Duration::from_millis(2));
    }
    let handled = started.elapsed();
    let stats = host.commit_stats();
    let filter =
        ExecutionFilter { trigger: Some("consumer".into()), status: Some(Status::Succeeded), ..Default::default() };
    assert_eq!(runtime.block_on(host.executions().list(&filter, None, n + 1)).len(), n, "every message handled once");

    drop(triggers);

    println!("messages: {n}, handler concurrency {concurrency}, every send durable before it returns");
    println!("direct calls of the handler:        {direct:>8.0} calls/s");
    println!("queue sends (64 senders):           {:>8.0} msgs/s", n as f64 / sent.as_secs_f64());
    println!(
        "send -> handled -> completed:       {:>8.0} msgs/s ({:.2}x direct calls)",
        n as f64 / handled.as_secs_f64(),
        n as f64 / handled.as_secs_f64() / direct
    );
    println!(
        "group commit (queue part): {} flushes for {} durable writes",
        stats.flushes - commits.flushes,
        stats.tickets - commits.tickets
    );
    println!(
        "topic fan-out to 4 subscriptions, publish -> all handled: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms ({events} events)",
        percentile(&latencies, 50),
        percentile(&latencies, 90),
        percentile(&latencies, 99)
    );
}

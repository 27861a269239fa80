//! Queues, topics and schedules over the library: real components, sled on disk, leases that
//! expire, dead letters, fan-out to subscriptions, schedule fires and restarts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use host::executions::{ExecutionFilter, Status};
use host::manifest::QueueSpec;
use host::storage::queues::{Queue, QueueStats};
use host::{App, Function, Host};
use serde_json::{Value, json};

use crate::common::{MESSAGING, Running, manifest, running};

fn call(runtime: &tokio::runtime::Runtime, app: &App, name: &str, args: Value) -> Result<Value, String> {
    let function: Function = app.function(name).unwrap();
    runtime.block_on(function.call(args)).map_err(|e| e.to_string())
}

/// The bodies (as text) and attempts of leased messages.
fn bodies(messages: &Value) -> Vec<(String, u64)> {
    use base64::Engine as _;
    let decode = |b: &Value| base64::engine::general_purpose::STANDARD.decode(b.as_str().unwrap()).unwrap();
    let list = messages.as_array().unwrap();
    list.iter().map(|m| (String::from_utf8(decode(&m["body"])).unwrap(), m["attempt"].as_u64().unwrap())).collect()
}

fn count(host: &Host, key: &str) -> u64 {
    let tree = host.store().unwrap().kv_tree("messaging", "seen").unwrap();
    // `increment` keeps counters as little-endian i64.
    tree.get(key).unwrap().map_or(0, |v| i64::from_le_bytes(v.as_ref().try_into().unwrap()) as u64)
}

/// The records matching `filter`, newest first, read from a test thread.
fn records(host: &Host, filter: &ExecutionFilter, limit: usize) -> Vec<host::executions::Execution> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(host.executions().list(filter, None, limit))
}

/// The queue's counts, read from a test thread.
fn stats(queue: &Queue) -> QueueStats {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(queue.stats()).unwrap()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn queue_leases_expire_complete_removes_and_dead_letters_after_max_attempts() {
    let data = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let host = Host::builder().data_dir(data.path()).build().unwrap();
    let app = host.load(manifest(MESSAGING)).unwrap();
    let send = |body: &str| call(&runtime, &app, "messaging.queue-send", json!(["direct", body, 0])).unwrap();
    let receive =
        |queue: &str, max: u32, ms: u64| call(&runtime, &app, "messaging.queue-receive", json!([queue, max, ms]));

    let ids: Vec<Value> = ["one", "two", "three"].iter().map(|b| send(b)).collect();
    assert!(ids.windows(2).all(|w| w[0].as_str() < w[1].as_str()), "ids sort in sending order: {ids:?}");
    let first = receive("direct", 2, 300).unwrap();
    assert_eq!(bodies(&first), [("one".into(), 1), ("two".into(), 1)], "oldest first, first delivery");
    assert_eq!(bodies(&receive("direct", 10, 300).unwrap()), [("three".into(), 1)], "leased messages are hidden");
    assert_eq!(receive("direct", 10, 300).unwrap(), json!([]));

    // Complete `one`; `two` and `three` come back once their leases end, as second deliveries.
    let lease_one = first[0]["lease"].as_str().unwrap();
    call(&runtime, &app, "messaging.queue-complete", json!([lease_one])).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let again = receive("direct", 10, 60_000).unwrap();
    assert_eq!(bodies(&again), [("two".into(), 2), ("three".into(), 2)]);
    // The first lease of `two` is over: completing with it changes nothing.
    let stale = call(&runtime, &app, "messaging.queue-complete", json!([first[1]["lease"]])).unwrap_err();
    assert!(stale.contains("LeaseExpired"), "{stale}");
    // Retry gives a message back after its delay; completing a completed lease fails.
    call(&runtime, &app, "messaging.queue-retry", json!([again[0]["lease"], 200])).unwrap();
    assert_eq!(receive("direct", 10, 60_000).unwrap(), json!([]), "not visible before its delay");
    std::thread::sleep(Duration::from_millis(300));
    let retried = receive("direct", 10, 60_000).unwrap();
    assert_eq!(bodies(&retried), [("two".into(), 3)]);
    let twice = call(&runtime, &app, "messaging.queue-complete", json!([lease_one])).unwrap_err();
    assert!(twice.contains("LeaseExpired"), "{twice}");

    // `short` allows two deliveries; a third time the message goes to `short.dead`.
    call(&runtime, &app, "messaging.queue-send", json!(["short", "doomed", 0])).unwrap();
    for attempt in 1..=2 {
        assert_eq!(bodies(&receive("short", 1, 50).unwrap()), [("doomed".into(), attempt)]);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(receive("short", 1, 50).unwrap(), json!([]), "past max-attempts it is not delivered");
    assert_eq!(bodies(&receive("short.dead", 10, 1000).unwrap()), [("doomed".into(), 1)]);

    // Bad input names what is wrong and changes nothing; ungranted queues are refused.
    let bad = receive("direct", 0, 100).unwrap_err();
    assert!(bad.contains("max: 0") && bad.contains("1 to 100"), "{bad}");
    let denied = receive("elsewhere", 1, 100).unwrap_err();
    assert!(denied.contains("AccessDenied"), "{denied}");
    let forged = call(&runtime, &app, "messaging.queue-complete", json!(["direct/zz/1"])).unwrap_err();
    assert!(forged.contains("QUEUE/ID/ATTEMPT"), "{forged}");

    // Durable: after a restart, `three` (leased by the stopped host) is visible at once, and
    // `two` (leased too) as well; nothing accepted is lost.
    drop((app, host, runtime));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let host = Host::builder().data_dir(data.path()).build().unwrap();
    let app = host.load(manifest(MESSAGING)).unwrap();
    let after = call(&runtime, &app, "messaging.queue-receive", json!(["direct", 10, 60_000])).unwrap();
    assert_eq!(bodies(&after), [("two".into(), 4), ("three".into(), 3)]);
    let stats = stats(&host.queue("messaging", "direct", &QueueSpec::default()).unwrap());
    assert_eq!((stats.ready, stats.waiting), (0, 2));
}

#[test]
fn queue_trigger_completes_successes_retries_failures_then_dead_letters() {
    let Running { host, apps, runtime, .. } = &running(&[MESSAGING]);
    let app = &apps[0];
    for body in ["ok-1", "ok-2", "fail-1", "ok-3"] {
        call(runtime, app, "messaging.queue-send", json!(["jobs", body, 0])).unwrap();
    }
    let jobs = host.queue("messaging", "jobs", &QueueSpec { max_attempts: 3 }).unwrap();
    let dead = host.queue("messaging", "jobs.dead", &QueueSpec::default()).unwrap();
    wait_until("the failing message is dead-lettered", Duration::from_secs(20), || stats(&dead).ready == 1);
    for ok in ["ok-1", "ok-2", "ok-3"] {
        assert_eq!(count(host, &format!("msg/{ok}")), 1, "{ok} is handled once and completed");
    }
    assert_eq!(count(host, "msg/fail-1"), 3, "three deliveries (max-attempts), then the dead-letter queue");
    let stats = stats(&jobs);
    assert_eq!((stats.ready, stats.waiting), (0, 0), "nothing left in the queue");
    let filter = ExecutionFilter { trigger: Some("jobs-consumer".into()), ..Default::default() };
    let records = records(host, &filter, 100);
    assert_eq!(records.len(), 6, "one execution per delivery: {records:#?}");
    let mut failed: Vec<u32> = records.iter().filter(|r| r.status == Status::Failed).map(|r| r.attempt).collect();
    failed.sort();
    assert_eq!(failed, [1, 2, 3], "the failing message's three attempts are recorded");
}

#[test]
fn leases_cannot_be_forged_from_the_message_id() {
    let Running { apps, runtime, .. } = &running(&[MESSAGING]);
    let app = &apps[0];
    call(runtime, app, "messaging.queue-send", json!(["direct", "secret", 0])).unwrap();
    let leased = call(runtime, app, "messaging.queue-receive", json!(["direct", 1, 60_000])).unwrap();
    let lease = leased[0]["lease"].as_str().unwrap();
    let (guessable, nonce) = lease.rsplit_once('/').unwrap();
    assert_eq!(guessable, format!("direct/{}/1", leased[0]["id"].as_str().unwrap()), "QUEUE/ID/ATTEMPT/NONCE");
    assert_eq!(nonce.len(), 32, "a 128-bit nonce: {lease}");
    // The right queue, id and attempt with another nonce, or none, complete nothing.
    let other = format!("{guessable}/{:032x}", u128::from_str_radix(nonce, 16).unwrap() ^ 1);
    let forged = call(runtime, app, "messaging.queue-complete", json!([other])).unwrap_err();
    assert!(forged.contains("LeaseExpired"), "{forged}");
    let forged = call(runtime, app, "messaging.queue-retry", json!([other, 0])).unwrap_err();
    assert!(forged.contains("LeaseExpired"), "{forged}");
    let old_style = call(runtime, app, "messaging.queue-complete", json!([guessable])).unwrap_err();
    assert!(old_style.contains("QUEUE/ID/ATTEMPT/NONCE"), "{old_style}");
    call(runtime, app, "messaging.queue-complete", json!([lease])).unwrap();
}

#[test]
fn receive_within_leases_no_more_than_a_byte_budget_but_at_least_one_message() {
    let Running { host, runtime, .. } = &running(&[MESSAGING]);
    let queue = host.queue("messaging", "direct", &QueueSpec::default()).unwrap();
    for body in ["a".repeat(60), "b".repeat(60), "c".repeat(60)] {
        runtime.block_on(queue.send(body.into_bytes(), Duration::ZERO)).unwrap();
    }
    let receive =
        |max_bytes| runtime.block_on(queue.receive_within(host.queues(), 10, Duration::from_secs(60), max_bytes));
    assert_eq!(receive(10).unwrap().len(), 1, "the first message whatever its size");
    assert_eq!(receive(150).unwrap().len(), 2, "two of 60 bytes fit in 150");
    assert_eq!(receive(150).unwrap().len(), 0, "all leased");
}

/// The `busy` function's queue `busy`, and `calls` direct calls of its handler that sleep `ms`
/// each (and count `msg/sleep:MS`), once both its `concurrency` slots are taken by them.
fn busy_queue(running: &Running, ms: u64, calls: usize) -> (Arc<Queue>, Vec<tokio::task::JoinHandle<()>>) {
    use base64::Engine as _;
    let Running { host, apps, runtime, .. } = running;
    let body = base64::engine::general_purpose::STANDARD.encode(format!("sleep:{ms}"));
    let message = json!([{ "id": "0", "body": body, "attempt": 1, "lease": "none" }]);
    let calls = (0..calls)
        .map(|_| {
            let (handle, message) = (apps[0].function("busy.handle").unwrap(), message.clone());
            runtime.spawn(async move { handle.call(message).await.map(drop).unwrap() })
        })
        .collect();
    wait_until("both slots are busy", Duration::from_secs(10), || count(host, &format!("msg/sleep:{ms}")) >= 2);
    // Let the other calls queue up for the slots.
    std::thread::sleep(Duration::from_millis(200));
    (host.queue("messaging", "busy", &QueueSpec::default()).unwrap(), calls)
}

/// Wait until the queue is empty and the consumer's one execution is recorded: succeeded, attempt 1.
fn delivered_once(host: &Host, queue: &Queue, body: &str) {
    wait_until("the message is handled and completed", Duration::from_secs(30), || {
        let stats = stats(queue);
        count(host, &format!("msg/{body}")) >= 1 && stats.ready + stats.waiting == 0
    });
    assert_eq!(count(host, &format!("msg/{body}")), 1, "delivered once");
    let filter = ExecutionFilter { trigger: Some("busy-consumer".into()), ..Default::default() };
    let records = records(host, &filter, 10);
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!((records[0].attempt, records[0].status), (1, Status::Succeeded));
}

#[test]
fn a_message_for_a_busy_function_is_leased_when_it_can_run_and_runs_once() {
    let running = running(&[MESSAGING]);
    // `busy` has two slots and leases of 4 s; eight direct calls of 1.5 s keep it busy for 6 s.
    // A message leased at once would wait for them: its lease would run out, the consumer would
    // receive it again, and it would run twice.
    let (queue, calls) = busy_queue(&running, 1500, 8);
    let (host, runtime) = (&running.host, &running.runtime);
    runtime.block_on(queue.send(b"once".to_vec(), Duration::ZERO)).unwrap();
    for call in calls {
        runtime.block_on(call).unwrap();
    }
    delivered_once(host, &queue, "once");
}

#[test]
fn a_paused_function_leases_no_queue_messages() {
    let running = running(&[MESSAGING]);
    let (host, apps, runtime) = (&running.host, &running.apps, &running.runtime);
    // The consumer waits for a slot of the busy function, which is paused meanwhile.
    let (queue, calls) = busy_queue(&running, 1000, 2);
    runtime.block_on(queue.send(b"paused".to_vec(), Duration::ZERO)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let guest = apps[0].function("busy.handle").unwrap().guest().clone();
    guest.set_paused(true);
    for call in calls {
        runtime.block_on(call).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(count(host, "msg/paused"), 0, "nothing runs while the function is paused");
    let stats = stats(&queue);
    assert_eq!((stats.ready, stats.waiting), (1, 0), "the message is not leased while paused");
    guest.set_paused(false);
    delivered_once(host, &queue, "paused");
}

#[test]
fn topics_fan_out_to_every_subscription_with_their_own_retries() {
    let Running { host, apps, runtime, .. } = &running(&[MESSAGING]);
    let app = &apps[0];
    let ids: Vec<String> = (0..3)
        .map(|i| call(runtime, app, "messaging.topic-publish", json!(["news", format!("story {i}")])).unwrap())
        .map(|id| id.as_str().unwrap().to_string())
        .collect();
    wait_until("both subscriptions handled every event", Duration::from_secs(20), || {
        let done = |trigger: &str| {
            let filter = ExecutionFilter {
                trigger: Some(trigger.into()),
                status: Some(Status::Succeeded),
                ..Default::default()
            };
            records(host, &filter, 100).len()
        };
        done("news-a") == 3 && done("news-b") == 3
    });
    for id in &ids {
        assert_eq!(count(host, &format!("a/{id}")), 1, "subscription a runs once per event");
        assert_eq!(count(host, &format!("b/{id}")), 2, "subscription b failed once and was retried");
    }
    let filter = ExecutionFilter { trigger: Some("news-b".into()), ..Default::default() };
    let record = &records(host, &filter, 1)[0];
    assert_eq!((record.attempt, record.max_attempts), (2, 3));
    let event = &record.input[0];
    assert_eq!(event["topic"], "news");
    assert_eq!(event["attributes"], json!([["from", "test"]]));
    let denied = call(runtime, app, "messaging.topic-publish", json!(["gossip", "x"])).unwrap_err();
    assert!(denied.contains("AccessDenied"), "{denied}");
}

#[test]
fn schedules_fire_on_time_and_report_missed_fires_instead_of_replaying_them() {
    // A schedule last fired 10 s ago: the host was "down" for ~9 fires of `every = "1s"`.
    let data = tempfile::tempdir().unwrap();
    // The first use builds every test guest (seconds): before the clock starts, not after.
    let manifest = manifest(MESSAGING);
    {
        let host = Host::builder().data_dir(data.path()).build().unwrap();
        let fires = host.store().unwrap().tree("schedule-fires").unwrap();
        let ten_seconds_ago = host::executions::now_ms() / 1000 * 1000 - 10_000;
        fires.insert("messaging/every-second", &ten_seconds_ago.to_be_bytes()).unwrap();
        host.flush().unwrap();
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let host = Host::builder().data_dir(data.path()).build().unwrap();
    let app = host.load(manifest).unwrap();
    let triggers = {
        let _entered = runtime.enter();
        host::triggers::Triggers::start(&host, &[&app]).unwrap()
    };
    wait_until("three ticks", Duration::from_secs(10), || count(&host, "ticks") >= 3);
    let filter = ExecutionFilter { trigger: Some("every-second".into()), ..Default::default() };
    let mut records = records(&host, &filter, 100);
    records.reverse();
    let missed: Vec<u64> = records.iter().map(|r| r.input["missed"].as_u64().unwrap()).collect();
    assert!((9..=11).contains(&missed[0]), "the first fire reports the missed ones: {missed:?}");
    assert!(missed[1..].iter().all(|&m| m == 0), "later fires missed nothing: {missed:?}");
    let times: Vec<u64> = records.iter().map(|r| r.input["scheduled-ms"].as_u64().unwrap()).collect();
    assert!(times.iter().all(|t| t % 1000 == 0), "fires are on the 1 s grid: {times:?}");
    assert!(times.windows(2).all(|w| w[1] - w[0] == 1000), "one fire per second: {times:?}");
    assert!(records.iter().all(|r| r.status == Status::Succeeded || !r.status.is_final()));
    drop(triggers);
}

#[test]
fn triggers_with_the_wrong_signature_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = manifest(MESSAGING).parent().unwrap().join("../../../target/wasm32-wasip2/release/messaging.wasm");
    let path = dir.path().join("host.toml");
    let text = format!(
        "[app]\nname = \"bad\"\n[function.m]\nsource = {:?}\n[[trigger.schedule]]\nname = \"s\"\nevery = \"1s\"\nfunction = \"m.handle\"\n",
        wasm.canonicalize().unwrap()
    );
    std::fs::write(&path, text).unwrap();
    let (_data, host) = crate::common::host();
    let app = host.load(&path).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _entered = runtime.enter();
    let error = host::triggers::Triggers::start(&host, &[&app]).err().unwrap().to_string();
    assert!(error.contains("trigger.schedule `s`") && error.contains("scheduled-ms: u64, missed: u64"), "{error}");
    std::fs::write(&path, "[app]\nname = \"bad\"\n[function.m]\nsource = \"m.wasm\"\n[[trigger.schedule]]\nname = \"s\"\nevery = \"0s\"\nfunction = \"m.tick\"\n").unwrap();
    let error = host.load(&path).err().unwrap().to_string();
    assert!(error.contains("trigger.schedule[0]") && error.contains("at least 1s"), "{error}");
}

#[test]
fn operators_send_receive_complete_and_publish_over_rest() {
    use crate::server::{send, serve_apps};
    let server = serve_apps(&[MESSAGING], Default::default(), Duration::from_secs(5));
    let addr = server.addr;
    let queue = "/v1/apps/messaging/queues/direct";
    let sent = send(addr, "POST", queue, &[], b"from rest");
    assert_eq!(sent.status, 201, "{}", sent.text());
    assert_eq!(send(addr, "GET", queue, &[], b"").json()["ready"], 1);
    let leased = send(addr, "POST", &format!("{queue}/receive?max=5&visibility=1m"), &[], b"").json();
    assert_eq!(bodies(&leased), [("from rest".into(), 1)]);
    let lease = json!({ "lease": leased[0]["lease"] }).to_string();
    assert_eq!(send(addr, "POST", &format!("{queue}/complete"), &[], lease.as_bytes()).status, 204);
    let again = send(addr, "POST", &format!("{queue}/complete"), &[], lease.as_bytes());
    assert_eq!((again.status, again.json()["code"].clone()), (409, json!("lease-expired")));
    let counts = send(addr, "GET", queue, &[], b"").json();
    assert_eq!((counts["ready"].clone(), counts["waiting"].clone()), (json!(0), json!(0)));
    let unknown = send(addr, "POST", "/v1/apps/messaging/queues/nope", &[], b"x");
    assert_eq!((unknown.status, unknown.json()["code"].clone()), (404, json!("unknown-queue")));
    let bad = send(addr, "POST", &format!("{queue}/receive?max=0"), &[], b"");
    assert_eq!((bad.status, bad.json()["code"].clone()), (400, json!("bad-argument")));
    let published = send(addr, "POST", "/v1/apps/messaging/topics/news?source=rest", &[], b"breaking");
    assert_eq!(published.status, 201);
    assert_eq!(send(addr, "POST", "/v1/apps/messaging/topics/gossip", &[], b"x").status, 404);
}

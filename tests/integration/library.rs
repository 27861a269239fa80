//! The embedding API end to end: hello, counter, KV durability, grants, buckets, cache.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use host::{CallError, Error, Host};
use serde_json::json;

use crate::common::{self, COUNTER, HELLO, app, manifest};

#[tokio::test(flavor = "multi_thread")]
async fn hello_greets_and_reports_guest_errors() {
    let (_data, _host, app) = app(HELLO);
    let greet = app.function("hello.greet").unwrap();
    let who = json!({ "who": { "name": "Ada", "age": 36 } });
    assert_eq!(greet.call(who).await.unwrap(), json!("Hello, Ada! You are 36."));
    let nick = json!([{ "name": "Grace", "age": 85, "nickname": "Amazing Grace" }]);
    assert_eq!(greet.call(nick).await.unwrap(), json!("Hello, Amazing Grace! You are 85."));
    match greet.call(json!({ "who": { "name": "", "age": 1 } })).await {
        Err(Error::Call(CallError::Guest { value })) => assert_eq!(value, json!("name must not be empty")),
        other => panic!("expected the guest's error, got {other:?}"),
    }
    assert_eq!(app.function("hello.noop").unwrap().call(json!({})).await.unwrap(), json!(null));
    let names: Vec<&str> = app.functions().iter().map(|f| f.name()).collect();
    assert_eq!(names, ["hello.greet", "hello.noop"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn counter_state_survives_a_host_restart() {
    let data = tempfile::tempdir().unwrap();
    for expected in [5, 7] {
        let host = Host::builder().data_dir(data.path()).build().unwrap();
        let app = host.load(manifest(COUNTER)).unwrap();
        let by = if expected == 5 { 5 } else { 2 };
        let value =
            app.function("counter.increment").unwrap().call(json!({ "key": "visits", "by": by })).await.unwrap();
        assert_eq!(value, json!(expected));
        let stored = app.function("counter.get").unwrap().call(json!({ "key": "visits" })).await.unwrap();
        assert_eq!(stored, json!(expected));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_increments_lose_nothing_and_share_flushes() {
    let (_data, host, app) = app(COUNTER);
    let increment = app.function("counter.increment").unwrap();
    let calls: Vec<_> = (0..64)
        .map(|_| {
            let f = increment.clone();
            tokio::spawn(async move { f.call(json!({ "key": "hits", "by": 1 })).await.unwrap() })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    let total = app.function("counter.get").unwrap().call(json!({ "key": "hits" })).await.unwrap();
    assert_eq!(total, json!(64));
    let stats = host.commit_stats();
    assert_eq!(stats.tickets, 64, "one durable write per increment");
    assert!(stats.flushes <= stats.tickets, "{stats:?}");
}

/// The child half of `acknowledged_writes_survive_a_kill`: increments forever, printing each value
/// once the host has acknowledged it.
async fn kill_child(data: &str) {
    let host = Host::builder().data_dir(data).build().unwrap();
    let increment = host.load(manifest(COUNTER)).unwrap().function("counter.increment").unwrap();
    loop {
        let value = increment.call(json!({ "key": "acked", "by": 1 })).await.unwrap();
        println!("acked {value}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_a_kill() {
    if let Ok(data) = std::env::var("HOST_TEST_KILL_CHILD") {
        return kill_child(&data).await;
    }
    let data = tempfile::tempdir().unwrap();
    manifest(COUNTER);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "library::acknowledged_writes_survive_a_kill", "--nocapture", "--test-threads=1"])
        .env("HOST_TEST_KILL_CHILD", data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut last = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some(value) = line.unwrap().strip_prefix("acked ") {
            last = value.parse::<i64>().unwrap();
            if last == 50 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructors, no final flush
    child.wait().unwrap();
    assert_eq!(last, 50, "the child stopped early");
    let host = Host::builder().data_dir(data.path()).build().unwrap();
    let app = host.load(manifest(COUNTER)).unwrap();
    let stored = app.function("counter.get").unwrap().call(json!({ "key": "acked" })).await.unwrap();
    assert!(stored.as_i64().unwrap() >= last, "acknowledged {last}, found {stored} after the kill");
}

async fn guest_error(app: &host::App, function: &str, args: serde_json::Value) -> String {
    match app.function(function).unwrap().call(args).await {
        Err(Error::Call(CallError::Guest { value })) => value.as_str().unwrap().to_string(),
        other => panic!("{function}: expected a guest error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_limit_stores_buckets_and_config() {
    let (_data, _host, app) = app(COUNTER);
    // Granted: works.
    assert_eq!(app.function("counter.open-store").unwrap().call(json!(["default"])).await.unwrap(), json!(null));
    assert_eq!(app.function("counter.open-bucket").unwrap().call(json!(["notes"])).await.unwrap(), json!(null));
    assert_eq!(app.function("counter.greeting").unwrap().call(json!({})).await.unwrap(), json!("Hello from host.toml"));
    // Not granted to this function: denied.
    assert!(guest_error(&app, "counter.open-store", json!(["secrets"])).await.contains("denied"));
    assert!(guest_error(&app, "counter.open-bucket", json!(["secrets"])).await.contains("denied"));
    // The same component without grants sees nothing.
    assert!(guest_error(&app, "sandboxed.open-store", json!(["default"])).await.contains("denied"));
    assert!(guest_error(&app, "sandboxed.open-bucket", json!(["notes"])).await.contains("denied"));
    assert!(guest_error(&app, "sandboxed.increment", json!(["visits", 1])).await.contains("denied"));
    assert_eq!(app.function("sandboxed.config-value").unwrap().call(json!(["greeting"])).await.unwrap(), json!(null));
    assert_eq!(guest_error(&app, "sandboxed.greeting", json!({})).await, "config key \"greeting\" is not set");
}

#[tokio::test(flavor = "multi_thread")]
async fn buckets_store_files_and_reject_escaping_keys() {
    let (data, _host, app) = app(COUNTER);
    let save = app.function("counter.save-note").unwrap();
    assert_eq!(save.call(json!(["2024/jan.txt", "happy new year"])).await.unwrap(), json!(14));
    assert_eq!(save.call(json!(["2024/feb.txt", "short"])).await.unwrap(), json!(5));
    assert_eq!(save.call(json!(["todo.txt", "x"])).await.unwrap(), json!(1));
    let read = app.function("counter.read-note").unwrap();
    assert_eq!(read.call(json!(["2024/jan.txt"])).await.unwrap(), json!("happy new year"));
    let list = app.function("counter.list-notes").unwrap();
    assert_eq!(list.call(json!(["2024/"])).await.unwrap(), json!(["2024/feb.txt", "2024/jan.txt"]));
    assert_eq!(list.call(json!([""])).await.unwrap(), json!(["2024/feb.txt", "2024/jan.txt", "todo.txt"]));
    // On disk, inside the app's bucket folder.
    let file = data.path().join("buckets/counter/notes/2024/jan.txt");
    assert_eq!(std::fs::read_to_string(file).unwrap(), "happy new year");

    for key in ["../escaped.txt", "../../escaped.txt", "/tmp/escaped.txt", "a/../../escaped.txt", "a//b"] {
        let error = guest_error(&app, "counter.save-note", json!([key, "nope"])).await;
        assert!(error.contains("invalid object key"), "{key}: {error}");
    }
    let error = guest_error(&app, "counter.read-note", json!(["../notes/todo.txt"])).await;
    assert!(error.contains("invalid object key") && error.contains("`..`"), "{error}");
    assert!(guest_error(&app, "counter.read-note", json!(["missing.txt"])).await.contains("no such object"));
    // A folder is not an object; deleting its last object removes it, so its name is free again.
    assert!(guest_error(&app, "counter.read-note", json!(["2024"])).await.contains("no such object"));
    let delete = app.function("counter.delete-note").unwrap();
    delete.call(json!(["2024/jan.txt"])).await.unwrap();
    delete.call(json!(["2024/feb.txt"])).await.unwrap();
    delete.call(json!(["2024/feb.txt"])).await.unwrap();
    assert!(!data.path().join("buckets/counter/notes/2024").exists());
    assert_eq!(save.call(json!(["2024", "a year"])).await.unwrap(), json!(6));
    assert_eq!(list.call(json!([""])).await.unwrap(), json!(["2024", "todo.txt"]));
    let escaped: Vec<_> = walk(data.path()).into_iter().filter(|p| p.ends_with("escaped.txt")).collect();
    assert!(escaped.is_empty(), "files escaped the bucket: {escaped:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() { found.extend(walk(&path)) } else { found.push(path) }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn stores_are_namespaced_by_app() {
    let (data, host, app) = app(COUNTER);
    app.function("counter.increment").unwrap().call(json!(["shared", 10])).await.unwrap();
    // The same component and store name under another app name.
    let other = data.path().join("other.toml");
    let source = common::root().join("target/wasm32-wasip2/release/counter.wasm");
    std::fs::write(
        &other,
        format!(
            "[app]\nname = \"other\"\n[function.counter]\nsource = {source:?}\ngrants = {{ kv = [\"default\"] }}\n"
        ),
    )
    .unwrap();
    let other = host.load(&other).unwrap();
    assert_eq!(other.function("counter.increment").unwrap().call(json!(["shared", 1])).await.unwrap(), json!(1));
    assert_eq!(app.function("counter.get").unwrap().call(json!(["shared"])).await.unwrap(), json!(10));
}

#[tokio::test(flavor = "multi_thread")]
async fn compiled_components_are_cached_on_disk() {
    let data = tempfile::tempdir().unwrap();
    let first = Host::builder().data_dir(data.path()).build().unwrap();
    first.load(manifest(HELLO)).unwrap();
    assert_eq!(first.compilations(), 1);
    first.load(manifest(HELLO)).unwrap();
    assert_eq!(first.compilations(), 1, "second load in the same host compiled again");
    drop(first);
    let cached: Vec<_> = std::fs::read_dir(data.path().join("cache")).unwrap().flatten().collect();
    assert_eq!(cached.len(), 1);
    let second = Host::builder().data_dir(data.path()).build().unwrap();
    let app = second.load(manifest(HELLO)).unwrap();
    assert_eq!(second.compilations(), 0, "a new host recompiled a cached component");
    let greeting = app.function("hello.greet").unwrap().call(json!([{ "name": "Cache", "age": 1 }])).await.unwrap();
    assert_eq!(greeting, json!("Hello, Cache! You are 1."));
}

#[test]
fn unknown_functions_and_missing_components_are_named() {
    let (_data, host, app) = app(COUNTER);
    let error = app.function("counter.nope").err().unwrap().to_string();
    assert!(error.contains("counter.nope") && error.contains("counter.increment"), "{error}");
    let error = app.function("counter").err().unwrap().to_string();
    assert!(error.contains("available"), "{error}");
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("host.toml");
    std::fs::write(&manifest, "[app]\nname = \"ghost\"\n[function.ghost]\nsource = \"missing.wasm\"\n").unwrap();
    let error = host.load(&manifest).err().unwrap().to_string();
    assert!(error.contains("missing.wasm") && error.contains("host build"), "{error}");
}

#[test]
fn jobs_run_in_the_background() {
    use host::executions::Status;
    use std::time::Duration;
    let (_data, host, app) = app(HELLO);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let greet = app.function("hello.greet").unwrap();
    let id = runtime.block_on(greet.spawn(&json!({ "who": { "name": "Ada", "age": 36 } }))).unwrap();
    let done = runtime.block_on(host.executions().wait(&id, Duration::from_secs(10))).unwrap();
    assert_eq!((done.status, done.trigger.as_str()), (Status::Succeeded, "async"));
    assert_eq!(done.output, Some(json!("Hello, Ada! You are 36.")));
    let bad = runtime.block_on(greet.spawn(&json!({ "who": "Ada" })));
    assert!(matches!(bad, Err(Error::Argument(_))), "bad arguments are refused at once: {bad:?}");
}

//! Execution records: recording less for hot direct calls, retention, cancelling (library, REST
//! and CLI), and streamed maps that start no more calls once their client is gone.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use host::executions::{CancelError, ExecutionFilter, Executions, Retention, Status};
use host::{App, Host};
use serde_json::{Value, json};

use crate::cli::text;
use crate::common::{REMOTE_MAP, ServeProcess, app, compiled_cache, host_on, manifest, root};
use crate::server::{send, serve_apps};

/// A manifest in `dir` whose functions (name, extra TOML lines) all run the built component
/// `component` (e.g. `remote_map`), loaded on a fresh host there.
fn custom_app(dir: &Path, component: &str, functions: &[(&str, &str)]) -> (Host, App) {
    manifest(REMOTE_MAP); // builds every test component
    let wasm = root().join(format!("target/wasm32-wasip2/release/{component}.wasm"));
    let mut text = "[app]\nname = \"custom\"\n".to_string();
    for (name, extra) in functions {
        text.push_str(&format!("\n[function.{name}]\nsource = {:?}\n{extra}\n", wasm.to_str().unwrap()));
    }
    let path = dir.join("host.toml");
    std::fs::write(&path, text).unwrap();
    let host = host_on(&dir.join("data"));
    let app = host.load(&path).unwrap();
    (host, app)
}

fn wait_for(runtime: &tokio::runtime::Runtime, executions: &Executions, id: &str, status: Status) {
    let started = Instant::now();
    while runtime.block_on(executions.get(id)).unwrap().status != status {
        assert!(started.elapsed() < Duration::from_secs(20), "{id} never became {status}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn record_settings_leave_direct_calls_out_but_jobs_stay_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (host, app) =
        custom_app(dir.path(), "remote_map", &[("quiet", "record = \"none\""), ("picky", "record = \"errors\"")]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let square = app.function("quiet.square").unwrap();
    assert_eq!(runtime.block_on(square.call(json!([3]))).unwrap(), json!(9));
    let mapped = runtime.block_on(square.starmap(&[json!([1]), json!([2])], |_, _| {}));
    assert!(mapped.iter().all(Result::is_ok));
    let job = runtime.block_on(square.spawn(&json!([4]))).unwrap();
    let record = runtime.block_on(host.executions().wait(&job, Duration::from_secs(20))).unwrap();
    assert_eq!((record.status, record.output), (Status::Succeeded, Some(json!(16))));
    let root = app.function("picky.root").unwrap();
    assert_eq!(runtime.block_on(root.call(json!([4.0]))).unwrap(), json!(2.0));
    assert!(runtime.block_on(root.call(json!([-1.0]))).is_err());

    let all = runtime.block_on(host.executions().list(&ExecutionFilter::default(), None, 100));
    let seen: Vec<(&str, &str, Status)> =
        all.iter().map(|r| (r.function.as_str(), r.trigger.as_str(), r.status)).collect();
    assert_eq!(
        seen,
        [("picky.root", "call", Status::Failed), ("quiet.square", "async", Status::Succeeded)],
        "only the job and the failed call are recorded"
    );
}

#[test]
fn a_host_keeps_only_the_newest_records_its_retention_allows() {
    let data = tempfile::tempdir().unwrap();
    let retention = Retention { max_count: 3, ..Retention::default() };
    let host = Host::builder().data_dir(data.path()).cache_dir(compiled_cache()).retention(retention).build().unwrap();
    let square = host.load(manifest(REMOTE_MAP)).unwrap().function("remote-map.square").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for x in 1..=6 {
        runtime.block_on(square.call(json!([x]))).unwrap();
    }
    // Too few records were written to wake the pruning thread early (`PRUNE_AFTER_WRITES`).
    assert_eq!(runtime.block_on(host.executions().prune()).unwrap(), 3);
    let kept = runtime.block_on(host.executions().list(&ExecutionFilter::default(), None, 100));
    let outputs: Vec<Value> = kept.iter().map(|r| r.output.clone().unwrap()).collect();
    assert_eq!(outputs, [json!(36), json!(25), json!(16)]);
}

#[test]
fn a_busy_host_prunes_without_waiting_for_the_timer() {
    manifest(REMOTE_MAP);
    let data = tempfile::tempdir().unwrap();
    let retention = Retention { max_count: 20, ..Retention::default() };
    // The pruning thread's first timed run is `PRUNE_FIRST` after the host starts: the records
    // written must wake it well before that.
    let started = Instant::now();
    let host = Host::builder().data_dir(data.path()).cache_dir(compiled_cache()).retention(retention).build().unwrap();
    let square = host.load(manifest(REMOTE_MAP)).unwrap().function("remote-map.square").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for x in 0..2 * host::executions::PRUNE_AFTER_WRITES {
        runtime.block_on(square.call(json!([x]))).unwrap();
    }
    let calls_took = started.elapsed();
    let count = || runtime.block_on(host.executions().list(&ExecutionFilter::default(), None, 1000)).len();
    while count() > 20 + 2 {
        assert!(started.elapsed() < Duration::from_secs(60), "still {} records", count());
        std::thread::sleep(Duration::from_millis(20));
    }
    let pruned = started.elapsed();
    assert!(
        pruned < host::executions::PRUNE_FIRST || calls_took > host::executions::PRUNE_FIRST / 2,
        "pruned only after {pruned:?} (the calls took {calls_took:?}): the records written did not wake the pruning thread"
    );
}

#[test]
fn serve_prunes_records_beyond_its_keep_executions_flag() {
    let data = tempfile::tempdir().unwrap();
    let server = ServeProcess::start_with(data.path(), None, &[REMOTE_MAP], &["--keep-executions", "2"]);
    let square = "/v1/apps/remote-map/functions/remote-map.square";
    for x in 1..=5 {
        assert_eq!(send(server.addr, "POST", square, &[], format!("[{x}]").as_bytes()).json(), json!(x * x));
    }
    // The pruning thread first runs 5 s after the start.
    let started = Instant::now();
    loop {
        let listed = send(server.addr, "GET", "/v1/executions", &[], b"").json();
        let outputs: Vec<Value> = listed.as_array().unwrap().iter().map(|r| r["output"].clone()).collect();
        if outputs.len() == 2 {
            assert_eq!(outputs, [json!(25), json!(16)], "the newest two are kept");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never pruned: {outputs:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn cancelling_stops_queued_and_running_executions() {
    let (_data, host, app) = app(REMOTE_MAP);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let executions = host.executions();
    let slow = app.function("remote-map.slow-sum").unwrap();
    // Serial calls: the first runs for 10 s, printing each step; the second waits its turn.
    let first = runtime.block_on(slow.enqueue(&json!([100, 100]))).unwrap();
    let second = runtime.block_on(slow.enqueue(&json!([1, 1]))).unwrap();
    wait_for(&runtime, executions, &first, Status::Running);
    let record = runtime.block_on(executions.cancel(&second)).unwrap();
    assert_eq!((record.status, record.started_ms), (Status::Cancelled, None), "{record:?}");
    std::thread::sleep(Duration::from_millis(300));
    // The guest sleeps in a host call (no epoch check there): the cancel wakes it.
    let started = Instant::now();
    let record = runtime.block_on(executions.cancel(&first)).unwrap();
    assert_eq!(record.status, Status::Cancelled, "{record:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "interrupted at once, not after {:?}", started.elapsed());
    assert_eq!(record.error.unwrap()["code"], "cancelled");
    assert!(runtime.block_on(executions.logs(&first)).unwrap().contains("step 1/100"), "its output so far is kept");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        runtime.block_on(executions.get(&second)).unwrap().status,
        Status::Cancelled,
        "the queued one never ran"
    );

    let again = runtime.block_on(executions.cancel(&first));
    assert!(matches!(again, Err(CancelError::Final { status: Status::Cancelled, .. })), "{again:?}");
    assert!(matches!(runtime.block_on(executions.cancel("nope")), Err(CancelError::Unknown(_))));
    let cancelled = ExecutionFilter { status: Some(Status::Cancelled), ..Default::default() };
    assert_eq!(runtime.block_on(executions.list(&cancelled, None, 10)).len(), 2);
}

#[test]
fn cancelling_interrupts_a_spinning_guest_at_the_next_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let (host, app) = custom_app(dir.path(), "hostile", &[("spinner", "limits = { timeout = \"60s\" }")]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let id = runtime.block_on(app.function("spinner.spin").unwrap().spawn(&Value::Null)).unwrap();
    wait_for(&runtime, host.executions(), &id, Status::Running);
    let started = Instant::now();
    let record = runtime.block_on(host.executions().cancel(&id)).unwrap();
    assert_eq!(record.status, Status::Cancelled, "{record:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "interrupted at once, not after {:?}", started.elapsed());
    assert_eq!(runtime.block_on(app.function("spinner.ok").unwrap().call(Value::Null)).unwrap(), json!("still fine"));
}

fn cli(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host")).arg("--data").arg(data).args(args).output().unwrap()
}

#[test]
fn cancel_over_rest_and_from_the_cli() {
    let data = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(data.path(), None, &[REMOTE_MAP]);
    let (addr, url) = (server.addr, server.url());
    let slow = "/v1/apps/remote-map/functions/remote-map.slow-sum";
    let start = |query: &str| {
        let answer = send(addr, "POST", &format!("{slow}?{query}"), &[], b"[100, 100]");
        assert_eq!(answer.status, 202, "{}", answer.text());
        answer.json()["id"].as_str().unwrap().to_string()
    };
    let status = |id: &str| send(addr, "GET", &format!("/v1/executions/{id}"), &[], b"").json()["status"].clone();
    let running = start("enqueue=true");
    let queued = start("enqueue=true");
    let started = Instant::now();
    while status(&running) != "running" {
        assert!(started.elapsed() < Duration::from_secs(20), "the job never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = cli(data.path(), &["executions", "cancel", &queued, "--remote", &url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((record["id"].as_str(), &record["status"]), (Some(queued.as_str()), &json!("cancelled")));
    let answer = send(addr, "POST", &format!("/v1/executions/{running}/cancel"), &[], b"");
    assert_eq!((answer.status, answer.json()["status"].clone()), (200, json!("cancelled")), "{}", answer.text());
    let again = send(addr, "POST", &format!("/v1/executions/{running}/cancel"), &[], b"");
    assert_eq!(again.code(), (409, "already-final".into()));
    assert!(again.json()["message"].as_str().unwrap().contains("already cancelled"), "{}", again.text());
    let unknown = send(addr, "POST", "/v1/executions/nope/cancel", &[], b"");
    assert_eq!(unknown.code(), (404, "unknown-execution".into()));
    let listed = send(addr, "GET", "/v1/executions?status=cancelled", &[], b"").json();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    drop(server);

    // On the data dir, with no server: a finished execution cannot be cancelled.
    let out = cli(data.path(), &["executions", "cancel", &running]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already cancelled"), "{}", text(&out.stderr));
    let out = cli(data.path(), &["executions", "--status", "cancelled", "--json"]);
    assert_eq!(text(&out.stdout).lines().count(), 2, "{}", text(&out.stderr));
}

#[test]
fn a_streamed_map_whose_client_is_gone_starts_no_more_calls() {
    let server = serve_apps(&[REMOTE_MAP], Default::default(), Duration::from_secs(5));
    let args: Vec<Value> = (0..3000).map(|_| json!([1, 20])).collect();
    let body = json!({ "args": args }).to_string();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let path = "/v1/apps/remote-map/functions/remote-map.slow-sum/starmap?stream=true";
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        server.addr,
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let (mut results, mut line) = (0, String::new());
    while results < 3 {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the stream ended early");
        results += usize::from(line.contains("\"index\""));
    }
    drop(reader);

    // Count the calls recorded until no more come.
    let count = || {
        let listed = send(server.addr, "GET", "/v1/executions?function=remote-map.slow-sum&limit=1000", &[], b"");
        listed.json().as_array().map_or(0, Vec::len)
    };
    let (started, mut last) = (Instant::now(), count());
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = count();
        if now == last {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "calls kept coming: {now}");
        last = now;
    }
    assert!((3..300).contains(&last), "{last} of 3000 calls ran after the client left");
}

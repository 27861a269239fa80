//! The remote-map example (Runhouse's remote functions): map and starmap in order with partial
//! failure, jobs and references between calls, serial calls, jobs that outlive their host, and
//! the same through REST and the CLI.

use std::time::Duration;

use host::executions::{ExecutionFilter, Status};
use host::{Error, Host, outcome_json};
use serde_json::{Value, json};

use crate::common::{HOSTILE, REMOTE_MAP, app, manifest, running_on};
use crate::server::{send, serve_apps};

#[test]
fn map_and_starmap_keep_input_order_and_fail_items_alone() {
    let (_data, host, app) = app(REMOTE_MAP);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let root = app.function("remote-map.root").unwrap();
    let inputs = json!([16, -1, 2.25, "four", 0]);
    let arg_sets = root.map_args(&inputs).unwrap();
    let mut seen = Vec::new();
    let outcomes = runtime.block_on(root.starmap(&arg_sets, |i, _| seen.push(i)));
    let outcomes: Vec<Value> = outcomes.iter().map(outcome_json).collect();
    assert_eq!(outcomes[0], json!({ "ok": 4.0 }));
    assert_eq!(outcomes[1]["err"]["code"], "guest-error");
    assert_eq!(outcomes[1]["err"]["error"], "no real square root of -1");
    assert_eq!(outcomes[2], json!({ "ok": 1.5 }));
    assert_eq!(outcomes[3]["err"]["code"], "bad-argument");
    assert_eq!(outcomes[4], json!({ "ok": 0.0 }));
    seen.sort();
    assert_eq!(seen, [0, 1, 2, 3, 4], "every outcome is reported once");

    // Runhouse's keyword map (zipped lists) and starmap (argument lists) on a two-parameter function.
    let add = app.function("remote-map.add").unwrap();
    let zipped = add.map_args(&json!({ "a": [1, 2], "b": [2, 5] })).unwrap();
    let sums: Vec<Value> = runtime.block_on(add.starmap(&zipped, |_, _| {})).iter().map(outcome_json).collect();
    assert_eq!(sums, [json!({ "ok": 3 }), json!({ "ok": 7 })]);
    let starred = [json!([1, 2]), json!([1, 3]), json!({ "a": 1, "b": 4 })];
    let sums: Vec<Value> = runtime.block_on(add.starmap(&starred, |_, _| {})).iter().map(outcome_json).collect();
    assert_eq!(sums, [json!({ "ok": 3 }), json!({ "ok": 4 }), json!({ "ok": 5 })]);
    let error = add.map_args(&json!([1, 2])).unwrap_err().to_string();
    assert!(error.contains("object of lists") && error.contains("starmap"), "{error}");
    let error = add.map_args(&json!({ "a": [1], "b": [1, 2] })).unwrap_err().to_string();
    assert!(error.contains("same length"), "{error}");

    // Many calls run in parallel instances, up to the function's concurrency (8).
    let slow = app.function("remote-map.slow-sum").unwrap();
    let sets: Vec<Value> = (0..16).map(|_| json!([2, 100])).collect();
    let started = std::time::Instant::now();
    let outcomes = runtime.block_on(slow.starmap(&sets, |_, _| {}));
    assert!(outcomes.iter().all(|o| matches!(o, Ok(v) if *v == json!(3))));
    let filter = ExecutionFilter {
        trigger: Some("map".into()),
        function: Some("remote-map.slow-sum".into()),
        ..Default::default()
    };
    assert_eq!(runtime.block_on(host.executions().list(&filter, None, 100)).len(), 16, "every call is recorded");
    // 16 calls of 200 ms: about 2 rounds of 8 rather than 16 in a row (not a timing assertion
    // on the machine's speed: sequential calls could not take less than 3.2 s).
    assert!(started.elapsed() < Duration::from_millis(3200), "calls ran in parallel: {:?}", started.elapsed());
}

#[test]
fn jobs_chain_through_execution_references_and_serial_calls_keep_their_order() {
    let (_data, host, app) = app(REMOTE_MAP);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let executions = host.executions();
    let square = app.function("remote-map.square").unwrap();
    let add = app.function("remote-map.add").unwrap();
    let slow = app.function("remote-map.slow-sum").unwrap();

    // `slow` takes a while; `add` waits for it and for `square`, without a round trip.
    let sum = runtime.block_on(slow.spawn(&json!([4, 50]))).unwrap();
    let squared = runtime.block_on(square.spawn(&json!([7]))).unwrap();
    let total =
        runtime.block_on(add.spawn(&json!({ "a": { "$execution": sum }, "b": { "$execution": squared } }))).unwrap();
    let record = runtime.block_on(executions.wait(&total, Duration::from_secs(20))).unwrap();
    assert_eq!((record.status, record.output), (Status::Succeeded, Some(json!(10 + 49))));
    assert_eq!(record.input["a"], json!({ "$execution": sum }), "the record keeps the reference");
    // A direct call takes references too.
    assert_eq!(runtime.block_on(add.call(json!([{ "$execution": total }, 1]))).unwrap(), json!(60));
    // A reference to a failed execution fails the call that takes it, naming the reference.
    let root = app.function("remote-map.root").unwrap();
    let failed = runtime.block_on(root.spawn(&json!([-4]))).unwrap();
    let chained = runtime.block_on(root.spawn(&json!([{ "$execution": failed }]))).unwrap();
    let record = runtime.block_on(executions.wait(&chained, Duration::from_secs(20))).unwrap();
    assert_eq!(record.status, Status::Failed);
    assert_eq!(record.error.as_ref().unwrap()["code"], "bad-reference");
    assert!(record.error.unwrap()["message"].as_str().unwrap().contains(&failed));
    // Unknown references are refused before anything is recorded.
    let unknown = runtime.block_on(add.spawn(&json!([{ "$execution": "nope" }, 1])));
    assert!(matches!(unknown, Err(Error::Argument(ref a)) if a.got == "nope"), "{unknown:?}");

    // Enqueued calls run one at a time, in order: the log grows in enqueue order.
    let append = app.function("remote-map.append").unwrap();
    let ids: Vec<String> =
        (0..6).map(|i| runtime.block_on(append.enqueue(&json!([format!("e{i}")]))).unwrap()).collect();
    let last = runtime.block_on(executions.wait(ids.last().unwrap(), Duration::from_secs(20))).unwrap();
    assert_eq!(last.output, Some(json!(["e0", "e1", "e2", "e3", "e4", "e5"])));
    let records: Vec<_> = ids.iter().map(|id| runtime.block_on(executions.get(id)).unwrap()).collect();
    assert!(records.iter().all(|r| r.trigger == "enqueue" && r.status == Status::Succeeded));
    assert!(
        records.windows(2).all(|w| w[0].finished_ms.unwrap() <= w[1].started_ms.unwrap()),
        "each starts after the previous one finished"
    );
}

#[test]
fn a_job_cut_off_by_a_stopped_host_runs_again_when_triggers_start() {
    let data = tempfile::tempdir().unwrap();
    let id = {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let host = Host::builder().data_dir(data.path()).build().unwrap();
        let nap = host.load(manifest(HOSTILE)).unwrap().function("hostile.nap").unwrap();
        let id = runtime.block_on(nap.spawn(&json!([400]))).unwrap();
        let started = std::time::Instant::now();
        while runtime.block_on(host.executions().get(&id)).unwrap().status != Status::Running {
            assert!(started.elapsed() < Duration::from_secs(10), "the job never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        id
    };
    let data_path = data.path().to_path_buf();
    let restarted = {
        let host = Host::builder().data_dir(&data_path).build().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let record = runtime.block_on(host.executions().get(&id)).unwrap();
        assert_eq!(record.status, Status::Running, "left as it was");
        drop(host);
        running_on(&data_path, &[HOSTILE])
    };
    let record = restarted.runtime.block_on(restarted.host.executions().wait(&id, Duration::from_secs(20))).unwrap();
    assert_eq!(record.status, Status::Succeeded, "{record:?}");
}

#[test]
fn rest_maps_enqueues_and_waits() {
    let server = serve_apps(&[REMOTE_MAP], Default::default(), Duration::from_secs(5));
    let addr = server.addr;
    let post = |path: &str, body: Value| send(addr, "POST", path, &[], body.to_string().as_bytes());
    let base = "/v1/apps/remote-map/functions";
    let mapped = post(&format!("{base}/remote-map.root/map"), json!({ "inputs": [9, -9] }));
    assert_eq!(mapped.status, 200);
    let body = mapped.json();
    assert_eq!(body["results"][0], json!({ "ok": 3.0 }));
    assert_eq!(body["results"][1]["err"]["code"], "guest-error");
    assert_eq!((body["succeeded"].clone(), body["failed"].clone()), (json!(1), json!(1)));
    let starred = post(&format!("{base}/remote-map.add/starmap?stream=true"), json!({ "args": [[1, 2], [3, 4]] }));
    let mut lines: Vec<Value> = starred.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    lines.sort_by_key(|l| l["index"].as_u64());
    assert_eq!(lines, [json!({ "index": 0, "ok": 3 }), json!({ "index": 1, "ok": 7 })]);
    let bad = post(&format!("{base}/remote-map.add/map"), json!({ "inputs": [1, 2] }));
    assert_eq!((bad.status, bad.json()["code"].clone()), (400, json!("bad-argument")));

    let queued = post(&format!("{base}/remote-map.append?enqueue=true"), json!(["first"]));
    assert_eq!(queued.status, 202);
    let id = queued.json()["id"].as_str().unwrap().to_string();
    let done = send(addr, "GET", &format!("/v1/executions/{id}?wait=10s"), &[], b"").json();
    assert_eq!(
        (done["status"].clone(), done["trigger"].clone(), done["output"].clone()),
        (json!("succeeded"), json!("enqueue"), json!(["first"]))
    );
}

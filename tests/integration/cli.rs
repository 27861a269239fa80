//! The `host` binary: call, inspect, build, exit codes and messages.

use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::common::{COUNTER, HELLO, HTTP_HOSTILE, PROBE, ServeProcess, manifest};

fn host(data: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host")).arg("--data").arg(data).args(args).output().unwrap()
}

/// Command output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn call_prints_the_json_result() {
    let data = tempfile::tempdir().unwrap();
    let hello = manifest(HELLO);
    let out = host(
        data.path(),
        &["call", "-f", hello.to_str().unwrap(), "hello.greet", r#"{"who": {"name": "Ada", "age": 36}}"#],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), json!("Hello, Ada! You are 36."));
}

#[test]
fn counter_persists_between_cli_processes() {
    let data = tempfile::tempdir().unwrap();
    let counter = manifest(COUNTER);
    for expected in [3, 6] {
        let out =
            host(data.path(), &["call", "-f", counter.to_str().unwrap(), "counter.increment", r#"["visits", 3]"#]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), json!(expected));
    }
}

#[test]
fn failures_exit_non_zero_with_a_named_reason() {
    let data = tempfile::tempdir().unwrap();
    let hello = manifest(HELLO);
    let hello = hello.to_str().unwrap();
    // Bad arguments: exit 2, the path and expectation named, nothing on stdout.
    let out = host(data.path(), &["call", "-f", hello, "hello.greet", r#"{"who": {"name": "Ada", "age": "ten"}}"#]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(r#"argument who.age: expected u8, got "ten""#), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let out = host(data.path(), &["call", "-f", hello, "hello.greet", "{not json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not valid JSON"), "{}", text(&out.stderr));
    // Unknown function: exit 2 and the list of what exists.
    let out = host(data.path(), &["call", "-f", hello, "hello.wave"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("hello.greet, hello.noop"), "{}", text(&out.stderr));
    // The guest's own error: exit 1.
    let out = host(data.path(), &["call", "-f", hello, "hello.greet", r#"[{"name": "", "age": 1}]"#]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("name must not be empty"), "{}", text(&out.stderr));
    // A broken manifest: exit 2, file and line named.
    let bad = data.path().join("bad.toml");
    std::fs::write(&bad, "[app]\nname = \"x\"\n[function.f]\nsource = \"f.wasm\"\nlimits = { memry = \"1MiB\" }\n")
        .unwrap();
    let out = host(data.path(), &["call", "-f", bad.to_str().unwrap(), "f"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("bad.toml") && stderr.contains("line 5") && stderr.contains("memry"), "{stderr}");
}

#[test]
fn inspect_lists_exports_with_signatures_and_schemas() {
    let data = tempfile::tempdir().unwrap();
    manifest(HELLO);
    let wasm = crate::common::root().join("target/wasm32-wasip2/release/hello.wasm");
    let out = host(data.path(), &["inspect", "--json", wasm.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let exports: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(exports[0]["name"], json!("greet"));
    assert_eq!(
        exports[0]["signature"],
        json!("func(who: record { name: string, age: u8, nickname: option<string> }) -> result<string, string>")
    );
    assert_eq!(exports[0]["params"]["properties"]["who"]["required"], json!(["name", "age"]));
    assert_eq!(exports[0]["result"], json!({ "type": "string" }));
    assert_eq!(exports[0]["error"], json!({ "type": "string" }));
    assert_eq!(exports[1]["name"], json!("noop"));
    let out = host(data.path(), &["inspect", "/nonexistent.wasm"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent.wasm"));
}

#[test]
fn build_runs_the_manifest_commands_and_every_command_has_help() {
    let data = tempfile::tempdir().unwrap();
    let out = host(data.path(), &["build", "-f", manifest(HELLO).to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for command in [&[][..], &["call"], &["inspect"], &["build"]] {
        let out = host(data.path(), &[command, &["--help"]].concat());
        assert!(out.status.success());
        assert!(text(&out.stdout).contains("Usage: host"), "{}", text(&out.stdout));
    }
}

#[test]
fn without_address_space_for_the_pool_calls_fall_back_to_on_demand_allocation() {
    let data = tempfile::tempdir().unwrap();
    let hello = manifest(HELLO);
    // 16 GB of virtual memory: far too little for the pool's reservation, enough for one instance.
    let out = Command::new("bash")
        .args(["-c", "ulimit -v 16000000 && exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_host")])
        .arg("--data")
        .arg(data.path())
        .args(["call", "-f", hello.to_str().unwrap(), "hello.greet", r#"[{"name": "Small", "age": 2}]"#])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("using on-demand allocation"), "{}", text(&out.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), json!("Hello, Small! You are 2."));
}

#[test]
fn serve_answers_remote_calls_and_finishes_requests_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let token_file = data.path().join("token");
    std::fs::write(&token_file, "  t0ken-for-tests\n").unwrap();
    let listen = crate::common::free_addr().to_string();
    let url = format!("http://{listen}");
    let mut server = Command::new(env!("CARGO_BIN_EXE_host"))
        .arg("--data")
        .arg(data.path())
        .args(["serve", "-f", manifest(HELLO).to_str().unwrap(), "-f", manifest(HTTP_HOSTILE).to_str().unwrap()])
        .args(["--listen", &listen, "--token-file", token_file.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(server.try_wait().unwrap().is_none(), "server exited");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let remote = |args: &[&str], token: &str| {
        Command::new(env!("CARGO_BIN_EXE_host"))
            .args(["call", "--remote", &url])
            .args(args)
            .env("HOST_TOKEN", token)
            .output()
            .unwrap()
    };
    let token = "t0ken-for-tests";
    // Same syntax as a local call; the app is found on the server, or named with `APP/`.
    for function in ["hello.greet", "hello/hello.greet"] {
        let out = remote(&[function, r#"{"who": {"name": "Remy", "age": 7}}"#], token);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), json!("Hello, Remy! You are 7."));
    }
    let out = remote(&["hello.greet", r#"{"who": {"name": "Remy", "age": "old"}}"#], token);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(r#"argument who.age: expected u8, got "old""#), "{}", text(&out.stderr));
    let out = remote(&["hello.wave"], token);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no app on the server has a function `hello.wave`"), "{}", text(&out.stderr));
    let out = remote(&["hello.greet", r#"[{"name": "", "age": 1}]"#], token);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("name must not be empty"), "{}", text(&out.stderr));
    let out = remote(&["hello.greet", r#"[{"name": "X", "age": 1}]"#], "wrong");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("bearer token"), "{}", text(&out.stderr));

    // SIGTERM with a slow request in flight: it completes, then the server exits 0.
    let slow_url = listen.clone();
    let slow = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&slow_url).unwrap();
        let request = "GET /web/slow?ms=800 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t0ken-for-tests\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    let response = slow.join().unwrap();
    assert!(response.starts_with("HTTP/1.1 200") && response.contains("slept 800"), "{response}");
    let status = server.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn serve_refuses_non_loopback_addresses() {
    let data = tempfile::tempdir().unwrap();
    let out = host(data.path(), &["serve", "-f", manifest(HELLO).to_str().unwrap(), "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("refusing to listen on 0.0.0.0:0 without a bearer token"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn serve_refuses_out_of_range_limits_without_panicking() {
    let data = tempfile::tempdir().unwrap();
    let hello = manifest(HELLO);
    for (flag, value) in [("--max-requests", "18446744073709551615"), ("--max-requests", "0"), ("--body-timeout", "0s")]
    {
        let out = host(data.path(), &["serve", "-f", hello.to_str().unwrap(), "--listen", "127.0.0.1:0", flag, value]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(if flag == "--max-requests" { 2 } else { 1 }), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag.trim_start_matches('-')) && !stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn a_killed_host_handles_every_accepted_upload_after_restart() {
    use crate::server::send;
    let data = tempfile::tempdir().unwrap();
    let first = ServeProcess::start(data.path(), None, &[PROBE]);
    let addr = first.addr;
    let mut ids = Vec::new();
    for n in 0..8 {
        let path =
            format!("/v1/apps/probe/datasets/inbox/items?dir=/once&name=i{n}.bin&metadata=%7B%22sleep-ms%22%3A300%7D");
        let answer = send(addr, "POST", &path, &[], b"data");
        assert_eq!(answer.status, 201, "{}", answer.text());
        ids.push(answer.json()["id"].as_str().unwrap().to_string());
    }
    // Some executions are done, some running, most queued: kill without warning.
    std::thread::sleep(std::time::Duration::from_millis(400));
    drop(first);

    let second = ServeProcess::start(data.path(), None, &[PROBE]);
    let addr = second.addr;
    let started = std::time::Instant::now();
    let done = loop {
        let all = send(addr, "GET", "/v1/executions?trigger=once&limit=1000", &[], b"").json();
        let all = all.as_array().unwrap().clone();
        if all.iter().filter(|e| e["status"] == "succeeded").count() >= ids.len()
            && all.iter().all(|e| e["status"] != "queued" && e["status"] != "running")
        {
            break all;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "not all handled: {all:#?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    drop(second);
    for id in &ids {
        let successes = done.iter().filter(|e| e["item"][1] == id.as_str() && e["status"] == "succeeded").count();
        assert_eq!(successes, 1, "item {id}: {done:#?}");
    }
}

#[test]
fn items_upload_list_get_and_executions_from_the_cli() {
    let data = tempfile::tempdir().unwrap();
    let folder = tempfile::tempdir().unwrap();
    std::fs::create_dir(folder.path().join("sub")).unwrap();
    std::fs::write(folder.path().join("a.txt"), "alpha").unwrap();
    std::fs::write(folder.path().join("sub/b.png"), "not really a png").unwrap();
    let root = folder.path().to_str().unwrap();
    let out = host(data.path(), &["items", "upload", "probe", "inbox", root, "--dir", "/in"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let uploaded: Vec<Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let folder_name = folder.path().file_name().unwrap().to_str().unwrap();
    let placed: Vec<(String, String, String)> = uploaded
        .iter()
        .map(|i| {
            (
                i["dir"].as_str().unwrap().into(),
                i["name"].as_str().unwrap().into(),
                i["mimetype"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        placed,
        [
            (format!("/in/{folder_name}"), "a.txt".into(), "text/plain".into()),
            (format!("/in/{folder_name}/sub"), "b.png".into(), "image/png".into()),
        ]
    );
    let out = host(data.path(), &["items", "list", "probe", "inbox", "--mimetype", "image/*"]);
    assert_eq!(text(&out.stdout).lines().count(), 1, "{}", text(&out.stdout));
    let id = uploaded[0]["id"].as_str().unwrap();
    let saved = folder.path().join("copy");
    let out = host(data.path(), &["items", "get", "probe", "inbox", id, "--output", saved.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), "alpha");
    let out = host(data.path(), &["items", "upload", "probe", "inbox", "/does/not/exist"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/does/not/exist: no such file or folder"), "{}", text(&out.stderr));

    // A failing call leaves a failed execution, listed with its logs.
    let hello = manifest(HELLO);
    host(data.path(), &["call", "-f", hello.to_str().unwrap(), "hello.greet", r#"[{"name": "", "age": 1}]"#]);
    let out = host(data.path(), &["executions", "--status", "failed", "--json"]);
    let record: Value = serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(
        (record["function"].clone(), record["error"]["code"].clone()),
        (json!("hello.greet"), json!("guest-error"))
    );
    let out = host(data.path(), &["executions"]);
    let table = text(&out.stdout);
    assert!(table.contains("hello/hello.greet") && table.contains("failed"), "{table}");
    // Every row's cells start under their headers, however long the names.
    let header = table.lines().next().unwrap();
    for (column, column_at) in ["STATUS", "FUNCTION", "TRIGGER"].map(|c| (c, header.find(c).unwrap())) {
        for line in table.lines().skip(1) {
            let before = &line[..column_at];
            assert!(before.ends_with("  ") && !line[column_at..].starts_with(' '), "{column} in {table}");
        }
    }
    let out = host(data.path(), &["logs", record["id"].as_str().unwrap(), "--follow"]);
    assert!(text(&out.stderr).contains("--follow needs --remote"), "{}", text(&out.stderr));
}

#[test]
fn async_calls_return_an_execution_id_to_follow() {
    let data = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(data.path(), None, &[HELLO]);
    let url = server.url();
    let args = r#"{"who": {"name": "Ada", "age": 36}}"#;
    let out = host(data.path(), &["call", "--remote", &url, "--async", "hello.greet", args]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let started: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(started["status"], "queued");
    let id = started["id"].as_str().unwrap();
    // `logs --follow` returns once the job is over; then its record holds the result.
    let out = host(data.path(), &["logs", "--remote", &url, id, "--follow"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = host(data.path(), &["executions", "--remote", &url, "--trigger", "async", "--json"]);
    let record: Value = serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!((record["id"].as_str(), &record["status"]), (Some(id), &json!("succeeded")));
    assert_eq!(record["output"], "Hello, Ada! You are 36.");
    let out = host(data.path(), &["call", "--async", "hello.greet", args]);
    assert_eq!(out.status.code(), Some(2), "--async needs --remote");
    drop(server);
}

#[test]
fn a_bad_or_unreachable_backend_is_named() {
    let data = tempfile::tempdir().unwrap();
    let hello = crate::common::manifest(crate::common::HELLO);
    let call =
        |backend: &str| host(data.path(), &["--backend", backend, "call", "-f", hello.to_str().unwrap(), "hello.noop"]);
    let bad = call("redis://127.0.0.1:6379");
    assert_eq!(bad.status.code(), Some(2), "bad input");
    assert!(
        text(&bad.stderr).contains("backend `redis://127.0.0.1:6379`: expected `nats://HOST:PORT"),
        "{}",
        text(&bad.stderr)
    );
    assert_eq!(call("nats://127.0.0.1").status.code(), Some(2));
    // Nothing listens on port 1: the error names the address, and nothing was written.
    let unreachable = call("nats://127.0.0.1:1");
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(
        text(&unreachable.stderr).contains("cannot connect to NATS at nats://127.0.0.1:1"),
        "{}",
        text(&unreachable.stderr)
    );
    assert!(!data.path().join("db").exists(), "no embedded store was opened");
}

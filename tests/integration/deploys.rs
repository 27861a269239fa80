//! Deploys to a running `host serve` (a real process): `host deploy`, versions, rollback,
//! removal, a restart keeping the deployed set, bad bundles changing nothing, calls and triggered
//! events carrying on across swaps.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::cli::text;
use crate::common::{COUNTER, HELLO, MESSAGING, ServeProcess, manifest};
use crate::server::send;

/// `host ARGS` against `server`.
fn host(server: &ServeProcess, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host")).args(args).env("HOST_REMOTE", server.url()).output().unwrap()
}

fn deploy(server: &ServeProcess, manifest: &Path) -> Output {
    host(server, &["deploy", "-f", manifest.to_str().unwrap(), "--no-build"])
}

/// A copy of the manifest `relative` in `dir`, its `source` paths made absolute and `edit`
/// applied to its text: another version of the same app.
fn variant(dir: &Path, relative: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let original = manifest(relative);
    let base = original.parent().unwrap();
    let text = std::fs::read_to_string(&original).unwrap();
    let text: String = text
        .lines()
        .map(|line| match line.strip_prefix("source = \"") {
            Some(rest) => format!("source = \"{}\"\n", base.join(rest.trim_end_matches('"')).display()),
            None if line.starts_with("build") => String::new(),
            None => format!("{line}\n"),
        })
        .collect();
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("host.toml");
    std::fs::write(&path, edit(text)).unwrap();
    path
}

fn greet(server: &ServeProcess) -> (u16, Value) {
    let answer = send(
        server.addr,
        "POST",
        "/v1/apps/hello/functions/hello.greet",
        &[],
        br#"{"who": {"name": "Ada", "age": 36}}"#,
    );
    (answer.status, answer.json())
}

fn functions(server: &ServeProcess, app: &str) -> Vec<String> {
    let answer = send(server.addr, "GET", &format!("/v1/apps/{app}"), &[], b"");
    answer.json()["functions"].as_array().into_iter().flatten().map(|f| f["name"].as_str().unwrap().into()).collect()
}

#[test]
fn deploy_versions_rollback_restart_and_remove() {
    let data = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(data.path(), None, &[]);
    assert_eq!(send(server.addr, "GET", "/v1/apps/hello", &[], b"").code(), (404, "unknown-app".into()));

    let out = deploy(&server, &manifest(HELLO));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("hello version 1 deployed (sha256:"), "{}", text(&out.stdout));
    assert_eq!(greet(&server), (200, json!("Hello, Ada! You are 36.")));
    // The same bundle again changes nothing.
    let out = deploy(&server, &manifest(HELLO));
    assert!(text(&out.stdout).starts_with("hello version 1 already running"), "{}", text(&out.stdout));

    // Version 2: another component under the same name; new calls get it at once.
    let other = variant(&data.path().join("v2"), COUNTER, |t| t.replace("name = \"counter\"", "name = \"hello\""));
    let out = deploy(&server, &other);
    assert!(text(&out.stdout).starts_with("hello version 2 deployed"), "{}", text(&out.stderr));
    let now = functions(&server, "hello");
    assert!(now.contains(&"counter.increment".into()) && !now.contains(&"hello.greet".into()), "{now:?}");
    assert_eq!(greet(&server).0, 404);

    let listed = send(server.addr, "GET", "/v1/apps/hello/versions", &[], b"").json();
    assert_eq!(listed["running"], 2);
    let numbers: Vec<&Value> = listed["versions"].as_array().unwrap().iter().map(|v| &v["version"]).collect();
    assert_eq!(numbers, [2, 1]);
    let table = text(&host(&server, &["versions", "hello"]).stdout);
    let running: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(running[..2], ["*", "2"], "{table}");
    assert!(running[2].starts_with("sha256:"), "{table}");

    let out = host(&server, &["rollback", "hello"]);
    assert_eq!(text(&out.stdout).split(" (").next().unwrap(), "hello version 1 running", "{}", text(&out.stderr));
    assert_eq!(greet(&server), (200, json!("Hello, Ada! You are 36.")));
    let out = host(&server, &["rollback", "hello", "7"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("app `hello` has no version 7; it has 1, 2"), "{}", text(&out.stderr));
    let out = host(&server, &["rollback", "hello"]);
    assert!(text(&out.stderr).contains("no version before the current one"), "{}", text(&out.stderr));

    // The deployed set survives a restart: version 1 (rolled back to) runs again.
    drop(server);
    let server = ServeProcess::start(data.path(), None, &[]);
    assert_eq!(greet(&server), (200, json!("Hello, Ada! You are 36.")));
    assert_eq!(send(server.addr, "GET", "/v1/apps/hello/versions", &[], b"").json()["running"], 1);

    // Removal: the app is gone with its versions.
    let out = host(&server, &["undeploy", "hello"]);
    assert_eq!(text(&out.stdout), "hello removed; its data stays\n", "{}", text(&out.stderr));
    assert_eq!(greet(&server).0, 404);
    let gone = send(server.addr, "GET", "/v1/apps/hello/versions", &[], b"");
    assert_eq!(gone.code(), (404, "not-deployed".into()));
    assert!(!data.path().join("deployments/hello").exists(), "the unpacked bundles are deleted");
}

#[test]
fn bad_bundles_and_clashes_change_nothing() {
    let data = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(data.path(), None, &[COUNTER]);
    assert!(deploy(&server, &manifest(HELLO)).status.success());

    let garbage = send(server.addr, "PUT", "/v1/apps/hello", &[], b"not a tar");
    assert_eq!(garbage.code(), (400, "bad-bundle".into()), "{}", garbage.text());
    // A bundle for another app than the path names.
    let bundle = host::deploy::Bundle::pack(&manifest(HELLO)).unwrap();
    let wrong = send(server.addr, "PUT", "/v1/apps/other", &[], bundle.bytes());
    assert_eq!(wrong.code(), (400, "wrong-app".into()));
    assert_eq!(wrong.json()["message"], "the bundle holds app `hello`, not `other`");

    // A component that is not Wasm: refused at compile time, version 1 keeps serving.
    let dir = data.path().join("broken");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("broken.wasm"), b"\0asm garbage").unwrap();
    std::fs::write(dir.join("host.toml"), "[app]\nname = \"hello\"\n\n[function.hello]\nsource = \"broken.wasm\"\n")
        .unwrap();
    let out = deploy(&server, &dir.join("host.toml"));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("load-failed (422): app `hello` does not load"), "{}", text(&out.stderr));
    assert_eq!(greet(&server), (200, json!("Hello, Ada! You are 36.")));
    let listed = send(server.addr, "GET", "/v1/apps/hello/versions", &[], b"").json();
    assert_eq!(listed["versions"].as_array().unwrap().len(), 1, "{listed}");

    // An app served from a file is not replaced by a deploy.
    let out = deploy(&server, &manifest(COUNTER));
    assert!(text(&out.stderr).contains("app-from-file (409): app `counter` is served from the manifest"));
    let delete = send(server.addr, "DELETE", "/v1/apps/counter", &[], b"");
    assert_eq!(delete.code(), (409, "app-from-file".into()));
    assert_eq!(send(server.addr, "DELETE", "/v1/apps/nope", &[], b"").code(), (404, "not-deployed".into()));
}

/// Calls keep being answered, and triggered events run exactly once, while the app is swapped
/// back and forth under them.
#[test]
fn swaps_under_load_fail_no_call_and_lose_or_double_no_event() {
    let data = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(data.path(), None, &[]);
    assert!(deploy(&server, &manifest(HELLO)).status.success());
    assert!(deploy(&server, &manifest(MESSAGING)).status.success());
    let hello2 = variant(&data.path().join("hello2"), HELLO, |t| t + "limits = { timeout = \"9s\" }\n");
    let messaging2 =
        variant(&data.path().join("messaging2"), MESSAGING, |t| t.replace("timeout = \"10s\"", "timeout = \"9s\""));

    let stop = std::sync::atomic::AtomicBool::new(false);
    let (calls, events) = std::thread::scope(|scope| {
        let callers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let mut statuses = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        statuses.push(greet(&server).0);
                    }
                    statuses
                })
            })
            .collect();
        let publisher = scope.spawn(|| {
            let mut ids = Vec::new();
            for i in 0..60 {
                let path = format!("/v1/apps/messaging/topics/news?n={i}");
                let answer = send(server.addr, "POST", &path, &[], b"payload");
                assert_eq!(answer.status, 201, "{}", answer.text());
                ids.push(answer.json()["id"].as_str().unwrap().to_string());
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            ids
        });
        for round in 0..4 {
            let (h, m) = if round % 2 == 0 { (&hello2, &messaging2) } else { (&manifest(HELLO), &manifest(MESSAGING)) };
            assert!(deploy(&server, h).status.success());
            assert!(deploy(&server, m).status.success());
        }
        let events = publisher.join().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let calls: Vec<u16> = callers.into_iter().flat_map(|c| c.join().unwrap()).collect();
        (calls, events)
    });
    assert!(calls.len() > 20, "{}", calls.len());
    assert!(
        calls.iter().all(|&s| s == 200),
        "failed calls during swaps: {:?}",
        calls.iter().filter(|&&s| s != 200).count()
    );
    let listed = send(server.addr, "GET", "/v1/apps/messaging/versions", &[], b"").json();
    assert_eq!(listed["versions"].as_array().unwrap().len(), 5, "{listed}");
    // Every event ran `on-event-a` exactly once (its run counts `a/ID` in the store `seen`).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for id in &events {
        let path = format!("/v1/apps/messaging/kv/seen/a/{id}");
        loop {
            let answer = send(server.addr, "GET", &path, &[], b"");
            if answer.status == 200 {
                assert_eq!(answer.body, 1i64.to_le_bytes(), "event {id} ran more than once");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "event {id} never ran: {}", answer.text());
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// With the NATS backend a deploy, a rollback and a removal through one node reach every node,
/// and a node started later with an empty data dir fetches the bundles it runs from the cluster.
#[test]
fn a_deploy_through_one_node_reaches_every_node_of_a_cluster() {
    use host::storage::nats::cluster::{LocalCluster, nats_server};
    let dir = tempfile::tempdir().unwrap();
    let nats = LocalCluster::start(&nats_server().unwrap(), dir.path(), 3).unwrap();
    let backend = nats.backend();
    let data: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let node = |i: usize| ServeProcess::start_with(data[i].path(), None, &[], &["--backend", &backend]);
    let nodes: Vec<ServeProcess> = (0..3).map(node).collect();
    let on_every_node = |what: &str, check: &dyn Fn(&ServeProcess) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !nodes.iter().all(check) {
            assert!(std::time::Instant::now() < deadline, "not on every node after 30 s: {what}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };

    assert!(deploy(&nodes[0], &manifest(HELLO)).status.success());
    on_every_node("hello v1", &|n| greet(n) == (200, json!("Hello, Ada! You are 36.")));
    let other = variant(&dir.path().join("v2"), COUNTER, |t| t.replace("name = \"counter\"", "name = \"hello\""));
    assert!(deploy(&nodes[2], &other).status.success());
    on_every_node("hello v2", &|n| functions(n, "hello").contains(&"counter.increment".into()));
    let versions = send(nodes[1].addr, "GET", "/v1/apps/hello/versions", &[], b"").json();
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2, "{versions}");

    assert!(host(&nodes[1], &["rollback", "hello", "1"]).status.success());
    on_every_node("the rollback to v1", &|n| greet(n).0 == 200);
    let late = node(3);
    assert_eq!(greet(&late), (200, json!("Hello, Ada! You are 36.")), "a new node runs the deployed set at once");

    assert!(host(&nodes[0], &["undeploy", "hello"]).status.success());
    on_every_node("the removal", &|n| greet(n).0 == 404);
}

/// `host serve --watch`: a change of a build input rebuilds and reloads the app; a manifest that
/// does not parse or a build that fails is reported and the running version keeps serving.
#[test]
fn watch_rebuilds_and_reloads_and_keeps_the_old_version_on_failure() {
    let data = tempfile::tempdir().unwrap();
    let app = data.path().join("live");
    std::fs::create_dir_all(&app).unwrap();
    let wasm =
        |name: &str| manifest(HELLO).parent().unwrap().join(format!("../../target/wasm32-wasip2/release/{name}.wasm"));
    manifest(COUNTER);
    std::fs::copy(wasm("hello"), app.join("input.wasm")).unwrap();
    let good = "[app]\nname = \"live\"\n\n[function.hello]\nsource = \"app.wasm\"\nbuild = \"cp input.wasm app.wasm\"\nbuild-inputs = [\"input.wasm\"]\n";
    std::fs::write(app.join("host.toml"), good).unwrap();
    let server =
        ServeProcess::start_with(data.path(), None, &[], &["--watch", "-f", app.join("host.toml").to_str().unwrap()]);
    assert!(functions(&server, "live").contains(&"hello.greet".into()), "built (cp) at start");
    let log = || std::fs::read_to_string(data.path().join("serve.log")).unwrap();
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "waited 30 s for {what}; log:\n{}", log());
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };

    // Another component as the build input: rebuilt (copied) and swapped in.
    std::fs::copy(wasm("counter"), app.join("input.wasm")).unwrap();
    wait("the reload", &|| functions(&server, "live").contains(&"hello.increment".into()));

    // A manifest that does not parse: reported, the running version keeps serving.
    std::fs::write(app.join("host.toml"), "[app\nname = \"live\"\n").unwrap();
    wait("the parse error", &|| log().contains("not reloaded, the running version keeps serving: invalid manifest"));
    assert!(functions(&server, "live").contains(&"hello.increment".into()));

    // A failing build: reported, and still the same version.
    std::fs::write(app.join("host.toml"), good.replace("cp input.wasm app.wasm", "exit 3")).unwrap();
    std::fs::copy(wasm("hello"), app.join("input.wasm")).unwrap();
    wait("the build failure", &|| log().contains("build command `exit 3` (function `hello`) failed"));
    assert!(functions(&server, "live").contains(&"hello.increment".into()));

    // Fixed: rebuilt from the current input.
    std::fs::write(app.join("host.toml"), good).unwrap();
    wait("the reload after the fix", &|| functions(&server, "live").contains(&"hello.greet".into()));
}

/// Removal keeps the app's data for a later deploy of the same name; `--purge` deletes what its
/// stores, buckets and datasets hold.
#[test]
fn removal_keeps_the_data_unless_purged() {
    let data = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(data.path(), None, &[]);
    let call = |export: &str, args: &str| {
        let answer =
            send(server.addr, "POST", &format!("/v1/apps/counter/functions/counter.{export}"), &[], args.as_bytes());
        (answer.status, answer.json())
    };
    assert!(deploy(&server, &manifest(COUNTER)).status.success());
    assert_eq!(call("increment", r#"["visits", 5]"#), (200, json!(5)));
    assert_eq!(call("save-note", r#"["a", "kept"]"#).0, 200);

    assert!(host(&server, &["undeploy", "counter"]).status.success());
    assert!(deploy(&server, &manifest(COUNTER)).status.success());
    assert_eq!(call("increment", r#"["visits", 1]"#), (200, json!(6)), "the store outlived the removal");

    let out = host(&server, &["undeploy", "counter", "--purge"]);
    assert_eq!(text(&out.stdout), "counter removed; deleted 1 keys, 1 objects, 0 items\n", "{}", text(&out.stderr));
    assert!(deploy(&server, &manifest(COUNTER)).status.success());
    assert_eq!(call("increment", r#"["visits", 1]"#), (200, json!(1)), "the store was emptied");
    assert_eq!(call("read-note", r#"["a"]"#).0, 422, "the bucket was emptied");
}

/// `host push` to a registry on loopback, then `host deploy REFERENCE`: the server runs the
/// bundle pulled from the registry, byte for byte the one pushed.
#[test]
fn a_bundle_pushed_to_a_registry_deploys_from_there() {
    let registry = crate::registry::Registry::start();
    let reference = registry.reference("apps/hello:v1");
    let data = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(data.path(), None, &[]);
    let pushed = host(&server, &["push", &reference, "-f", manifest(HELLO).to_str().unwrap(), "--no-build"]);
    assert!(pushed.status.success(), "{}", text(&pushed.stderr));
    let out = host(&server, &["deploy", &reference]);
    assert!(text(&out.stdout).starts_with("hello version 1 deployed (sha256:"), "{}", text(&out.stderr));
    assert_eq!(greet(&server), (200, json!("Hello, Ada! You are 36.")));
    let digest = host::deploy::Bundle::pack(&manifest(HELLO)).unwrap().digest().to_string();
    let listed = send(server.addr, "GET", "/v1/apps/hello/versions", &[], b"").json();
    assert_eq!(listed["versions"][0]["digest"], digest);
    let missing = host(&server, &["deploy", &registry.reference("apps/hello:nope")]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("apps/hello:nope"), "{}", text(&missing.stderr));
}

/// A call in flight when its app is swapped finishes on the version it started on; the next
/// call gets the new version.
#[test]
fn a_call_in_flight_finishes_on_the_version_it_started_on() {
    let data = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(data.path(), None, &[]);
    let wasm =
        manifest(crate::common::HOSTILE).parent().unwrap().join("../../../target/wasm32-wasip2/release/hostile.wasm");
    let version = |function: &str| {
        let dir = data.path().join(function);
        std::fs::create_dir_all(&dir).unwrap();
        let text = format!(
            "[app]\nname = \"naps\"\n\n[function.{function}]\nsource = \"{}\"\nlimits = {{ timeout = \"10s\" }}\n",
            wasm.display()
        );
        std::fs::write(dir.join("host.toml"), text).unwrap();
        dir.join("host.toml")
    };
    assert!(deploy(&server, &version("old")).status.success());
    std::thread::scope(|scope| {
        let in_flight = scope.spawn(|| send(server.addr, "POST", "/v1/apps/naps/functions/old.nap", &[], b"[8000]"));
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert!(deploy(&server, &version("new")).status.success());
        assert!(!in_flight.is_finished(), "the deploy waited for the call in flight");
        let gone = send(server.addr, "POST", "/v1/apps/naps/functions/old.nap", &[], b"[1]");
        assert_eq!(gone.code(), (404, "unknown-function".into()));
        assert_eq!(in_flight.join().unwrap().status, 200, "the call in flight was cut off");
    });
    assert_eq!(send(server.addr, "POST", "/v1/apps/naps/functions/new.nap", &[], b"[1]").status, 200);
}

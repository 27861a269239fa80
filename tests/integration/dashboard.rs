//! The dashboard (`/ui`) and docs page (`/docs`) in headless Chromium: `tests/ui/dashboard.mjs`
//! (Playwright, pinned in `tests/ui/package.json`) enters the token, calls `hello.greet` from the
//! form, checks the result, an argument error, the recent calls and the last hour's charts,
//! pauses and resumes an app, lists a deployed app's versions, reads the queues' counts, opens an image item with its
//! box annotation drawn on top, checks that a page served by a route cannot read the dashboard's
//! credential, opens an item's execution and follows its logs live until it ends, filters the
//! executions, and saves screenshots to `target/ui/dashboard.png`, `target/ui/dashboard-items.png`
//! and `target/ui/dashboard-executions.png`. Debian's `chromium` is installed when missing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use host::server::ServerConfig;

use crate::common::{COUNTER, HELLO, HELLO_HTTP, KV, MESSAGING, PROBE, manifest, root};
use crate::server::{send, serve_apps};

pub fn run(command: &mut Command) {
    let status = command.status().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(status.success(), "{command:?} failed: {status}");
}

/// Chromium's path: `$CHROMIUM`, else Debian's, installed with apt when missing.
pub fn chromium() -> String {
    if let Ok(path) = std::env::var("CHROMIUM") {
        return path;
    }
    if !Path::new("/usr/bin/chromium").exists() {
        run(Command::new("apt-get").args(["update", "-qq"]));
        run(Command::new("apt-get").args(["install", "-y", "-qq", "--no-install-recommends", "chromium"]));
    }
    "/usr/bin/chromium".into()
}

/// `tests/ui`, with playwright-core installed (pinned by its package-lock.json).
pub fn playwright() -> std::path::PathBuf {
    let ui = root().join("tests/ui");
    if !ui.join("node_modules/playwright-core").exists() {
        run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&ui));
    }
    ui
}

#[test]
fn dashboard_calls_a_function_from_the_browser() {
    drive_the_dashboard(Some("dashboard-token"));
}

/// Without a token (on loopback) the page needs no login and every view works the same.
#[test]
fn the_dashboard_works_without_a_token_on_loopback() {
    drive_the_dashboard(None);
}

/// Serve the apps (with `token` when given), add an annotated image and a deployed app, and
/// run `tests/ui/dashboard.mjs` through every view; screenshots are named after the mode.
fn drive_the_dashboard(token: Option<&str>) {
    let ui = playwright();
    let chromium = chromium();
    let config = ServerConfig { token: token.map(str::to_string), ..ServerConfig::default() };
    let server = serve_apps(&[HELLO, COUNTER, HELLO_HTTP, PROBE, MESSAGING], config, Duration::from_secs(5));
    // An image with a box annotation for the items view.
    let auth: Vec<String> = token.iter().map(|t| format!("Authorization: Bearer {t}")).collect();
    let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
    let png = std::fs::read(root().join("tests/data/low-contrast.png")).unwrap();
    let items = "/v1/apps/probe/datasets/inbox/items";
    let uploaded = send(
        server.addr,
        "POST",
        &format!("{items}?dir=/photos&name=face.png"),
        &[auth.as_slice(), &["Content-Type: image/png"]].concat(),
        &png,
    );
    let item = uploaded.json()["id"].as_str().expect("uploaded").to_string();
    let face = r#"[{"geometry": {"box": {"left": 20, "top": 20, "right": 120, "bottom": 90}}, "label": "face", "confidence": 0.9}]"#;
    assert_eq!(send(server.addr, "POST", &format!("{items}/{item}/annotations"), &auth, face.as_bytes()).status, 201);
    // Two messages waiting in a queue no trigger reads, and a dead letter: `short` gives up
    // after two deliveries, and the receive after those moves the message to `short.dead`.
    let queues = "/v1/apps/messaging/queues";
    for body in ["one", "two"] {
        assert_eq!(send(server.addr, "POST", &format!("{queues}/direct"), &auth, body.as_bytes()).status, 201);
    }
    // One of them leased (for the view's leased column).
    let leased = send(server.addr, "POST", &format!("{queues}/direct/receive?visibility=10m"), &auth, b"");
    assert_eq!(leased.json().as_array().map(Vec::len), Some(1), "{}", leased.text());
    for body in ["to requeue", "to delete"] {
        assert_eq!(send(server.addr, "POST", &format!("{queues}/short"), &auth, body.as_bytes()).status, 201);
    }
    for _ in 0..3 {
        let received = send(server.addr, "POST", &format!("{queues}/short/receive?max=10&visibility=1ms"), &auth, b"");
        assert_eq!(received.status, 200, "{}", received.text());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(send(server.addr, "GET", &format!("{queues}/short.dead"), &auth, b"").json()["ready"], 2);
    // A deployed app, for the apps panel's version and its list of versions.
    let mut deploy = Command::new(env!("CARGO_BIN_EXE_host"));
    deploy.args(["deploy", "-f", manifest(KV).to_str().unwrap(), "--no-build"]);
    deploy.env("HOST_REMOTE", format!("http://{}", server.addr)).env_remove("HOST_TOKEN");
    if let Some(token) = token {
        deploy.env("HOST_TOKEN", token);
    }
    let deployed = deploy.output().unwrap();
    assert!(deployed.status.success(), "{}", String::from_utf8_lossy(&deployed.stderr));
    let name = if token.is_some() { "dashboard" } else { "dashboard-open" };
    let screenshot = root().join(format!("target/ui/{name}.png"));
    let items_screenshot = root().join(format!("target/ui/{name}-items.png"));
    let executions_screenshot = root().join(format!("target/ui/{name}-executions.png"));
    let queues_screenshot = root().join(format!("target/ui/{name}-queues.png"));
    let shots = [&screenshot, &items_screenshot, &executions_screenshot, &queues_screenshot];
    for shot in shots {
        let _ = std::fs::remove_file(shot);
    }
    let mut node = Command::new("node");
    node.arg(ui.join("dashboard.mjs")).arg(format!("http://{}", server.addr)).arg(&screenshot).args(token);
    node.env("CHROMIUM", chromium).env("ITEMS_APP", "probe/inbox").env("ITEMS_ITEM", &item);
    if token.is_some() {
        // Only a logged-in page has a credential for a route's page to look for.
        node.env("ROUTE_PAGE", "/hello?name=Ada");
    }
    let out = node.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    assert_eq!(summary["result"], "Hello, Ada! You are 36.");
    assert_eq!(summary["error"], "bad-argument");
    assert_eq!(summary["token"], token.is_some());
    let readable = if token.is_some() { serde_json::json!(false) } else { serde_json::Value::Null };
    assert_eq!(summary["credentialReadable"], readable, "a route page of the same origin could read the credential");
    assert!(summary["items"].as_u64().unwrap() >= 1, "{summary}");
    assert!(summary["executions"].as_u64().unwrap() >= 1, "{summary}");
    assert!(summary["charted"].as_u64().unwrap() >= 1, "the chart counts the form's call: {summary}");
    assert_eq!(summary["deployed"], "version 1 running", "{summary}");
    assert_eq!(summary["queues"], serde_json::json!({ "direct": 1, "directLeased": 1, "shortDead": 2 }), "{summary}");
    // One dead letter was requeued from the page, the other deleted.
    let short = send(server.addr, "GET", &format!("{queues}/short/messages"), &auth, b"").json();
    assert_eq!(short.as_array().unwrap().len(), 1, "{short}");
    assert_eq!(short[0]["body"], "dG8gcmVxdWV1ZQ==", "`to requeue`, base64: {short}");
    let dead = send(server.addr, "GET", &format!("{queues}/short.dead/messages"), &auth, b"").json();
    assert_eq!(dead, serde_json::json!([]));
    let unknown = send(server.addr, "POST", &format!("{queues}/short.dead/messages/ffff/requeue"), &auth, b"");
    assert_eq!(unknown.code(), (404, "no-such-message".into()));
    let id = short[0]["id"].as_str().unwrap();
    let not_dead = send(server.addr, "POST", &format!("{queues}/short/messages/{id}/requeue"), &auth, b"");
    assert_eq!(not_dead.code(), (400, "bad-argument".into()));
    assert!(not_dead.text().contains("is not a dead-letter queue"), "{}", not_dead.text());
    for shot in shots {
        let png = std::fs::read(shot).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "{} is not a real PNG", shot.display());
    }
}

//! `host new`: every template's app is written into a temp dir, built with `host build` (sharing
//! the workspace's cargo target dir, so that Rust dependencies are not rebuilt), loaded and
//! called; and bad input is refused with nothing written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use host::server::ServerConfig;
use serde_json::json;

use crate::common::{host, root, running};

/// `host ARGS` in `dir`, with the workspace's target dir for cargo.
fn host_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host"))
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", root().join("target"))
        .args(args)
        .output()
        .unwrap()
}

/// `host new TEMPLATE NAME` in a temp dir (the repository found through `--repo`), then
/// `host build`; returns the temp dir and the app's manifest.
fn generated(template: &str, name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let repo = root();
    let new = host_in(dir.path(), &["new", template, name, "--repo", repo.to_str().unwrap()]);
    assert!(new.status.success(), "host new: {}", String::from_utf8_lossy(&new.stderr));
    let manifest = dir.path().join(name).join("host.toml");
    let build = host_in(dir.path(), &["build", "-f", manifest.to_str().unwrap()]);
    assert!(build.status.success(), "host build: {}", String::from_utf8_lossy(&build.stderr));
    (dir, manifest)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rust_template_counts_and_greets_with_its_configured_greeting() {
    let (_dir, manifest) = generated("rust", "tpl-rust");
    let (_data, host) = host();
    let app = host.load(&manifest).unwrap();
    let function = app.function("tpl-rust.count").unwrap();
    assert_eq!(function.call(json!({ "key": "visits", "by": 2 })).await.unwrap(), json!(2));
    assert_eq!(function.call(json!(["visits", 3])).await.unwrap(), json!(5));
    let greet = app.function("tpl-rust.greet").unwrap();
    assert_eq!(greet.call(json!({ "name": "Ada" })).await.unwrap(), json!("Hello from tpl-rust, Ada!"));
}

#[test]
fn the_http_template_answers_on_its_route() {
    let (_dir, manifest) = generated("http", "tpl-http");
    let server =
        crate::server::serve_apps(&[manifest.to_str().unwrap()], ServerConfig::default(), Duration::from_secs(5));
    let answer = crate::server::send(server.addr, "GET", "/tpl-http?name=Ada", &[], b"");
    assert_eq!((answer.status, answer.text()), (200, "Hello, Ada!\n".to_string()));
    let answer = crate::server::send(server.addr, "GET", "/tpl-http", &[], b"");
    assert_eq!((answer.status, answer.text()), (200, "Hello, world!\n".to_string()));
}

/// The Python and JavaScript templates export the same functions with the same answers.
async fn greets_and_adds(template: &str, name: &str) {
    let (_dir, manifest) = generated(template, name);
    let (_data, host) = host();
    let app = host.load(&manifest).unwrap();
    let greet = app.function(&format!("{name}.greet")).unwrap();
    assert_eq!(greet.call(json!({ "name": "Ada" })).await.unwrap(), json!("Hello, Ada!"));
    let add = app.function(&format!("{name}.add")).unwrap();
    assert_eq!(add.call(json!([2, 3])).await.unwrap(), json!(5));
    match add.call(json!([2147483647, 1])).await {
        Err(host::Error::Call(host::CallError::Guest { value })) => {
            assert_eq!(value, json!("2147483647 + 1 does not fit in an s32"));
        }
        other => panic!("expected the guest's error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_template_greets_and_adds() {
    greets_and_adds("python", "tpl-python").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_js_template_greets_and_adds() {
    greets_and_adds("js", "tpl-js").await;
}

#[test]
fn the_item_trigger_template_annotates_each_uploaded_item_with_its_mimetype_type() {
    let (_dir, manifest) = generated("item-trigger", "tpl-items");
    let r = running(&[manifest.to_str().unwrap()]);
    let inbox = r.runtime.block_on(r.host.dataset("tpl-items", "inbox")).unwrap();
    let item = r.runtime.block_on(inbox.upload("/", "notes.txt", None, b"hello", None, None)).unwrap();
    let started = Instant::now();
    let annotations = loop {
        let annotations = r.runtime.block_on(inbox.annotations(&item.id)).unwrap();
        if !annotations.is_empty() {
            break annotations;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no annotation on {item:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let [annotation] = annotations.as_slice() else { panic!("one annotation expected: {annotations:#?}") };
    assert_eq!(annotation.label, "text");
    assert_eq!(annotation.model.as_deref(), Some("tpl-items"));
    assert_eq!(annotation.geometry, host::storage::datasets::Geometry::Classification);
}

#[test]
fn bad_templates_names_and_folders_are_refused_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let repo = root();
    let repo = repo.to_str().unwrap();

    let list = host_in(dir.path(), &["new", "--list"]);
    let listed: Vec<String> = String::from_utf8(list.stdout)
        .unwrap()
        .lines()
        .map(|line| line.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(listed, ["rust", "http", "python", "js", "item-trigger"]);

    let unknown = host_in(dir.path(), &["new", "go", "app", "--repo", repo]);
    assert!(!unknown.status.success());
    assert_eq!(
        String::from_utf8_lossy(&unknown.stderr),
        "error: unknown template \"go\"; the templates are: rust, http, python, js, item-trigger\n"
    );

    let bad_name = host_in(dir.path(), &["new", "rust", "My_App", "--repo", repo]);
    assert_eq!(
        String::from_utf8_lossy(&bad_name.stderr),
        "error: invalid app name \"My_App\": a lowercase letter, then lowercase letters, digits and `-`\n"
    );

    std::fs::create_dir(dir.path().join("taken")).unwrap();
    std::fs::write(dir.path().join("taken/keep.txt"), "mine").unwrap();
    let taken = host_in(dir.path(), &["new", "rust", "app", "--dir", "taken", "--repo", repo]);
    assert_eq!(String::from_utf8_lossy(&taken.stderr), "error: taken exists and is not empty; nothing written\n");
    let entries: Vec<_> =
        std::fs::read_dir(dir.path().join("taken")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, ["keep.txt"]);

    let nowhere = host_in(dir.path(), &["new", "rust", "app"]);
    assert!(String::from_utf8_lossy(&nowhere.stderr).starts_with("error: no host repository"));
    assert!(!dir.path().join("app").exists());

    // An empty folder is fine; the files are listed as written.
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let written = host_in(dir.path(), &["new", "python", "app", "--dir", "empty", "--repo", repo]);
    assert_eq!(
        String::from_utf8_lossy(&written.stdout),
        "empty/host.toml\nempty/app.py\nempty/wit/world.wit\nempty/README.md\n"
    );
}

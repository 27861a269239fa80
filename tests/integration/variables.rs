//! `[variables]`: values from the environment, the secrets file or defaults reach guests through
//! `wasi:config`, a required variable without a value stops the load, a secrets file others can
//! read is refused, and a secret's value appears nowhere the host shows or writes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use host::manifest::Manifest;
use host::{Error, Host, VariableError};
use serde_json::{Value, json};

use crate::cli::text;
use crate::common::{COUNTER, ServeProcess, compiled_cache, manifest};
use crate::server::send;

/// The secret every test hides: distinctive, so that finding it anywhere is no accident.
const SECRET: &str = "s3cr3t-Vz8qK2wP";

/// An app of two functions of the counter example: `reader` returns its `greeting` (built from
/// the secret `token` and `greeting_text`), so a call shows what the guest read; `counter` has
/// the secret in its config too, and its calls are recorded. `reader`'s calls are not recorded:
/// what a guest returns is its own, and it returns the secret on purpose.
fn app_manifest(dir: &Path) -> PathBuf {
    let counter = Manifest::load(manifest(COUNTER)).unwrap();
    let source = counter.functions["counter"].source.canonicalize().unwrap();
    let text = format!(
        r#"[app]
name = "vault"

[variables]
token = {{ required = true, secret = true }}
greeting_text = {{ default = "Hello" }}

[function.reader]
source = "{source}"
record = "none"
config = {{ greeting = "{{{{ greeting_text }}}}, {{{{token}}}}!" }}

[function.counter]
source = "{source}"
grants = {{ kv = ["default"] }}
config = {{ greeting = "{{{{ token }}}}", plain = "visible" }}
"#,
        source = source.display()
    );
    let path = dir.join("host.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A secrets file in `dir` holding `text`, with permission bits `mode`.
fn secrets_file(dir: &Path, text: &str, mode: u32) -> PathBuf {
    let path = dir.join("secrets.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// `host` with `args` on data dir `data`, with the extra environment `env`.
fn cli(data: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_host"));
    // Only what the test gives: none of the variables of the test process's own environment.
    for name in ["HOST_SECRETS", "HOST_VAR_TOKEN", "HOST_VAR_GREETING_TEXT"] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied()).arg("--data").arg(data).arg("--cache").arg(compiled_cache());
    command.args(args).output().unwrap()
}

#[test]
fn a_secret_reaches_the_guest_and_no_listing_record_log_metric_or_error() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_manifest(dir.path());
    let secrets = secrets_file(dir.path(), &format!("token = \"{SECRET}\"\nunused = \"x\"\n"), 0o600);
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let server = ServeProcess::start_in_env(
        &data,
        None,
        &[app.to_str().unwrap()],
        &["--secrets", secrets.to_str().unwrap()],
        &[("HOST_LOG", "info,host=trace")],
    );
    let addr = server.addr;
    let call = |function: &str, body: &str| {
        send(addr, "POST", &format!("/v1/apps/vault/functions/{function}"), &[], body.as_bytes())
    };

    // The guest read it: the one place it may appear is what the guest itself returns.
    let read = call("reader.greeting", "[]");
    assert_eq!((read.status, read.json()), (200, json!(format!("Hello, {SECRET}!"))));
    // Recorded calls of a function whose config holds it: a success, a guest error, a bad argument.
    assert_eq!(call("counter.increment", r#"["visits", 2]"#).json(), json!(2));
    assert_eq!(call("counter.config-value", r#"["plain"]"#).json(), json!("visible"));
    let denied = call("counter.open-store", r#"["elsewhere"]"#);
    assert_eq!(denied.code(), (422, "guest-error".into()), "{}", denied.text());
    let bad = call("counter.increment", r#"["visits", "two"]"#);
    assert_eq!(bad.code(), (400, "bad-argument".into()));
    let errors = [denied.text(), bad.text()];

    let executions = send(addr, "GET", "/v1/executions?app=vault", &[], b"").json();
    let ids: Vec<String> =
        executions.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    let functions: Vec<&str> = executions.as_array().unwrap().iter().map(|e| e["function"].as_str().unwrap()).collect();
    assert_eq!(functions.len(), 3, "{executions}");
    assert!(functions.iter().all(|f| f.starts_with("counter.")), "{executions}");
    let mut pages = vec![
        "/v1/apps",
        "/v1/apps/vault",
        "/v1/apps/vault/functions/counter.greeting",
        "/v1/apps/vault/functions/reader.greeting",
        "/v1/openapi.json",
        "/v1/calls",
        "/v1/executions",
        "/metrics",
        "/ui",
        "/ui/app.js",
        "/docs",
        "/docs/docs.js",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    for id in &ids {
        pages.push(format!("/v1/executions/{id}"));
        pages.push(format!("/v1/executions/{id}/logs"));
    }
    for page in &pages {
        let answer = send(addr, "GET", page, &[], b"");
        assert_eq!(answer.status, 200, "{page}: {}", answer.text());
        assert!(!answer.text().contains(SECRET), "{page} shows the secret: {}", answer.text());
    }
    // Not vacuous: the listings name the app and its calls.
    let apps = send(addr, "GET", "/v1/apps", &[], b"").json();
    assert!(apps.as_array().unwrap().iter().any(|a| a["name"] == "vault"), "{apps}");
    let metrics = send(addr, "GET", "/metrics", &[], b"").text();
    assert!(metrics.contains(r#"function="reader.greeting",outcome="ok"} 1"#), "{metrics}");
    for error in &errors {
        assert!(!error.contains(SECRET), "an error shows the secret: {error}");
    }
    // The CLI reads the records from the server; the secrets file is not read for a remote target.
    let url = server.url();
    let listed = cli(&data, &[], &["--secrets", "/nonexistent/secrets.toml", "executions", "--remote", &url, "--json"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert_eq!(text(&listed.stdout).lines().count(), 3, "{}", text(&listed.stdout));
    assert!(!text(&listed.stdout).contains(SECRET));
    let remote =
        cli(&data, &[], &["--secrets", "/nonexistent/secrets.toml", "call", "--remote", &url, "vault/reader.greeting"]);
    assert!(remote.status.success(), "{}", text(&remote.stderr));
    drop(server);
    let log = std::fs::read_to_string(data.join("serve.log")).unwrap();
    assert!(log.contains("vault"), "the log says nothing: {log}");
    assert!(!log.contains(SECRET), "the serve log shows the secret: {log}");
}

#[test]
fn environment_overrides_the_file_and_defaults_fill_in() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_manifest(dir.path());
    let (app, data) = (app.to_str().unwrap(), dir.path().join("data"));
    let secrets = secrets_file(dir.path(), "token = \"from-file\"\ngreeting_text = \"Hi\"\n", 0o600);
    let secrets = secrets.to_str().unwrap();
    let greeting = |env: &[(&str, &str)], args: &[&str]| {
        let out = cli(&data, env, &[args, &["call", "-f", app, "reader.greeting"]].concat());
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(greeting(&[], &["--secrets", secrets]), json!("Hi, from-file!"));
    assert_eq!(greeting(&[("HOST_SECRETS", secrets)], &[]), json!("Hi, from-file!"));
    assert_eq!(greeting(&[("HOST_VAR_TOKEN", "from-env")], &["--secrets", secrets]), json!("Hi, from-env!"));
    assert_eq!(greeting(&[("HOST_VAR_TOKEN", "from-env")], &[]), json!("Hello, from-env!"), "the default");
    assert_eq!(
        greeting(&[("HOST_VAR_TOKEN", "t"), ("HOST_VAR_GREETING_TEXT", "Hey")], &["--secrets", secrets]),
        json!("Hey, t!")
    );
    // `host map` loads the app the same way.
    let out =
        cli(&data, &[("HOST_VAR_TOKEN", "m")], &["map", "-f", app, "counter.config-value", r#"["greeting", "plain"]"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let outcomes: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcomes, json!([{ "ok": "m" }, { "ok": "visible" }]));
}

#[test]
fn a_required_variable_without_a_value_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_manifest(dir.path());
    let data = dir.path().join("data");
    let expected = "error: app `vault`: variable `token` is required and has no value; set HOST_VAR_TOKEN or put `token = \"...\"` in the secrets file (--secrets)\n";
    let out = cli(&data, &[], &["call", "-f", app.to_str().unwrap(), "counter.increment", r#"["k", 1]"#]);
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(2), expected.to_string()));
    assert!(out.stdout.is_empty());
    let out = cli(&data, &[], &["serve", "--listen", "127.0.0.1:0", "-f", app.to_str().unwrap()]);
    assert_eq!((out.status.code(), text(&out.stderr).contains(expected)), (Some(2), true), "{}", text(&out.stderr));

    // The library: the load fails, naming the variable and the app.
    let host = Host::builder().data_dir(dir.path().join("lib")).cache_dir(compiled_cache()).build().unwrap();
    let err = host.load(&app).err().unwrap();
    assert!(
        matches!(&err, Error::Variable(VariableError::Missing { app, name }) if app == "vault" && name == "token"),
        "{err:?}"
    );
}

#[test]
fn a_secrets_file_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_manifest(dir.path());
    let data = dir.path().join("data");
    let secrets = secrets_file(dir.path(), &format!("token = \"{SECRET}\"\n"), 0o644);
    let shown = secrets.display();
    let out = cli(
        &data,
        &[],
        &[
            "--secrets",
            secrets.to_str().unwrap(),
            "call",
            "-f",
            app.to_str().unwrap(),
            "counter.increment",
            r#"["k", 1]"#,
        ],
    );
    let expected =
        format!("error: secrets file {shown} has mode 0644: group or others can read it; run `chmod 600 {shown}`\n");
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(2), expected));

    // The library refuses it when the host is built; once fixed, the guest gets the value.
    let builder = Host::builder().data_dir(dir.path().join("lib")).cache_dir(compiled_cache()).secrets_file(&secrets);
    let err = builder.clone().build().err().unwrap();
    assert!(matches!(&err, Error::Variable(VariableError::Readable { mode: 0o644, .. })), "{err:?}");
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let app = builder.build().unwrap().load(&app).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let greeting = runtime.block_on(app.function("reader.greeting").unwrap().call(Value::Null)).unwrap();
    assert_eq!(greeting, json!(format!("Hello, {SECRET}!")));
}

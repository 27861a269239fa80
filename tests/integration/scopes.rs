//! Tokens with scopes against a real `host serve`: every route of the table, with a token of each
//! scope, for two apps, so that one app's scopes are shown not to reach the other; and every
//! route of an app with public exports, which opens their direct calls and descriptions only.

use std::os::unix::fs::PermissionsExt;

use host::server::routes::{Access, Route};
use host::server::scopes::hash_hex;

use crate::common::{COUNTER, HELLO, ServeProcess};
use crate::server::send;

/// The scopes tried, each as its own token (the token is the scope's text with `:` as `-`).
const SCOPES: [&str; 8] = [
    "admin",
    "deploy",
    "app:counter:invoke",
    "app:counter:read",
    "app:counter:write",
    "app:hello:invoke",
    "app:hello:read",
    "app:hello:write",
];

fn token_of(scope: &str) -> String {
    format!("t0ken-{}", scope.replace(':', "-"))
}

/// The scope a route of `app` needs, stated here from its method and path, not taken from the
/// table: `None` for a route any valid token may use.
fn needed(route: Route, app: &str) -> Option<String> {
    let template = route.template();
    if matches!(route, Route::Deploy | Route::Undeploy | Route::Versions | Route::Rollback) {
        return Some("deploy".into());
    }
    // Execution records: the record's app (the `app` asked for, for the list).
    if template.starts_with("/v1/executions") {
        let level = if route.method().as_str() == "GET" { "read" } else { "write" };
        return Some(format!("app:{app}:{level}"));
    }
    if !route.per_app() && !template.starts_with("/v1/apps/{app}") {
        return match route {
            Route::ListApps | Route::OpenApi => None,
            _ => Some("admin".into()),
        };
    }
    if template.ends_with("/functions/{function}") && route.method().as_str() == "GET" || route == Route::ShowApp {
        return Some(format!("app:{app}:any"));
    }
    let level = match route {
        Route::Call | Route::Map | Route::Starmap => "invoke",
        _ if route.method().as_str() == "GET" => "read",
        _ => "write",
    };
    Some(format!("app:{app}:{level}"))
}

/// `host serve` of `manifests` on `data` with a tokens file of one token per scope.
fn serve_with_scopes(data: &std::path::Path, scopes: &[&str], manifests: &[&str]) -> ServeProcess {
    let entries: String = scopes
        .iter()
        .map(|s| format!("[[token]]\nname = \"{s}\"\nsha256 = \"{}\"\nscopes = [\"{s}\"]\n", hash_hex(&token_of(s))))
        .collect();
    let file = data.join("tokens.toml");
    std::fs::write(&file, entries).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    ServeProcess::start_with(data, None, manifests, &["--tokens", file.to_str().unwrap()])
}

fn allowed(scope: &str, need: Option<&str>) -> bool {
    match need {
        None => true,
        Some(need) => {
            scope == "admin"
                || scope == need
                || need.strip_suffix(":any").is_some_and(|app| scope.starts_with(&format!("{app}:")))
        }
    }
}

#[test]
fn every_route_needs_its_scope_and_one_apps_scopes_do_not_reach_another() {
    let data = tempfile::tempdir().unwrap();
    let server = serve_with_scopes(data.path(), &SCOPES, &[COUNTER, HELLO]);
    // One execution record of each app, for the record routes.
    let admin = format!("Authorization: Bearer {}", token_of("admin"));
    let mut records = std::collections::HashMap::new();
    for (app, path, args) in [
        ("counter", Route::Call.path(&["counter", "counter.increment"]), r#"["k", 1]"#),
        ("hello", Route::Call.path(&["hello", "hello.greet"]), r#"{"who": {"name": "A", "age": 1}}"#),
    ] {
        assert_eq!(send(server.addr, "POST", &path, &[&admin], args.as_bytes()).status, 200);
        let listed = send(server.addr, "GET", &format!("/v1/executions?app={app}"), &[&admin], b"").json();
        records.insert(app, listed[0]["id"].as_str().unwrap().to_string());
    }
    let mut checked = 0;
    for &route in Route::ALL.iter().filter(|r| r.access() != Access::Public) {
        for app in ["counter", "hello"] {
            let function = if app == "counter" { "counter" } else { "hello.greet" };
            let per_record = route.template().starts_with("/v1/executions");
            let args: &[&str] = if route.template().starts_with("/v1/apps/{app}") {
                &[app, function, "k", "k"]
            } else if per_record {
                &[&records[app]]
            } else {
                &["0000000000000000000000000000"]
            };
            let mut path = route.path(&args[..route.template().matches('{').count()]);
            if route == Route::ListExecutions {
                path = format!("{path}?app={app}");
            }
            let need = needed(route, app);
            let method = route.method().to_string();
            let anonymous = send(server.addr, &method, &path, &[], b"{}");
            assert_eq!(anonymous.code(), (401, "unauthorized".into()), "{method} {path}");
            for scope in SCOPES {
                let bearer = format!("Authorization: Bearer {}", token_of(scope));
                let answer = send(server.addr, &method, &path, &[&bearer], b"{}");
                if allowed(scope, need.as_deref()) {
                    assert!(![401, 403].contains(&answer.status), "{scope} on {method} {path}: {}", answer.text());
                } else {
                    let lacks = need.as_deref().unwrap().replace(":any", ":read");
                    assert_eq!(answer.status, 403, "{scope} on {method} {path}: {}", answer.text());
                    assert_eq!(answer.json()["message"], format!("this token lacks the scope {lacks}"));
                    assert_eq!(answer.json()["code"], "forbidden");
                }
                checked += 1;
            }
            if !route.template().starts_with("/v1/apps/{app}") && !per_record {
                break;
            }
        }
    }
    assert!(checked > 500, "{checked}");
    // Every app's records at once, and the app list: what the scopes open.
    let reader = format!("Authorization: Bearer {}", token_of("app:hello:read"));
    let all = send(server.addr, "GET", "/v1/executions", &[&reader], b"");
    assert_eq!(all.json()["message"], "this token lacks the scope admin");
    let apps = send(server.addr, "GET", "/v1/apps", &[&reader], b"").json();
    let names: Vec<&str> = apps.as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["hello"]);
    // A dashboard session keeps the scopes of the token it was opened with.
    let login = format!("{{\"token\": \"{}\"}}", token_of("app:counter:read"));
    let session = send(server.addr, "POST", "/ui/session", &["Content-Type: application/json"], login.as_bytes());
    let cookie = session.header("set-cookie").unwrap();
    let cookie = format!("Cookie: {}", cookie.split(';').next().unwrap());
    let read = send(server.addr, "GET", &Route::ListKv.path(&["counter", "default"]), &[&cookie], b"");
    assert_eq!(read.status, 200, "{}", read.text());
    let write = send(server.addr, "PUT", &Route::PutKv.path(&["counter", "default", "k"]), &[&cookie], b"1");
    assert_eq!(write.code(), (403, "forbidden".into()));
    assert_eq!(send(server.addr, "GET", "/healthz", &[], b"").status, 200);
}

#[test]
fn a_bad_tokens_file_is_refused_at_start_naming_the_entry_and_field() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("tokens.toml");
    let serve = |text: &str, mode: u32| {
        std::fs::write(&file, text).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_host"))
            .arg("--data")
            .arg(data.path())
            .args(["serve", "--listen", "127.0.0.1:0", "--tokens", file.to_str().unwrap()])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let hex = hash_hex("s3cret-t0ken");
    let good = format!("[[token]]\nname = \"ci\"\nsha256 = \"{hex}\"\nscopes = [\"app:counter:invoke\"]\n");
    let (code, err) = serve(&good.replace("invoke", "run"), 0o600);
    assert_eq!(code, Some(1));
    assert!(err.contains("token `ci`: field `scopes`: unknown scope \"app:counter:run\""), "{err}");
    let (_, err) = serve(&good.replace(&hex, "abc"), 0o600);
    assert!(err.contains("token `ci`: field `sha256`: expected 64 hex digits"), "{err}");
    let (_, err) = serve(&good.replace("scopes =", "scope ="), 0o600);
    assert!(err.contains("token `ci`: unknown field `scope`"), "{err}");
    let (_, err) = serve(&good, 0o644);
    assert!(err.contains("has mode 0644: group or others can read it"), "{err}");
}

#[test]
fn public_exports_open_only_their_direct_calls_and_descriptions() {
    let data = tempfile::tempdir().unwrap();
    let app = crate::public::open_app(data.path(), "");
    let scopes = ["app:open:read", "app:counter:invoke"];
    let server = serve_with_scopes(data.path(), &scopes, &[&app, COUNTER]);
    let note = "only direct calls of this function are public: jobs, enqueued calls, map and starmap need a token";
    let mut checked = 0;
    for &route in Route::ALL.iter().filter(|r| r.template().starts_with("/v1/apps/{app}/")) {
        let path = route.path(&["open", "hello.greet", "k", "k"][..route.template().matches('{').count()]);
        let public = matches!(route, Route::Call | Route::DescribeFunction);
        let noted = matches!(route, Route::Map | Route::Starmap);
        let need = needed(route, "open");
        let method = route.method().to_string();
        for scope in [None, Some(scopes[0]), Some(scopes[1])] {
            let bearer = scope.map(|s| format!("Authorization: Bearer {}", token_of(s))).unwrap_or_default();
            let headers: &[&str] = if scope.is_some() { &[&bearer] } else { &[] };
            let answer = send(server.addr, &method, &path, headers, b"{}");
            let message = answer.json()["message"].as_str().unwrap_or_default().to_string();
            if public || scope.is_some_and(|s| allowed(s, need.as_deref())) {
                assert!(![401, 403].contains(&answer.status), "{scope:?} on {method} {path}: {}", answer.text());
            } else {
                let code = if scope.is_some() { (403, "forbidden".into()) } else { (401, "unauthorized".into()) };
                assert_eq!(answer.code(), code, "{scope:?} on {method} {path}");
                assert_eq!(message.ends_with(note), noted, "{scope:?} on {method} {path}: {message}");
            }
            checked += 1;
        }
    }
    assert!(checked > 60, "{checked}");
    // Jobs and enqueued calls of a public export need `invoke`; a function that is not public
    // says nothing of public calls.
    for query in ["?async=true", "?enqueue=true"] {
        let path = format!("{}{query}", Route::Call.path(&["open", "hello.greet"]));
        let anonymous = send(server.addr, "POST", &path, &[], br#"[{"name": "Bo", "age": 2}]"#);
        assert_eq!(anonymous.code(), (401, "unauthorized".into()), "{path}");
        assert!(anonymous.json()["message"].as_str().unwrap().ends_with(note), "{}", anonymous.text());
        let other_app = format!("Authorization: Bearer {}", token_of("app:counter:invoke"));
        let forbidden = send(server.addr, "POST", &path, &[&other_app], br#"[{"name": "Bo", "age": 2}]"#);
        assert_eq!(forbidden.json()["message"], format!("this token lacks the scope app:open:invoke; {note}"));
    }
    let private = send(server.addr, "POST", &Route::Call.path(&["counter", "counter.get"]), &[], br#"["k"]"#);
    assert_eq!(private.json()["message"], "missing or wrong bearer token: send `Authorization: Bearer <token>`");
    let direct =
        send(server.addr, "POST", &Route::Call.path(&["open", "hello.greet"]), &[], br#"[{"name": "Bo", "age": 2}]"#);
    assert_eq!((direct.status, direct.json()), (200, serde_json::json!("Hello, Bo! You are 2.")));
}

#[test]
fn token_hash_prints_the_digest_a_tokens_file_holds() {
    use std::io::Write;
    let hash = |stdin: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_host"))
            .args(["token", "hash"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = hash("  s3cret-t0ken\n");
    assert_eq!((code, out), (Some(0), format!("{}\n", hash_hex("s3cret-t0ken"))));
    assert_eq!(hash_hex("s3cret-t0ken").len(), 64);
    let (code, _, err) = hash("\n");
    assert_eq!(code, Some(1));
    assert!(err.contains("the bearer token is empty"), "{err}");
}

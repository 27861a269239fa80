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
    let mut checked = 0;
    for &route in Route::ALL.iter().filter(|r| r.access() != Access::Public) {
        for app in ["counter", "hello"] {
            let function = if app == "counter" { "counter" } else { "hello.greet" };
            let args: &[&str] = if route.template().starts_with("/v1/apps/{app}") {
                &[app, function, "k", "k"]
            } else {
                &["0000000000000000000000000000"]
            };
            let path = route.path(&args[..route.template().matches('{').count()]);
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
            if !route.template().starts_with("/v1/apps/{app}") {
                break;
            }
        }
    }
    assert!(checked > 500, "{checked}");
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

//! What a guest's outbound HTTP through `guest-sdk::http` may not reach, with model-api's
//! `predict` fetching its image by URL from `web::WebServer`s on loopback: a host not in the
//! grant, a granted name that resolves to loopback without a grant of the address, and a redirect
//! from a granted server to an ungranted one (refused at the second hop); and redirects end after
//! five hops. Also [`granting`]: an example's manifest with the grants a test's servers need.

use std::path::Path;

use host::CallError;
use serde_json::{Value, json};

use crate::common::{MODEL_API, app, manifest, skimage_image};
use crate::web::{Response, WebServer};

/// A copy of an example's manifest with grants for a test's servers.
pub struct Granted {
    /// The copy, as a manifest path the test helpers take (it is absolute).
    pub path: String,
    _dir: tempfile::TempDir,
}

/// Manifest `relative` copied to a temporary folder (its paths made absolute, its build commands
/// dropped: the guests are built by [`manifest`]), with `function`'s `grants.http` set to
/// `origins` and `extra` (TOML, e.g. an `[outbound]` table) merged into it.
pub fn granting(relative: &str, function: &str, origins: &[String], extra: &str) -> Granted {
    let original = manifest(relative);
    let base = original.parent().unwrap();
    let mut doc: toml::Table = toml::from_str(&std::fs::read_to_string(&original).unwrap()).unwrap();
    let absolute = |value: &mut toml::Value| {
        let path = base.join(value.as_str().unwrap());
        *value = toml::Value::String(path.to_str().unwrap().into());
    };
    for (name, spec) in doc.get_mut("function").and_then(|f| f.as_table_mut()).unwrap() {
        let spec = spec.as_table_mut().unwrap();
        absolute(spec.get_mut("source").unwrap());
        spec.remove("build");
        spec.remove("build-inputs");
        if name == function {
            let grants = spec.entry("grants").or_insert(toml::Value::Table(toml::Table::new()));
            let origins = origins.iter().map(|o| toml::Value::String(o.clone())).collect();
            grants.as_table_mut().unwrap().insert("http".into(), toml::Value::Array(origins));
        }
    }
    let models = doc.get_mut("model").and_then(|m| m.as_table_mut());
    for path in
        models.into_iter().flat_map(|m| m.iter_mut().map(|(_, model)| model)).filter_map(|model| model.get_mut("path"))
    {
        absolute(path);
    }
    if let Some(dir) = doc.get_mut("site").and_then(|site| site.get_mut("dir")) {
        absolute(dir);
    }
    doc.extend(toml::from_str::<toml::Table>(extra).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.toml");
    std::fs::write(&path, toml::to_string(&doc).unwrap()).unwrap();
    Granted { path: path.to_str().unwrap().into(), _dir: dir }
}

/// `http://ADDR`, the origin of a test server, as a grant entry.
pub fn origin(server: &WebServer) -> String {
    format!("http://{}", server.addr())
}

/// A server answering the astronaut at `/astronaut.png`, 404 elsewhere.
pub fn image_server() -> WebServer {
    let png = std::fs::read(skimage_image("astronaut.png")).unwrap();
    WebServer::start(move |request| match request.path.as_str() {
        "/astronaut.png" => Response::ok(png.clone()).header("content-type", "image/png"),
        _ => Response::new(404, "not here"),
    })
}

/// model-api's `predict` with `url`, in an app loaded from `manifest`: its JSON answer or the
/// guest's error text, and what the call wrote to stderr (the host's notes on its requests).
async fn predict_url(manifest: &Path, url: &str) -> (Result<Value, String>, String) {
    let (_data, _host, app) = app(manifest.to_str().unwrap());
    let report = app.function("model-api.predict").unwrap().invoke(&json!({ "url": url })).await.unwrap();
    let result = match report.result {
        Ok(value) => Ok(value),
        Err(CallError::Guest { value }) => Err(value.as_str().unwrap().to_string()),
        Err(other) => panic!("expected predict's answer or its error, got {other}"),
    };
    (result, report.logs.stderr)
}

/// The guest's message for a request to `url` that the host refused.
fn denied(url: &str) -> String {
    format!(
        "url: HTTP request to {url} denied (http-request-denied): the function's `grants.http` does not allow it \
         (the call's logs say why)"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_not_in_the_grant_is_refused_before_connecting() {
    let (granted, other) = (image_server(), image_server());
    let manifest = granting(MODEL_API, "model-api", &[origin(&granted)], "");
    let path = Path::new(&manifest.path);

    let (faces, _) = predict_url(path, &granted.url("/astronaut.png")).await;
    let faces = faces.unwrap();
    assert_eq!(faces["faces"].as_array().map(Vec::len), Some(1), "{faces}");
    let url = other.url("/astronaut.png");
    let (answer, logs) = predict_url(path, &url).await;
    assert_eq!(answer, Err(denied(&url)));
    let note = format!(
        "GET http://{} refused (HTTP-request-denied): not in grants.http of function `model-api`",
        other.addr()
    );
    assert!(logs.contains(&note), "{logs}");
    assert_eq!(granted.requests().len(), 1);
    assert!(other.requests().is_empty(), "the ungranted server was never reached");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_granted_name_resolving_to_loopback_needs_the_address_granted() {
    let server = image_server();
    let port = server.addr().port();
    let name = format!("http://images.test:{port}");
    let resolve = format!("[outbound]\nresolve = {{ \"images.test:{port}\" = \"{}\" }}", server.addr());
    let url = format!("{name}/astronaut.png");

    let name_only = granting(MODEL_API, "model-api", std::slice::from_ref(&name), &resolve);
    let (answer, logs) = predict_url(Path::new(&name_only.path), &url).await;
    assert_eq!(answer, Err(denied(&url)));
    let note = "it resolves to 127.0.0.1, an internal address that grants.http of function `model-api` does not name";
    assert!(logs.contains(note), "{logs}");
    assert!(server.requests().is_empty(), "nothing connected to the loopback address");

    // Granting the address too lets the name through, to the same server.
    let both = granting(MODEL_API, "model-api", &[name.clone(), origin(&server)], &resolve);
    let (faces, _) = predict_url(Path::new(&both.path), &url).await;
    let faces = faces.unwrap();
    assert_eq!(faces["faces"].as_array().map(Vec::len), Some(1), "{faces}");
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/astronaut.png"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_to_an_ungranted_host_is_refused_at_the_second_hop() {
    let elsewhere = image_server();
    let target = elsewhere.url("/astronaut.png");
    let moved = target.clone();
    let granted = WebServer::start(move |_| Response::redirect(&moved));
    let manifest = granting(MODEL_API, "model-api", &[origin(&granted)], "");

    let (answer, logs) = predict_url(Path::new(&manifest.path), &granted.url("/moved.png")).await;
    assert_eq!(answer, Err(denied(&target)));
    let hops = [format!("GET {}: 302 in ", origin(&granted)), format!("GET {} refused", origin(&elsewhere))];
    assert!(hops.iter().all(|hop| logs.contains(hop.as_str())), "{logs}");
    let reached: Vec<(String, String)> = granted.requests().into_iter().map(|r| (r.method, r.path)).collect();
    assert_eq!(reached, [("GET".to_string(), "/moved.png".to_string())], "the first hop reached the granted server");
    assert!(elsewhere.requests().is_empty(), "the second hop was refused before connecting");
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_stop_after_five_hops() {
    let looping = WebServer::start(|request| {
        let hop: u32 = request.path.trim_start_matches("/hop/").parse().unwrap_or(0);
        Response::redirect(&format!("/hop/{}", hop + 1))
    });
    let manifest = granting(MODEL_API, "model-api", &[origin(&looping)], "");

    let url = looping.url("/hop/0");
    let (answer, _) = predict_url(Path::new(&manifest.path), &url).await;
    assert_eq!(answer, Err(format!("url: HTTP request to {url}: more than 5 redirects")));
    let paths: Vec<String> = looping.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, (0..=5).map(|hop| format!("/hop/{hop}")).collect::<Vec<_>>(), "the first request and 5 hops");
}

//! The remote-annotate example: an item trigger posts each new image to a detection API (a
//! `web::WebServer` on loopback that checks the API key) with the key of a secret variable, read
//! from a secrets file, and writes the boxes it answers as annotations; with a wrong key the
//! execution fails, naming the API's answer, and nothing is annotated.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use host::executions::{Execution, ExecutionFilter, Status};
use host::storage::datasets::{Annotation, Geometry, Item};
use host::{App, Host};
use serde_json::{Value, json};

use crate::common::{REMOTE_ANNOTATE, compiled_cache};
use crate::outbound_sdk::{Granted, granting, origin};
use crate::web::{Response, WebServer};

/// The key the detection API accepts.
const KEY: &str = "sk-test-3f9a1c";

/// What the detection API answers for every image.
fn boxes() -> Value {
    json!({ "boxes": [
        { "label": "cat", "left": 1.5, "top": 2.0, "right": 30.0, "bottom": 40.25, "confidence": 0.75 },
        { "label": "dog", "left": 50.0, "top": 5.0, "right": 90.0, "bottom": 60.0 },
    ] })
}

/// The detection API: `POST /detect` with `authorization: Bearer KEY` answers [`boxes`], a
/// wrong key 401.
fn detection_api() -> WebServer {
    WebServer::start(|request| {
        if (request.method.as_str(), request.path.as_str()) != ("POST", "/detect") {
            return Response::new(404, "no such endpoint");
        }
        match request.header("authorization") == Some(&format!("Bearer {KEY}")) {
            true => Response::ok(boxes().to_string()).header("content-type", "application/json"),
            false => Response::new(401, "invalid API key"),
        }
    })
}

/// The example on its own data dir, with its variables from a secrets file and its trigger running.
struct Annotating {
    host: Host,
    app: App,
    runtime: tokio::runtime::Runtime,
    _triggers: host::triggers::Triggers,
    _manifest: Granted,
    _data: tempfile::TempDir,
}

impl Annotating {
    /// The app granted `api`, with `api_key` and `detect_url` (the API's `/detect`) in a secrets
    /// file readable by its owner only.
    fn start(api: &WebServer, api_key: &str) -> Annotating {
        let data = tempfile::tempdir().unwrap();
        let secrets = data.path().join("secrets.toml");
        let values = format!("api_key = {:?}\ndetect_url = {:?}\n", api_key, api.url("/detect"));
        std::fs::write(&secrets, values).unwrap();
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        let manifest = granting(REMOTE_ANNOTATE, "remote-annotate", &[origin(api)], "");
        let host = Host::builder()
            .data_dir(data.path().join("data"))
            .cache_dir(compiled_cache())
            .secrets_file(&secrets)
            .build()
            .unwrap();
        let app = host.load(&manifest.path).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let triggers = {
            let _entered = runtime.enter();
            host::triggers::Triggers::start(&host, &[&app]).unwrap()
        };
        Annotating { host, app, runtime, _triggers: triggers, _manifest: manifest, _data: data }
    }

    /// Uploads `bytes` as `name` to dataset `photos`.
    fn upload(&self, name: &str, bytes: &[u8]) -> Item {
        let photos = self.runtime.block_on(self.host.dataset(self.app.name(), "photos")).unwrap();
        self.runtime.block_on(photos.upload("/", name, None, bytes, None, None)).unwrap()
    }

    /// The trigger's finished execution on `item`, once there is one.
    fn finished(&self, item: &Item) -> Execution {
        let filter = ExecutionFilter { trigger: Some("annotate-on-create".into()), ..ExecutionFilter::default() };
        let started = Instant::now();
        loop {
            let all = self.runtime.block_on(self.host.executions().list(&filter, None, 1000));
            let on_item = all.into_iter().find(|e| e.item.as_ref().is_some_and(|(_, id)| *id == item.id));
            if let Some(done) = on_item.filter(|e| e.status.is_final()) {
                return done;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no finished execution on {}", item.id);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The annotations of `item`.
    fn annotations(&self, item: &Item) -> Vec<Annotation> {
        let photos = self.runtime.block_on(self.host.dataset(self.app.name(), "photos")).unwrap();
        self.runtime.block_on(photos.annotations(&item.id)).unwrap()
    }
}

/// Label, box, confidence and model of annotations, for comparing.
type Written = (String, [f64; 4], Option<f32>, Option<String>);

fn written(annotations: &[Annotation]) -> Vec<Written> {
    annotations
        .iter()
        .map(|a| {
            let Geometry::Box { left, top, right, bottom } = a.geometry else { panic!("not a box: {a:?}") };
            (a.label.clone(), [left, top, right, bottom], a.confidence, a.model.clone())
        })
        .collect()
}

/// Method, path, `authorization`, `content-type` and body of a request the API got.
type Sent = (String, String, Option<String>, Option<String>, Vec<u8>);

#[test]
fn the_boxes_the_api_answers_become_annotations() {
    let api = detection_api();
    let app = Annotating::start(&api, KEY);
    let images: [(&str, &[u8]); 2] = [("first.png", b"\x89PNG first image"), ("second.jpg", b"\xff\xd8 second image")];
    let items: Vec<Item> = images.iter().map(|(name, bytes)| app.upload(name, bytes)).collect();

    let model = Some("remote-annotate".to_string());
    let expected: Vec<Written> = vec![
        ("cat".into(), [1.5, 2.0, 30.0, 40.25], Some(0.75), model.clone()),
        ("dog".into(), [50.0, 5.0, 90.0, 60.0], None, model),
    ];
    for item in &items {
        let run = app.finished(item);
        assert_eq!(run.status, Status::Succeeded, "{run:#?}");
        let answer = boxes();
        let answered = answer["boxes"].as_array().unwrap().iter().map(|b| {
            let mut b = b.clone();
            b.as_object_mut().unwrap().entry("confidence").or_insert(Value::Null);
            b
        });
        assert_eq!(run.output, Some(Value::Array(answered.collect())));
        assert_eq!(written(&app.annotations(item)), expected);
    }

    // The API got each image once, as it was uploaded, with the key from the secrets file.
    let mut got: Vec<Sent> = api
        .requests()
        .into_iter()
        .map(|r| {
            let header = |name: &str| r.header(name).map(String::from);
            (r.method.clone(), r.path.clone(), header("authorization"), header("content-type"), r.body.clone())
        })
        .collect();
    got.sort_by(|a, b| a.4.cmp(&b.4));
    let bearer = Some(format!("Bearer {KEY}"));
    let sent = |mimetype: &str, bytes: &[u8]| {
        ("POST".to_string(), "/detect".to_string(), bearer.clone(), Some(mimetype.to_string()), bytes.to_vec())
    };
    assert_eq!(got, [sent("image/png", images[0].1), sent("image/jpeg", images[1].1)]);
}

#[test]
fn a_wrong_key_fails_the_execution_and_annotates_nothing() {
    let api = detection_api();
    let app = Annotating::start(&api, "not-the-key");
    let item = app.upload("photo.png", b"\x89PNG an image");

    let run = app.finished(&item);
    assert_eq!(run.status, Status::Failed, "{run:#?}");
    let error = run.error.as_ref().map(|e| e["error"].clone());
    let message = format!("the detection API at {} answered 401: invalid API key", api.url("/detect"));
    assert_eq!(error, Some(json!(message)), "{run:#?}");
    assert!(app.annotations(&item).is_empty());
    let requests = api.requests();
    assert_eq!(requests.len(), 1, "one attempt: the trigger does not retry");
    assert_eq!(requests[0].header("authorization"), Some("Bearer not-the-key"));
    // The execution's logs note the request (no header, no body); the key is in neither them nor
    // the record.
    let logs = app.runtime.block_on(app.host.executions().logs(&run.id)).unwrap();
    assert!(logs.contains(&format!("[host] outbound POST http://{}: 401 in ", api.addr())), "{logs}");
    assert!(!logs.contains("not-the-key") && !format!("{run:?}").contains("not-the-key"), "{logs}\n{run:?}");
}

//! The train-classifier example (Nitric's tutorial) through a real `host serve` process: the
//! site in headless Chromium trains a model on scikit-learn's digits up to "Model Trained!", the
//! saved ONNX model classifies held-out digits through `wasi:nn`, and a host killed during
//! training delivers the task again after its restart and finishes it. The trainer also
//! downloads its dataset as a `.tar.gz` from a URL (the tutorial's download step) from a granted
//! `web::WebServer` on loopback, and fails, saying why, for a URL the grant does not cover.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{ServeProcess, TRAIN_CLASSIFIER, free_addr, root};
use crate::dashboard::{chromium, playwright};
use crate::digits::{digits, png};
use crate::outbound_sdk::{granting, origin};
use crate::server::send;
use crate::web::{Response, WebServer};

const FUNCTIONS: &str = "/v1/apps/train-classifier/functions/train-classifier";

fn call(addr: std::net::SocketAddr, export: &str, args: Value) -> Value {
    let answer = send(addr, "POST", &format!("{FUNCTIONS}.{export}"), &[], args.to_string().as_bytes());
    assert_eq!(answer.status, 200, "{export}: {}", answer.text());
    answer.json()
}

fn status(addr: std::net::SocketAddr, id: &str) -> String {
    call(addr, "status", json!({ "id": id })).as_str().unwrap().to_string()
}

/// The site at `url` in headless Chromium: dataset `digits`, "Train Model", the statuses up to
/// "Model Trained!" (`tests/ui/train.mjs`); its summary `{"statuses": [...], "id": "..."}`. The
/// screenshot goes to `target/ui/SCREENSHOT`.
pub fn train_in_browser(url: &str, screenshot: &str) -> Value {
    let out = Command::new("node")
        .arg(playwright().join("train.mjs"))
        .arg(url)
        .arg("digits")
        .arg(root().join("target/ui").join(screenshot))
        .env("CHROMIUM", chromium())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap()
}

#[test]
fn the_site_trains_a_classifier_that_survives_a_killed_host() {
    let data = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let listen = addr.to_string();
    let server = ServeProcess::start(data.path(), Some(addr), &[TRAIN_CLASSIFIER]);

    // Every 10th digit is held out; the rest is the dataset, one folder per class.
    let (mut held_out, mut uploaded) = (Vec::new(), 0);
    for (i, (label, pixels)) in digits().iter().enumerate() {
        if i % 10 == 0 {
            held_out.push((*label, png(pixels)));
            continue;
        }
        let key = format!("/v1/apps/train-classifier/buckets/datasets/digits/{label}/{i:04}.png");
        assert_eq!(send(addr, "PUT", &key, &[], &png(pixels)).status, 204, "upload {key}");
        uploaded += 1;
    }
    assert_eq!((uploaded, held_out.len()), (1617, 180));

    // The tutorial's page: click "Train Model", see the statuses up to the final one.
    let summary = train_in_browser(&format!("http://{listen}"), "train-classifier.png");
    let statuses: Vec<&str> = summary["statuses"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(statuses.last(), Some(&"Model Trained!"), "the page polled up to the final status: {statuses:#?}");
    assert!(statuses.windows(2).all(|w| w[0] != w[1]), "each new status is shown once: {statuses:#?}");
    // The page polls every 500 ms, as the tutorial's does, and may skip quick stages: every
    // stage is in the trainer's logs, in order.
    let trainer = send(addr, "GET", "/v1/executions?trigger=train-on-new-model", &[], b"").json();
    let logs = send(addr, "GET", &format!("/v1/executions/{}/logs", trainer[0]["id"].as_str().unwrap()), &[], b"");
    let logs = logs.text();
    let statuses: Vec<&str> = logs.lines().filter_map(|l| l.split_once(": ").map(|(_, s)| s)).collect();
    let stages = [
        "Training Starting... (delivery 1)",
        "Loading Images...",
        "Images processed! Classes found: [\"0\", \"1\", \"2\", \"3\", \"4\", \"5\", \"6\", \"7\", \"8\", \"9\"]",
        "Training Complete! Validation accuracy",
        "Model Trained!",
    ];
    let mut at = 0;
    for stage in stages {
        let found = statuses[at..].iter().position(|s| s.starts_with(stage));
        at += found.unwrap_or_else(|| panic!("no status `{stage}` in order in the logs:\n{logs}")) + 1;
    }
    let id = summary["id"].as_str().unwrap();

    // The saved ONNX model, run by the host, classifies held-out digits well above chance (0.1).
    let correct = held_out
        .iter()
        .filter(|(label, image)| {
            use base64::Engine as _;
            let image = base64::engine::general_purpose::STANDARD.encode(image);
            call(addr, "classify", json!({ "id": id, "image": image }))["label"].as_str().and_then(|l| l.parse().ok())
                == Some(*label)
        })
        .count();
    let accuracy = correct as f64 / held_out.len() as f64;
    eprintln!("train-classifier: held-out accuracy {accuracy:.3} ({correct}/{})", held_out.len());
    assert!(accuracy >= 0.85, "held-out accuracy {accuracy}");

    // A long training, and the host killed (SIGKILL) in the middle of it.
    let long = call(addr, "request-training", json!({ "dataset": "digits", "epochs": 400 }));
    let long = long.as_str().unwrap().to_string();
    let started = Instant::now();
    while !status(addr, &long).starts_with("Training: epoch") {
        assert!(started.elapsed() < Duration::from_secs(120), "training never started: {}", status(addr, &long));
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(server);
    let _server = ServeProcess::start(data.path(), Some(addr), &[TRAIN_CLASSIFIER]);
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let now = status(addr, &long);
        if seen.last() != Some(&now) {
            seen.push(now.clone());
        }
        if now == "Model Trained!" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "never finished after the restart: {seen:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Polled every 100 ms, quick stages may be missed: any stage before the epochs, or an epoch
    // below the one seen before the kill, shows that the training started over.
    let early = ["Training Starting", "Loading Images", "Images Loaded", "Images processed", "Model Built"];
    let epoch = |s: &str| s.strip_prefix("Training: epoch ")?.split('/').next()?.parse::<u32>().ok();
    let at_kill = seen.first().and_then(|s| epoch(s)).unwrap_or(0);
    let restarted =
        seen.iter().any(|s| early.iter().any(|e| s.starts_with(e)) || epoch(s).is_some_and(|n| n < at_kill));
    assert!(restarted, "training started over: {seen:#?}");
    // The cut-off delivery of `new-model` ran again and took the task, leased by the killed
    // host, as its second delivery.
    let trainer = send(addr, "GET", "/v1/executions?trigger=train-on-new-model&limit=1", &[], b"").json();
    assert_eq!(trainer[0]["status"], "succeeded", "{trainer}");
    let logs = send(addr, "GET", &format!("/v1/executions/{}/logs", trainer[0]["id"].as_str().unwrap()), &[], b"");
    assert!(logs.text().contains(&format!("{long}: Training Starting... (delivery 2)")), "{}", logs.text());
    // Nothing is left in the queue, and the model is there.
    let queue = send(addr, "GET", "/v1/apps/train-classifier/queues/training-queue", &[], b"").json();
    assert_eq!((queue["ready"].clone(), queue["waiting"].clone()), (json!(0), json!(0)));
    let model = send(addr, "GET", &format!("/v1/apps/train-classifier/buckets/datasets/{long}-model.onnx"), &[], b"");
    assert_eq!(model.status, 200);
}

/// The first `n` digits as a `.tar.gz` of `digits/CLASS/NNNN.png` (made with `tar`).
fn digits_archive(n: usize) -> Vec<u8> {
    let staging = tempfile::tempdir().unwrap();
    for (i, (label, pixels)) in digits().iter().enumerate().take(n) {
        let dir = staging.path().join("digits").join(label.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{i:04}.png")), png(pixels)).unwrap();
    }
    let archive = staging.path().join("digits.tar.gz");
    let status = Command::new("tar").arg("czf").arg(&archive).arg("-C").arg(staging.path()).arg("digits").status();
    assert!(status.unwrap().success(), "tar czf failed");
    std::fs::read(archive).unwrap()
}

/// Polls training `id` until it is trained or failed; its last status.
fn trained(addr: std::net::SocketAddr, id: &str) -> String {
    let started = Instant::now();
    loop {
        let now = status(addr, id);
        if now == "Model Trained!" || now.starts_with("Training failed") {
            return now;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "still `{now}`");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_trainer_downloads_its_dataset_archive_from_a_granted_url() {
    let archive = digits_archive(300);
    let size = archive.len();
    let serve_archive = move |request: &crate::web::Request| match request.path.as_str() {
        "/datasets/digits.tar.gz" => Response::ok(archive.clone()).header("content-type", "application/gzip"),
        _ => Response::new(404, "not here"),
    };
    let granted = WebServer::start(serve_archive.clone());
    let manifest = granting(TRAIN_CLASSIFIER, "train-classifier", &[origin(&granted)], "");
    let data = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(data.path(), None, &[manifest.path.as_str()]);
    let addr = server.addr;

    // The requester only stores the URL; the trainer downloads and unpacks it, then trains.
    let url = granted.url("/datasets/digits.tar.gz");
    let id = call(addr, "request-training", json!({ "dataset": url, "epochs": 5 }));
    let id = id.as_str().unwrap();
    assert_eq!(trained(addr, id), "Model Trained!");
    let trainer = send(addr, "GET", "/v1/executions?trigger=train-on-new-model", &[], b"").json();
    let logs = send(addr, "GET", &format!("/v1/executions/{}/logs", trainer[0]["id"].as_str().unwrap()), &[], b"");
    let logs = logs.text();
    for line in [
        format!("{id}: Loading Images..."),
        format!("{id}: Downloaded {size} bytes from {url}: 300 images into `digits/`"),
        format!(
            "{id}: Images processed! Classes found: {:?}. Building model...",
            (0..10).map(|d| d.to_string()).collect::<Vec<_>>()
        ),
    ] {
        assert!(logs.contains(&line), "{line:?} missing from {logs}");
    }
    let requests: Vec<(String, String)> = granted.requests().into_iter().map(|r| (r.method, r.path)).collect();
    assert_eq!(requests, [("GET".to_string(), "/datasets/digits.tar.gz".to_string())]);
    let (label, pixels) = &digits()[0];
    let key = format!("/v1/apps/train-classifier/buckets/datasets/digits/{label}/0000.png");
    assert_eq!(send(addr, "GET", &key, &[], b"").body, png(pixels), "unpacked into the bucket");
    let model = send(addr, "GET", &format!("/v1/apps/train-classifier/buckets/datasets/{id}-model.onnx"), &[], b"");
    assert_eq!(model.status, 200);

    // A URL on a server the grant does not name: the training fails, naming the refusal.
    let elsewhere = WebServer::start(serve_archive);
    let url = elsewhere.url("/datasets/digits.tar.gz");
    let id = call(addr, "request-training", json!({ "dataset": url, "epochs": 5 }));
    let failed = trained(addr, id.as_str().unwrap());
    let denied =
        format!("Training failed: downloading the dataset: HTTP request to {url} denied (http-request-denied): ");
    assert!(failed.starts_with(&denied), "{failed}");
    assert!(elsewhere.requests().is_empty(), "the ungranted server was never reached");
}

//! The train-classifier example (Nitric's tutorial) through a real `host serve` process: the
//! site in headless Chromium trains a model on scikit-learn's digits up to "Model Trained!", the
//! saved ONNX model classifies held-out digits through `wasi:nn`, and a host killed during
//! training delivers the task again after its restart and finishes it.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{ServeProcess, TRAIN_CLASSIFIER, root};
use crate::dashboard::{chromium, playwright};
use crate::digits::{digits, png};
use crate::server::send;

const FUNCTIONS: &str = "/v1/apps/train-classifier/functions/train-classifier";

fn call(addr: std::net::SocketAddr, export: &str, args: Value) -> Value {
    let answer = send(addr, "POST", &format!("{FUNCTIONS}.{export}"), &[], args.to_string().as_bytes());
    assert_eq!(answer.status, 200, "{export}: {}", answer.text());
    answer.json()
}

fn status(addr: std::net::SocketAddr, id: &str) -> String {
    call(addr, "status", json!({ "id": id })).as_str().unwrap().to_string()
}

#[test]
fn the_site_trains_a_classifier_that_survives_a_killed_host() {
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let addr: std::net::SocketAddr = listen.parse().unwrap();
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
    let ui = playwright();
    let screenshot = root().join("target/ui/train-classifier.png");
    let out = Command::new("node")
        .arg(ui.join("train.mjs"))
        .arg(format!("http://{listen}"))
        .arg("digits")
        .arg(&screenshot)
        .env("CHROMIUM", chromium())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
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

//! Example guest: annotation by a remote detection API. An item trigger calls `annotate` on every
//! image created in dataset `photos`; it posts the image to config `api_url` with the API key of
//! config `api_key` (a secret variable of the manifest, filled in by the host) and writes the
//! boxes the API answers as `box` annotations.

use guest_sdk::config;
use guest_sdk::http::Request;
use guest_sdk::items::{AnnotationInput, Dataset, Geometry, Rect};
use serde::Deserialize;

wit_bindgen::generate!({
    world: "example:remote-annotate/remote-annotate",
    // The host's WIT first, so that `use host:api/items` in ours resolves.
    path: ["../../wit", "wit"],
    // The same Rust types as `guest_sdk::items`, so items pass straight to the SDK.
    with: { "host:api/items@0.1.0": guest_sdk::bindings::host::api::items },
});

/// The `model` of the annotations written.
const MODEL: &str = "remote-annotate";

/// How much of an error answer's body goes into the error.
const ERROR_BODY: usize = 200;

/// What the detection API answers.
#[derive(Deserialize)]
struct Answer {
    boxes: Vec<Detection>,
}

/// Lets `Detection` (generated from the WIT) be read from the answer's JSON.
#[derive(Deserialize)]
#[serde(remote = "Detection")]
struct DetectionJson {
    label: String,
    left: f64,
    top: f64,
    right: f64,
    bottom: f64,
    #[serde(default)]
    confidence: Option<f32>,
}

impl<'de> Deserialize<'de> for Detection {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        DetectionJson::deserialize(deserializer)
    }
}

struct RemoteAnnotate;

impl Guest for RemoteAnnotate {
    fn annotate(item: Item) -> Result<Vec<Detection>, String> {
        let url = setting("api_url")?;
        let key = setting("api_key")?;
        let dataset = Dataset::open(&item.dataset).map_err(|e| format!("opening dataset {:?}: {e}", item.dataset))?;
        let image = dataset.download(&item.id).map_err(|e| format!("downloading item {}: {e}", item.id))?;

        let response = Request::post(&url)
            .header("authorization", &format!("Bearer {key}"))
            .header("content-type", &item.mimetype)
            .body(image)
            .send()
            .map_err(|e| e.to_string())?;
        if !response.is_success() {
            let text = String::from_utf8_lossy(&response.body);
            let text: String = text.chars().take(ERROR_BODY).collect();
            return Err(format!("the detection API at {} answered {}: {text}", response.url, response.status));
        }
        let answer: Answer = response.json().map_err(|e| e.to_string())?;

        let annotations: Vec<AnnotationInput> = answer.boxes.iter().map(annotation).collect();
        dataset.add_annotations(&item.id, &annotations).map_err(|e| format!("annotating item {}: {e}", item.id))?;
        println!("{} box(es) from {} on {}", answer.boxes.len(), response.url, item.name);
        Ok(answer.boxes)
    }
}

/// Config value `key`, which the manifest must set.
fn setting(key: &str) -> Result<String, String> {
    config::get(key).map_err(|e| e.to_string())?.ok_or_else(|| format!("config `{key}` is not set"))
}

/// The `box` annotation of a detection.
fn annotation(d: &Detection) -> AnnotationInput {
    AnnotationInput {
        geometry: Geometry::Box(Rect { left: d.left, top: d.top, right: d.right, bottom: d.bottom }),
        label: d.label.clone(),
        confidence: d.confidence,
        model: Some(MODEL.into()),
    }
}

export!(RemoteAnnotate);

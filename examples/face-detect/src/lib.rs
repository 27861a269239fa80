//! Example guest: the Dataloop FaaS tutorial "Model Annotations Service" as a component.
//!
//! `detect` takes an image item of a dataset (PNG or JPEG), finds faces with MediaPipe BlazeFace
//! and adds one `box` annotation labelled `face` per face, with its confidence and the model. The
//! model runs on the host through `wasi:nn` (`[model.blazeface]` in `host.toml`, loaded once and
//! shared by every call, as the tutorial's `__init__` loads it once per service); the guest only
//! letterboxes the image into the model's 128×128 input and decodes the boxes (the `vision`
//! crate). Config: `model` (default `blazeface`), `min_confidence` (default 0.5).

use guest_sdk::items::{AnnotationInput, Dataset, Geometry, Rect};
use vision::detector::{self, FaceDetector};
use vision::{Detection, blazeface, codec};

wit_bindgen::generate!({
    world: "example:face-detect/face-detect",
    // The host's WIT first, so that `use host:api/items` in ours resolves.
    path: ["../../wit", "wit"],
    // The same Rust types as `guest_sdk::items`, so items pass straight to the SDK.
    with: { "host:api/items@0.1.0": guest_sdk::bindings::host::api::items },
});

/// The label of the annotations.
const LABEL: &str = "face";

/// The component's exports.
struct FaceDetect;

impl Guest for FaceDetect {
    fn detect(item: Item) -> Result<Vec<Face>, String> {
        let detector = FaceDetector::from_config()?;
        let min_confidence = detector::min_confidence()?;

        let dataset = Dataset::open(&item.dataset).map_err(|e| format!("opening dataset {:?}: {e}", item.dataset))?;
        let bytes = dataset.download(&item.id).map_err(|e| format!("downloading item {}: {e}", item.id))?;
        let (_, image) = codec::decode(&bytes).map_err(|e| format!("item {}: {e}", item.id))?;
        let faces = detector.detect(&image, min_confidence)?;

        let model_info = format!("{} ({})", detector.name(), blazeface::DESCRIPTION);
        let annotations: Vec<AnnotationInput> = faces.iter().map(|face| annotation(face, &model_info)).collect();
        dataset.add_annotations(&item.id, &annotations).map_err(|e| format!("annotating item {}: {e}", item.id))?;
        let plural = if faces.len() == 1 { "" } else { "s" };
        println!("{} face{plural} in {}", faces.len(), item.name);
        Ok(faces.iter().map(Face::from).collect())
    }
}

impl From<&Detection> for Face {
    fn from(d: &Detection) -> Self {
        Face { left: d.left, top: d.top, right: d.right, bottom: d.bottom, confidence: d.confidence }
    }
}

/// The `box` annotation of a detected face.
fn annotation(face: &Detection, model_info: &str) -> AnnotationInput {
    AnnotationInput {
        geometry: Geometry::Box(Rect {
            left: f64::from(face.left),
            top: f64::from(face.top),
            right: f64::from(face.right),
            bottom: f64::from(face.bottom),
        }),
        label: LABEL.into(),
        confidence: Some(face.confidence),
        model: Some(model_info.into()),
    }
}

export!(FaceDetect);

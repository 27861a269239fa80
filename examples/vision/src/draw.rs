//! Drawing detections onto an image.

use crate::{Detection, RgbImage};

/// The width of a box's outline, in pixels.
const THICKNESS: usize = 2;

/// Draws each detection's box as a rectangle outline, 2 pixels wide and inside the box, in
/// `colour` (RGB). Box edges are rounded to whole pixels and clipped to the image.
pub fn draw_boxes(image: &mut RgbImage, detections: &[Detection], colour: [u8; 3]) {
    // `as usize` saturates: negative edges become 0.
    let clip = |edge: f32, limit: usize| (edge.round() as usize).min(limit);
    for detection in detections {
        let (left, right) = (clip(detection.left, image.width), clip(detection.right, image.width));
        let (top, bottom) = (clip(detection.top, image.height), clip(detection.bottom, image.height));
        for y in top..bottom {
            for x in left..right {
                if x < left + THICKNESS || x + THICKNESS >= right || y < top + THICKNESS || y + THICKNESS >= bottom {
                    image.pixels[(y * image.width + x) * 3..][..3].copy_from_slice(&colour);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_exactly_the_outline() {
        let mut image = RgbImage { width: 12, height: 9, pixels: vec![50; 12 * 9 * 3] };
        let detection = Detection { left: 2.2, top: 0.8, right: 8.4, bottom: 7.0, confidence: 0.9 };
        draw_boxes(&mut image, &[detection], [255, 0, 0]);
        // The box covers x 2..8, y 1..7; its inside, 2 pixels in from each edge, x 4..6, y 3..5.
        for y in 0..9 {
            for x in 0..12 {
                let in_box = (2..8).contains(&x) && (1..7).contains(&y);
                let inside = (4..6).contains(&x) && (3..5).contains(&y);
                let expected = if in_box && !inside { [255, 0, 0] } else { [50; 3] };
                assert_eq!(image.pixels[(y * 12 + x) * 3..][..3], expected, "({x}, {y})");
            }
        }
    }

    #[test]
    fn boxes_beyond_the_image_are_clipped() {
        let mut image = RgbImage { width: 4, height: 3, pixels: vec![0; 4 * 3 * 3] };
        let detection = Detection { left: -10.0, top: -5.0, right: 100.0, bottom: 1.0, confidence: 0.5 };
        draw_boxes(&mut image, &[detection], [0, 255, 0]);
        let green = image.pixels.chunks_exact(3).filter(|p| *p == [0, 255, 0]).count();
        assert_eq!(green, 4, "the first row");
    }
}

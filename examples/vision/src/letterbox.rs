//! Fitting an image into a square model input: scaled to fit, centred, padded with black.

use crate::{Detection, RgbImage};

/// Where a letterboxed image lies in its square: maps the square's coordinates back to the
/// original image's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    /// The square's side, in pixels.
    size: f32,
    /// The padding left of and above the scaled image, in the square's pixels.
    offset: (f32, f32),
    /// The square's pixels per original pixel, horizontally and vertically (they differ only by
    /// the rounding of the scaled size).
    scale: (f32, f32),
    /// The original image's width and height.
    original: (f32, f32),
}

impl Transform {
    /// The original pixel coordinates of the point at (`x`, `y`) normalized to 0..1 in the square.
    /// Points in the padding map outside the image.
    pub fn point(&self, x: f32, y: f32) -> (f32, f32) {
        ((x * self.size - self.offset.0) / self.scale.0, (y * self.size - self.offset.1) / self.scale.1)
    }

    /// `detection`, with its box normalized to 0..1 in the square, in the original's pixels,
    /// clipped to the image.
    pub fn detection(&self, detection: &Detection) -> Detection {
        let (left, top) = self.point(detection.left, detection.top);
        let (right, bottom) = self.point(detection.right, detection.bottom);
        let (width, height) = self.original;
        Detection {
            left: left.clamp(0.0, width),
            top: top.clamp(0.0, height),
            right: right.clamp(0.0, width),
            bottom: bottom.clamp(0.0, height),
            confidence: detection.confidence,
        }
    }
}

/// `image` scaled (by area averaging) so that its longer side is `size` pixels and centred on a
/// black `size`×`size` square: returns the square's RGB bytes (rows top to bottom) and the
/// transform back to the image. `image` must not be empty.
pub fn letterbox(image: &RgbImage, size: usize) -> (Vec<u8>, Transform) {
    let longer = image.width.max(image.height);
    let fit = |side: usize| ((side * size + longer / 2) / longer).max(1);
    let (width, height) = (fit(image.width), fit(image.height));
    let (x0, y0) = ((size - width) / 2, (size - height) / 2);
    let mut square = vec![0; size * size * 3];
    for (row, line) in resize(image, width, height).chunks_exact(width * 3).enumerate() {
        let start = ((y0 + row) * size + x0) * 3;
        square[start..start + width * 3].copy_from_slice(line);
    }
    let transform = Transform {
        size: size as f32,
        offset: (x0 as f32, y0 as f32),
        scale: (width as f32 / image.width as f32, height as f32 / image.height as f32),
        original: (image.width as f32, image.height as f32),
    };
    (square, transform)
}

/// For each of `to` cells laid over the same length as `from` cells, the `from` cells it covers,
/// each with the share of it that they cover (the shares add up to 1).
fn area_weights(from: usize, to: usize) -> Vec<Vec<(usize, f32)>> {
    let span = from as f64 / to as f64;
    (0..to)
        .map(|i| {
            let (start, end) = (i as f64 * span, (i + 1) as f64 * span);
            (start.floor() as usize..(end.ceil() as usize).min(from))
                .map(|j| (j, ((end.min(j as f64 + 1.0) - start.max(j as f64)) / span) as f32))
                .filter(|&(_, weight)| weight > 0.0)
                .collect()
        })
        .collect()
}

/// `image` resampled to `width`×`height` RGB bytes: each pixel is the mean of the area of the
/// image it covers (one pass per axis).
fn resize(image: &RgbImage, width: usize, height: usize) -> Vec<u8> {
    let (columns, rows) = (area_weights(image.width, width), area_weights(image.height, height));
    let mut narrowed = Vec::with_capacity(image.height * width * 3);
    for line in image.pixels.chunks_exact(image.width * 3) {
        for weights in &columns {
            let mut sum = [0.0f32; 3];
            for &(x, weight) in weights {
                for (channel, total) in sum.iter_mut().enumerate() {
                    *total += weight * f32::from(line[x * 3 + channel]);
                }
            }
            narrowed.extend(sum);
        }
    }
    let stride = width * 3;
    rows.iter()
        .flat_map(|weights| {
            let narrowed = &narrowed;
            (0..stride).map(move |i| {
                let value: f32 = weights.iter().map(|&(y, weight)| weight * narrowed[y * stride + i]).sum();
                value.round() as u8 // saturating
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::assert_near;

    /// A `width`×`height` image of one gray level.
    fn plain(width: usize, height: usize, level: u8) -> RgbImage {
        RgbImage { width, height, pixels: vec![level; width * height * 3] }
    }

    /// The gray level of pixel (`x`, `y`) of a square of side `size`, if its channels agree.
    fn level(square: &[u8], size: usize, x: usize, y: usize) -> u8 {
        let pixel = &square[(y * size + x) * 3..][..3];
        assert!(pixel[0] == pixel[1] && pixel[1] == pixel[2], "{pixel:?} at ({x}, {y})");
        pixel[0]
    }

    #[test]
    fn a_landscape_image_is_padded_above_and_below() {
        let (square, _) = letterbox(&plain(40, 20, 200), 16);
        assert_eq!(square.len(), 16 * 16 * 3);
        for y in 0..16 {
            for x in 0..16 {
                let expected = if (4..12).contains(&y) { 200 } else { 0 };
                assert_eq!(level(&square, 16, x, y), expected, "({x}, {y})");
            }
        }
    }

    #[test]
    fn a_small_portrait_image_is_enlarged_and_padded_left_and_right() {
        let (square, transform) = letterbox(&plain(10, 20, 90), 40);
        for x in 0..40 {
            assert_eq!(level(&square, 40, x, 17), if (10..30).contains(&x) { 90 } else { 0 }, "x {x}");
        }
        assert_eq!(transform.point(0.25, 0.0), (0.0, 0.0));
        assert_eq!(transform.point(0.75, 1.0), (10.0, 20.0));
        assert_eq!(transform.point(0.0, 0.5), (-5.0, 10.0), "the padding is outside the image");
    }

    #[test]
    fn area_averaging_means_the_covered_pixels() {
        // Columns of 0 and 255 halved: every output pixel covers one of each.
        let image = RgbImage { width: 4, height: 2, pixels: [[0; 3], [255; 3]].concat().repeat(4) };
        assert_eq!(resize(&image, 2, 1), [128; 6]);
        // Three to two: the middle pixel is split between both.
        let image = RgbImage { width: 3, height: 1, pixels: [[0; 3], [90; 3], [180; 3]].concat() };
        assert_eq!(resize(&image, 2, 1), [[30; 3], [150; 3]].concat());
    }

    #[test]
    fn a_box_found_in_the_square_maps_back_to_where_it_is_in_the_image() {
        // A bright 10×10 block at (120, 40) in a 200×100 image.
        let mut image = plain(200, 100, 0);
        for y in 40..50 {
            for x in 120..130 {
                image.pixels[(y * 200 + x) * 3..][..3].fill(255);
            }
        }
        let (square, transform) = letterbox(&image, 100);
        // Find the block in the square; its bounds, normalized, go back to the block's.
        let bright: Vec<(usize, usize)> = (0..100)
            .flat_map(|y| (0..100).map(move |x| (x, y)))
            .filter(|&(x, y)| level(&square, 100, x, y) > 0)
            .collect();
        let edge = |pick: fn(&(usize, usize)) -> usize, last: bool| {
            let values = bright.iter().map(pick);
            (if last { values.max().unwrap() + 1 } else { values.min().unwrap() }) as f32 / 100.0
        };
        let found = Detection {
            left: edge(|p| p.0, false),
            top: edge(|p| p.1, false),
            right: edge(|p| p.0, true),
            bottom: edge(|p| p.1, true),
            confidence: 0.7,
        };
        assert_near(&[found], &[Detection { left: 0.6, top: 0.45, right: 0.65, bottom: 0.5, confidence: 0.7 }]);
        let back = transform.detection(&found);
        assert_near(&[back], &[Detection { left: 120.0, top: 40.0, right: 130.0, bottom: 50.0, confidence: 0.7 }]);

        // The whole square spans the padding too: clipped to the image.
        let all = Detection { left: 0.0, top: 0.0, right: 1.0, bottom: 1.0, confidence: 1.0 };
        assert_eq!(
            transform.detection(&all),
            Detection { left: 0.0, top: 0.0, right: 200.0, bottom: 100.0, confidence: 1.0 }
        );
        assert_eq!(transform.point(0.0, 0.0), (0.0, -50.0));
    }
}

//! The pixel math, on 8-bit interleaved RGB: grayscale, LAB and CLAHE, each following OpenCV's
//! 8-bit implementation. Grayscale and CLAHE of a plane give the same bytes as OpenCV (checked
//! against OpenCV 5.0); LAB is computed in floating point where OpenCV uses fixed-point tables, so
//! a channel may differ from OpenCV's by 1 to 3, and a full CLAHE of an RGB image by a few levels.

use std::borrow::Cow;
use std::sync::OnceLock;

use vision::RgbImage;

/// The luma of one pixel as OpenCV's `COLOR_BGR2GRAY` computes it for 8-bit images:
/// Y = 0.299 R + 0.587 G + 0.114 B in 14-bit fixed point, rounded.
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    const R: u32 = 4899; // round(0.299 * 2^14)
    const G: u32 = 9617; // round(0.587 * 2^14)
    const B: u32 = 1868; // round(0.114 * 2^14)
    ((u32::from(r) * R + u32::from(g) * G + u32::from(b) * B + (1 << 13)) >> 14) as u8
}

/// The image in grayscale: one luma byte per pixel.
pub fn rgb_to_gray(image: &RgbImage) -> Vec<u8> {
    image.pixels.chunks_exact(3).map(|p| luma(p[0], p[1], p[2])).collect()
}

// sRGB (D65) to XYZ and back, and the D65 white point, as OpenCV's color_lab.cpp has them.
const RGB_TO_XYZ: [[f32; 3]; 3] =
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]];
const XYZ_TO_RGB: [[f32; 3]; 3] =
    [[3.240479, -1.53715, -0.498535], [-0.969256, 1.875991, 0.041556], [0.055648, -0.204043, 1.057311]];
const WHITE_X: f32 = 0.950456;
const WHITE_Z: f32 = 1.088754;
/// Below this (relative) luminance, CIELAB's cube root is replaced by a line.
const LAB_THRESHOLD: f32 = 0.008856;

/// The sRGB transfer function undone: 8-bit value to linear light in 0..1 (a table of 256).
fn srgb_to_linear(v: u8) -> f32 {
    static TABLE: OnceLock<[f32; 256]> = OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|v| srgb_decode(v as f32 / 255.0)))[usize::from(v)]
}

/// The sRGB transfer function undone, on 0..1.
fn srgb_decode(c: f32) -> f32 {
    if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
}

/// Linear light in 0..1 to an 8-bit sRGB value: the rounded sRGB transfer function, found by a
/// binary search of the linear values where the rounded result steps up (no `powf` per pixel).
fn linear_to_srgb(c: f32) -> u8 {
    static STEPS: OnceLock<[f32; 255]> = OnceLock::new();
    let steps = STEPS.get_or_init(|| std::array::from_fn(|k| srgb_decode((k as f32 + 0.5) / 255.0)));
    steps.partition_point(|&step| step <= c) as u8
}

/// Rounds half to even and clamps to 0..=255, like OpenCV's `saturate_cast<uchar>(float)`.
fn saturate(v: f32) -> u8 {
    v.round_ties_even().clamp(0.0, 255.0) as u8
}

/// CIELAB's f(t).
fn lab_f(t: f32) -> f32 {
    if t > LAB_THRESHOLD { t.cbrt() } else { 7.787 * t + 16.0 / 116.0 }
}

/// CIELAB's f⁻¹.
fn lab_f_inv(f: f32) -> f32 {
    // 0.206893 = cbrt(0.008856)
    if f > 0.206_893 { f * f * f } else { (f - 16.0 / 116.0) / 7.787 }
}

/// One sRGB pixel in 8-bit LAB, like OpenCV's `COLOR_RGB2LAB`: L* scaled to 0..255 (·255/100),
/// a* and b* offset by 128.
pub fn rgb_to_lab(r: u8, g: u8, b: u8) -> [u8; 3] {
    let rgb = [srgb_to_linear(r), srgb_to_linear(g), srgb_to_linear(b)];
    let [x, y, z] = RGB_TO_XYZ.map(|row| row[0] * rgb[0] + row[1] * rgb[1] + row[2] * rgb[2]);
    let (fx, fy, fz) = (lab_f(x / WHITE_X), lab_f(y), lab_f(z / WHITE_Z));
    let l = if y > LAB_THRESHOLD { 116.0 * fy - 16.0 } else { 903.3 * y };
    [saturate(l * 255.0 / 100.0), saturate(500.0 * (fx - fy) + 128.0), saturate(200.0 * (fy - fz) + 128.0)]
}

/// One 8-bit LAB pixel (as [`rgb_to_lab`] makes them) back in sRGB, like OpenCV's
/// `COLOR_LAB2RGB`; colors outside sRGB are clamped.
pub fn lab_to_rgb(lab: [u8; 3]) -> [u8; 3] {
    let l = f32::from(lab[0]) * 100.0 / 255.0;
    let a = f32::from(lab[1]) - 128.0;
    let b = f32::from(lab[2]) - 128.0;
    let (y, fy) = if l <= 8.0 {
        let y = l / 903.3;
        (y, 7.787 * y + 16.0 / 116.0)
    } else {
        let fy = (l + 16.0) / 116.0;
        (fy * fy * fy, fy)
    };
    let x = lab_f_inv(fy + a / 500.0) * WHITE_X;
    let z = lab_f_inv(fy - b / 200.0) * WHITE_Z;
    XYZ_TO_RGB.map(|row| linear_to_srgb(row[0] * x + row[1] * y + row[2] * z))
}

/// Contrast Limited Adaptive Histogram Equalization of an 8-bit plane (`width * height` bytes),
/// as OpenCV's `createCLAHE(clip_limit, (tiles_x, tiles_y)).apply` does it:
///
/// - a plane whose size is not a multiple of the grid is padded at the right and bottom by
///   `tiles - size % tiles` on both axes (a whole extra tile row or column on an axis that was a
///   multiple, as OpenCV does), mirrored reflect-101 like OpenCV's `copyMakeBorder`, for the
///   histograms only;
/// - each tile's 256-bin histogram is clipped at `max(1, ⌊clip_limit · tile area / 256⌋)`; the
///   clipped count is spread evenly over all bins and the remainder one by one, every
///   `max(256 / remainder, 1)`-th bin from the first;
/// - each tile's lookup table is its cumulative histogram scaled to 0..255;
/// - each pixel is mapped through the 4 nearest tiles' tables, interpolated bilinearly between
///   tile centres (clamped at the borders).
///
/// A `clip_limit` of 0 or less disables clipping (plain adaptive equalization).
pub fn clahe(plane: &[u8], width: usize, height: usize, clip_limit: f64, tiles_x: usize, tiles_y: usize) -> Vec<u8> {
    assert_eq!(plane.len(), width * height, "plane size");
    assert!(tiles_x > 0 && tiles_y > 0, "empty tile grid");
    if width == 0 || height == 0 {
        return Vec::new();
    }
    let (padded, padded_width) = if width.is_multiple_of(tiles_x) && height.is_multiple_of(tiles_y) {
        (Cow::Borrowed(plane), width)
    } else {
        let padded_width = width + tiles_x - width % tiles_x;
        let padded_height = height + tiles_y - height % tiles_y;
        let mut padded = Vec::with_capacity(padded_width * padded_height);
        for y in 0..padded_height {
            let row = &plane[reflect_101(y, height) * width..][..width];
            padded.extend((0..padded_width).map(|x| row[reflect_101(x, width)]));
        }
        (Cow::Owned(padded), padded_width)
    };
    let tile_width = padded_width / tiles_x;
    let tile_height = padded.len() / padded_width / tiles_y;
    let tile_area = tile_width * tile_height;

    let clip = (clip_limit > 0.0).then(|| ((clip_limit * tile_area as f64 / 256.0) as u32).max(1));
    let lut_scale = 255.0 / tile_area as f32;
    let mut luts = vec![[0u8; 256]; tiles_x * tiles_y];
    for (tile, lut) in luts.iter_mut().enumerate() {
        let (left, top) = ((tile % tiles_x) * tile_width, (tile / tiles_x) * tile_height);
        let mut histogram = [0u32; 256];
        for y in top..top + tile_height {
            for &v in &padded[y * padded_width + left..][..tile_width] {
                histogram[usize::from(v)] += 1;
            }
        }
        if let Some(clip) = clip {
            clip_histogram(&mut histogram, clip);
        }
        let mut sum = 0;
        for (entry, count) in lut.iter_mut().zip(histogram) {
            sum += count;
            *entry = saturate(sum as f32 * lut_scale);
        }
    }

    // Where each column falls between tile centres: left and right tile, weight of the right one.
    let columns: Vec<(usize, usize, f32)> = (0..width)
        .map(|x| {
            let (first, second, weight) = between_centres(x, tile_width, tiles_x);
            (first, second, weight)
        })
        .collect();
    let mut out = Vec::with_capacity(width * height);
    for y in 0..height {
        let (top, bottom, wy) = between_centres(y, tile_height, tiles_y);
        let (top_luts, bottom_luts) = (&luts[top * tiles_x..][..tiles_x], &luts[bottom * tiles_x..][..tiles_x]);
        for (x, &v) in plane[y * width..][..width].iter().enumerate() {
            let (left, right, wx) = columns[x];
            let v = usize::from(v);
            let upper = f32::from(top_luts[left][v]) * (1.0 - wx) + f32::from(top_luts[right][v]) * wx;
            let lower = f32::from(bottom_luts[left][v]) * (1.0 - wx) + f32::from(bottom_luts[right][v]) * wx;
            out.push(saturate(upper * (1.0 - wy) + lower * wy));
        }
    }
    out
}

/// OpenCV's CLAHE on the lightness of an RGB image: to 8-bit LAB, [`clahe`] of L with the given
/// clip limit and an 8×8 grid, and back to RGB (a* and b* are kept).
pub fn clahe_rgb(image: &RgbImage, clip_limit: f64) -> RgbImage {
    let lab: Vec<[u8; 3]> = image.pixels.chunks_exact(3).map(|p| rgb_to_lab(p[0], p[1], p[2])).collect();
    let lightness: Vec<u8> = lab.iter().map(|p| p[0]).collect();
    let equalized = clahe(&lightness, image.width, image.height, clip_limit, 8, 8);
    let pixels = lab.iter().zip(equalized).flat_map(|(&[_, a, b], l)| lab_to_rgb([l, a, b])).collect();
    RgbImage { width: image.width, height: image.height, pixels }
}

/// Clips `histogram` at `clip` and spreads the clipped count over all bins, as OpenCV does.
fn clip_histogram(histogram: &mut [u32; 256], clip: u32) {
    let mut clipped = 0;
    for count in histogram.iter_mut() {
        if *count > clip {
            clipped += *count - clip;
            *count = clip;
        }
    }
    let batch = clipped / 256;
    let mut residual = (clipped % 256) as usize;
    for count in histogram.iter_mut() {
        *count += batch;
    }
    if let Some(step) = 256usize.checked_div(residual) {
        let step = step.max(1);
        let mut bin = 0;
        while bin < 256 && residual > 0 {
            histogram[bin] += 1;
            bin += step;
            residual -= 1;
        }
    }
}

/// For coordinate `p` along an axis of `tiles` tiles of `size` pixels: the tiles whose centres
/// are just before and after it (clamped to the grid) and the weight of the second, as OpenCV's
/// CLAHE interpolation computes them (in `f32`).
fn between_centres(p: usize, size: usize, tiles: usize) -> (usize, usize, f32) {
    let t = p as f32 * (1.0 / size as f32) - 0.5;
    let first = t.floor();
    let weight = t - first;
    let first = first as isize;
    let second = (first + 1).min(tiles as isize - 1) as usize;
    (first.max(0) as usize, second, weight)
}

/// Index `p` (possibly past the end) of an axis of `len` pixels mirrored without repeating the
/// edge pixel (OpenCV's `BORDER_REFLECT_101`: `dcb|abcd|cba`).
fn reflect_101(p: usize, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    let period = 2 * (len - 1);
    let p = p % period;
    if p < len { p } else { period - p }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Mean and standard deviation of `values`.
    fn mean_std(values: &[u8]) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }

    /// A low-contrast plane, values in 100..140: soft ripples (detail in every tile) on a gradient.
    fn low_contrast(width: usize, height: usize) -> Vec<u8> {
        let mut plane = Vec::with_capacity(width * height);
        for y in 0..height {
            for x in 0..width {
                let ripple = 14.0 * (x as f64 / 4.0).sin() * (y as f64 / 5.0).cos();
                plane.push((118.0 + ripple + 6.0 * x as f64 / width as f64).round() as u8);
            }
        }
        plane
    }

    /// A deterministic plane of values in 100..140 that changes from pixel to pixel.
    fn patterned(width: usize, height: usize) -> Vec<u8> {
        (0..height).flat_map(|y| (0..width).map(move |x| (100 + (x * 37 + y * 91 + x * y % 17) % 41) as u8)).collect()
    }

    /// 64-bit FNV-1a of `bytes`: a compact fingerprint of reference outputs.
    pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
    }

    #[test]
    fn luma_matches_opencv() {
        assert_eq!(luma(255, 0, 0), 76);
        assert_eq!(luma(0, 255, 0), 150);
        assert_eq!(luma(0, 0, 255), 29);
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(0, 0, 0), 0);
        assert_eq!(luma(200, 100, 50), 124); // 59.8 + 58.7 + 5.7 = 124.2
        for v in 0..=255 {
            assert_eq!(luma(v, v, v), v, "gray stays gray");
        }
        let image = RgbImage { width: 2, height: 1, pixels: vec![255, 0, 0, 10, 20, 30] };
        assert_eq!(rgb_to_gray(&image), vec![76, 18]); // 2.99 + 11.74 + 3.42 = 18.15
    }

    #[test]
    fn lab_of_known_colors_is_near_opencv() {
        // L* of white is 100 (255), of black 0; neutral colors have a* = b* = 0 (128).
        assert_eq!(rgb_to_lab(255, 255, 255), [255, 128, 128]);
        assert_eq!(rgb_to_lab(0, 0, 0), [0, 128, 128]);
        // What OpenCV 5.0's COLOR_RGB2LAB gives; its fixed-point tables and our floats differ by
        // at most 2 on a* (3 on a few colors of the whole cube).
        let opencv = [
            ([255, 0, 0], [136, 208, 195]),
            ([0, 255, 0], [224, 42, 211]),
            ([0, 0, 255], [82, 207, 20]),
            ([12, 200, 99], [181, 65, 167]),
            ([250, 240, 10], [237, 112, 219]),
            ([3, 7, 5], [5, 126, 129]),
            ([128, 128, 128], [137, 128, 128]),
            ([119, 119, 119], [128, 128, 128]),
        ];
        for ([r, g, b], expected) in opencv {
            let lab = rgb_to_lab(r, g, b);
            let error = lab.iter().zip(expected).map(|(&v, w)| v.abs_diff(w)).max().unwrap();
            assert!(error <= 1, "{:?}: {lab:?}, OpenCV {expected:?}", [r, g, b]);
        }
    }

    #[test]
    fn lab_round_trip_within_2() {
        // Everyday colors: skin, sky, grass, grays, pastels, primaries.
        let samples = [
            [0, 0, 0],
            [255, 255, 255],
            [128, 128, 128],
            [40, 40, 40],
            [120, 110, 100],
            [200, 150, 120],
            [135, 206, 235],
            [34, 139, 34],
            [101, 120, 140],
            [250, 240, 200],
            [90, 60, 30],
            [180, 220, 250],
            [60, 80, 200],
            [220, 60, 70],
            [160, 82, 45],
            [230, 230, 250],
            [255, 0, 0],
            [0, 0, 255],
        ];
        for [r, g, b] in samples {
            let back = lab_to_rgb(rgb_to_lab(r, g, b));
            let error = [r, g, b].iter().zip(back).map(|(&v, w)| v.abs_diff(w)).max().unwrap();
            assert!(error <= 2, "{:?} -> {:?} -> {back:?}", [r, g, b], rgb_to_lab(r, g, b));
        }
        // 8-bit LAB cannot keep every color: saturated colors with a dark channel (pure green,
        // yellow) come back up to ~25 off in that channel, in OpenCV too (which keeps 86% of the
        // cube within 2, worst 27). Check that we are no worse on a grid of the cube.
        let (mut within, mut total, mut worst) = (0, 0, 0);
        for r in (0..=255).step_by(15) {
            for g in (0..=255).step_by(15) {
                for b in (0..=255).step_by(15) {
                    let back = lab_to_rgb(rgb_to_lab(r, g, b));
                    let error = [r, g, b].iter().zip(back).map(|(&v, w)| v.abs_diff(w)).max().unwrap();
                    within += usize::from(error <= 2);
                    total += 1;
                    worst = worst.max(error);
                }
            }
        }
        let share = within as f64 / total as f64;
        println!("LAB round trip on a grid: {:.1}% within 2, worst {worst}", 100.0 * share);
        assert!(share >= 0.85 && worst <= 27, "{share} within 2, worst {worst}");
    }

    #[test]
    fn clahe_widens_a_low_contrast_histogram() {
        let (width, height) = (256, 192);
        let plane = low_contrast(width, height);
        let out = clahe(&plane, width, height, 2.0, 8, 8);
        assert_eq!(out.len(), plane.len());
        let (mean_in, std_in) = mean_std(&plane);
        let (mean_out, std_out) = mean_std(&out);
        let range = |v: &[u8]| v.iter().max().unwrap() - v.iter().min().unwrap();
        println!(
            "in: mean {mean_in:.1} std {std_in:.1} range {}; out: mean {mean_out:.1} std {std_out:.1} range {}",
            range(&plane),
            range(&out)
        );
        assert!(std_out >= 2.0 * std_in, "std {std_in} -> {std_out}");
        assert!(range(&out) > 2 * range(&plane));
    }

    #[test]
    fn clahe_matches_opencv_exactly() {
        // cv2.createCLAHE(2.0, (8, 8)).apply(plane) with OpenCV 5.0, for sizes that are multiples
        // of the grid and sizes that are padded (17x8 and 40x30 get 8 extra rows: OpenCV pads both
        // axes as soon as one is not a multiple).
        let expected_17x8 = [
            [42, 255, 205, 170, 135, 92, 85, 78, 49, 42, 35, 255, 234, 212, 177, 170, 163],
            [170, 128, 78, 42, 255, 219, 212, 205, 177, 170, 163, 128, 106, 85, 56, 64, 71],
            [149, 128, 102, 85, 67, 53, 64, 74, 46, 191, 170, 149, 117, 103, 92, 85, 92],
            [255, 212, 184, 192, 198, 177, 85, 107, 85, 64, 42, 255, 212, 198, 177, 170, 163],
            [255, 255, 255, 255, 255, 138, 160, 180, 177, 85, 85, 78, 64, 230, 223, 202, 181],
            [85, 128, 149, 128, 177, 205, 212, 121, 163, 170, 205, 121, 128, 163, 234, 212, 219],
            [106, 128, 152, 32, 78, 102, 191, 216, 234, 149, 166, 191, 96, 120, 145, 244, 74],
            [170, 212, 255, 127, 234, 78, 128, 135, 248, 255, 163, 212, 234, 149, 205, 64, 142],
        ];
        assert_eq!(clahe(&patterned(17, 8), 17, 8, 2.0, 8, 8), expected_17x8.concat());
        for (width, height, expected) in
            [(64, 48, 0x4003_4716_cdff_ac80), (40, 30, 0x7ecd_6129_b075_9879), (256, 192, 0xac0b_7e1c_09aa_d420)]
        {
            let out = clahe(&patterned(width, height), width, height, 2.0, 8, 8);
            assert_eq!(fnv1a(&out), expected, "{width}x{height}");
        }
    }

    #[test]
    fn clahe_of_a_constant_plane_stays_constant() {
        // The clipped excess is spread over all 256 bins, so a constant c maps to about
        // c + 255 · clip / tile area: near c for tiles of a few hundred pixels or more.
        for (width, height) in [(256, 192), (250, 190), (640, 480)] {
            let out = clahe(&vec![120; width * height], width, height, 2.0, 8, 8);
            assert!(out.iter().all(|&v| v == out[0]), "{width}x{height}: not constant");
            assert!(out[0].abs_diff(120) <= 5, "{width}x{height}: 120 -> {}", out[0]);
        }
    }

    #[test]
    fn clahe_without_clipping_on_one_tile_is_global_equalization() {
        let plane: Vec<u8> = (0..64u32 * 32).map(|i| (i * 7 % 50 + 100) as u8).collect();
        let out = clahe(&plane, 64, 32, 0.0, 1, 1);
        let mut histogram = [0u32; 256];
        plane.iter().for_each(|&v| histogram[usize::from(v)] += 1);
        let cdf: Vec<u32> = histogram
            .iter()
            .scan(0, |sum, &count| {
                *sum += count;
                Some(*sum)
            })
            .collect();
        for (&v, &e) in plane.iter().zip(&out) {
            let expected = saturate(cdf[usize::from(v)] as f32 * 255.0 / plane.len() as f32);
            assert_eq!(e, expected);
        }
    }

    #[test]
    fn clip_spreads_the_excess_like_opencv() {
        let mut histogram = [0u32; 256];
        histogram[10] = 1000;
        clip_histogram(&mut histogram, 6);
        // 994 clipped: 3 for every bin, and the residual 226 one by one from bin 0.
        assert_eq!(histogram.iter().sum::<u32>(), 1000);
        assert_eq!(histogram[10], 6 + 3 + 1);
        assert_eq!(histogram[225], 4);
        assert_eq!(histogram[226], 3);
    }

    #[test]
    fn reflect_101_mirrors_without_the_edge() {
        let mirrored: Vec<usize> = (0..10).map(|p| reflect_101(p, 4)).collect();
        assert_eq!(mirrored, [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]);
        assert_eq!(reflect_101(7, 1), 0);
    }

    #[test]
    fn clahe_rgb_keeps_size_and_neutral_colors() {
        let image =
            RgbImage { width: 20, height: 10, pixels: (0..200).flat_map(|i| [100 + (i % 20) as u8; 3]).collect() };
        let out = clahe_rgb(&image, 2.0);
        assert_eq!((out.width, out.height, out.pixels.len()), (20, 10, 600));
        for p in out.pixels.chunks_exact(3) {
            assert!(p[0].abs_diff(p[1]) <= 2 && p[1].abs_diff(p[2]) <= 2, "gray stays gray: {p:?}");
        }
    }
}

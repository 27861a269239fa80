//! Example guest: the Dataloop FaaS tutorial "Multiple Functions and Modules" as a component.
//!
//! Two functions take an item of a dataset (an image, PNG or JPEG), download it, compute a new
//! image, upload it as a PNG under a folder of its own and link it to the original as a modality:
//!
//! - `rgb2gray`: 8-bit grayscale (OpenCV's `COLOR_BGR2GRAY`), to `/gray` + the item's folder,
//!   modality `gray`;
//! - `clahe-equalization`: CLAHE on the lightness (OpenCV's `createCLAHE(2.0, (8, 8))` on the L
//!   of LAB), to `/equ` + the item's folder, modality `equ`.
//!
//! The result keeps the item's name, with a `.png` extension when the original is a JPEG. Items
//! already under `/gray` or `/equ` are skipped, so a direct call on a result does not nest
//! `/equ/equ/...` (triggers cannot loop anyway: the host fires no triggers for changes made by
//! triggered executions). A link that already points to the result is not made again. Each step
//! prints a line to stdout, which the host keeps in the execution's log.
//!
//! The pixel math is in [`ops`] and the codecs in the `vision` crate's `codec`, plain Rust tested
//! natively (`cargo test -p image-process -p vision`); the second module of the app is the
//! `image-info` crate.

pub mod ops;

use guest_sdk::items::Dataset;
use vision::{RgbImage, codec};

wit_bindgen::generate!({
    world: "example:image-process/image-process",
    // The host's WIT first, so that `use host:api/items` in ours resolves.
    path: ["../../wit", "wit"],
    // The same Rust types as `guest_sdk::items`, so items pass straight to the SDK.
    with: { "host:api/items@0.1.0": guest_sdk::bindings::host::api::items },
});

/// OpenCV's default CLAHE clip limit, as in the tutorial.
const CLIP_LIMIT: f64 = 2.0;

/// The folders results go to; items in them are not processed.
const RESULT_FOLDERS: [&str; 2] = ["/gray", "/equ"];

/// The component's exports.
struct ImageProcess;

impl Guest for ImageProcess {
    fn rgb2gray(item: Item) -> Result<(), String> {
        derive(&item, "rgb2gray", "gray", |image| {
            let gray = ops::rgb_to_gray(image);
            codec::encode_png(image.width, image.height, 1, &gray)
        })
    }

    fn clahe_equalization(item: Item) -> Result<(), String> {
        derive(&item, "clahe", "equ", |image| {
            let equalized = ops::clahe_rgb(image, CLIP_LIMIT);
            codec::encode_png(image.width, image.height, 3, &equalized.pixels)
        })
    }
}

/// Downloads and decodes `item`, makes a PNG of it with `transform`, uploads it to folder
/// `/{modality}` followed by the item's folder and links it to the item as modality `modality`.
/// Logs each step as `{step}: item {id} ...`.
fn derive(
    item: &Item,
    step: &str,
    modality: &str,
    transform: impl FnOnce(&RgbImage) -> Result<Vec<u8>, String>,
) -> Result<(), String> {
    let log = |message: String| println!("{step}: item {} {message}", item.id);
    if RESULT_FOLDERS.iter().any(|folder| within(&item.dir, folder)) {
        log(format!("is in {}: a result, skipped", item.dir));
        return Ok(());
    }
    let dataset = Dataset::open(&item.dataset).map_err(|e| format!("opening dataset {:?}: {e}", item.dataset))?;
    let bytes = dataset.download(&item.id).map_err(|e| format!("downloading item {}: {e}", item.id))?;
    log(format!("{} downloaded: {} bytes", path(&item.dir, &item.name), bytes.len()));

    let (format, image) = codec::decode(&bytes).map_err(|e| format!("item {}: {e}", item.id))?;
    log(format!("decoded {format} {}x{}", image.width, image.height));

    let png = transform(&image)?;
    let dir = if item.dir == "/" { format!("/{modality}") } else { format!("/{modality}{}", item.dir) };
    let name = match format {
        codec::Format::Png => item.name.clone(),
        codec::Format::Jpeg => with_png_extension(&item.name),
    };
    let result = dataset
        .upload(&dir, &name, Some("image/png"), &png, None)
        .map_err(|e| format!("uploading {}: {e}", path(&dir, &name)))?;
    log(format!(
        "{}x{} -> {modality} item {} ({}, {} bytes)",
        image.width,
        image.height,
        result.id,
        path(&dir, &name),
        png.len()
    ));

    if item.modalities.iter().any(|m| m.name == modality && m.ref_ == result.id) {
        log(format!("already linked as {modality} to {}", result.id));
    } else {
        dataset
            .link_modality(&item.id, modality, &result.id)
            .map_err(|e| format!("linking modality {modality}: {e}"))?;
        log(format!("linked as {modality} to {}", result.id));
    }
    Ok(())
}

/// Whether folder `dir` is `folder` or below it.
fn within(dir: &str, folder: &str) -> bool {
    dir.strip_prefix(folder).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// `dir/name`, with one slash.
fn path(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

/// `name` with its extension (if any) replaced by `.png`.
fn with_png_extension(name: &str) -> String {
    let stem = match name.rfind('.') {
        Some(dot) if dot > 0 => &name[..dot],
        _ => name,
    };
    format!("{stem}.png")
}

export!(ImageProcess);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_names_and_folders() {
        assert_eq!(with_png_extension("hamster.jpg"), "hamster.png");
        assert_eq!(with_png_extension("a.b.jpeg"), "a.b.png");
        assert_eq!(with_png_extension("noext"), "noext.png");
        assert_eq!(with_png_extension(".hidden"), ".hidden.png");
        assert!(within("/gray", "/gray") && within("/gray/a", "/gray"));
        assert!(!within("/grayish", "/gray") && !within("/", "/gray"));
        assert_eq!(path("/", "x.png"), "/x.png");
        assert_eq!(path("/a/b", "x.png"), "/a/b/x.png");
    }

    /// Standard deviation of `values`.
    fn std_dev(values: &[u8]) -> f64 {
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        (values.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n).sqrt()
    }

    #[test]
    fn the_low_contrast_test_image_through_both_functions() {
        let (_, image) = codec::decode(include_bytes!("../../../tests/data/low-contrast.png")).unwrap();

        // Grayscale: the same bytes as OpenCV 5.0's cv2.cvtColor(bgr, COLOR_BGR2GRAY).
        let gray = ops::rgb_to_gray(&image);
        assert_eq!(ops::tests::fnv1a(&gray), 0x38c8_1207_fcc9_6855);
        let png = codec::encode_png(image.width, image.height, 1, &gray).unwrap();
        let (_, decoded) = codec::decode(&png).unwrap();
        assert_eq!(ops::rgb_to_gray(&decoded), gray);

        // CLAHE: the lightness spreads out.
        let lightness = |image: &RgbImage| -> Vec<u8> {
            image.pixels.chunks_exact(3).map(|p| ops::rgb_to_lab(p[0], p[1], p[2])[0]).collect()
        };
        let equalized = ops::clahe_rgb(&image, CLIP_LIMIT);
        let (before, after) = (lightness(&image), lightness(&equalized));
        let range = |v: &[u8]| v.iter().max().unwrap() - v.iter().min().unwrap();
        println!(
            "low-contrast.png L: std {:.1} -> {:.1}, range {} -> {}",
            std_dev(&before),
            std_dev(&after),
            range(&before),
            range(&after)
        );
        assert!(std_dev(&after) >= 2.0 * std_dev(&before));
        assert!(range(&after) >= 2 * range(&before));
    }
}

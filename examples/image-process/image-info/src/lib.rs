//! Example guest: the second module of the `image-process` app (the "Multiple Modules" part of
//! the Dataloop FaaS tutorial). `run` reads an image item's header (PNG or JPEG) and classifies
//! its orientation with a `classification` annotation labelled `landscape`, `portrait` or
//! `square`, made by model `image-info`. Running it again on an item that already has that
//! annotation adds no second one.

use guest_sdk::items::{AnnotationInput, Dataset, Geometry};

wit_bindgen::generate!({
    world: "example:image-process/image-info",
    // The host's WIT first, so that `use host:api/items` in ours resolves.
    path: ["../../../wit", "../wit"],
    // The same Rust types as `guest_sdk::items`.
    with: { "host:api/items@0.1.0": guest_sdk::bindings::host::api::items },
});

/// The model name on the annotations this module makes.
const MODEL: &str = "image-info";

/// The component's exports.
struct ImageInfo;

impl Guest for ImageInfo {
    fn run(item: Item) -> Result<String, String> {
        let dataset = Dataset::open(&item.dataset).map_err(|e| format!("opening dataset {:?}: {e}", item.dataset))?;
        let bytes = dataset.download(&item.id).map_err(|e| format!("downloading item {}: {e}", item.id))?;
        let header = header::read(&bytes).map_err(|e| format!("item {}: {e}", item.id))?;
        let label = orientation(header.width, header.height);
        let summary =
            format!("{}: {} {}x{} {}, {label}", item.name, header.format, header.width, header.height, header.color);
        println!("image-info: item {} {summary}", item.id);

        let annotations = dataset.annotations(&item.id).map_err(|e| format!("reading annotations: {e}"))?;
        let existing = annotations.iter().find(|a| {
            a.model.as_deref() == Some(MODEL) && a.label == label && matches!(a.geometry, Geometry::Classification)
        });
        let id = match existing {
            Some(annotation) => annotation.id.clone(),
            None => {
                let input = AnnotationInput {
                    geometry: Geometry::Classification,
                    label: label.into(),
                    confidence: Some(1.0),
                    model: Some(MODEL.into()),
                };
                let added = dataset.add_annotations(&item.id, &[input]).map_err(|e| format!("annotating: {e}"))?;
                added.into_iter().next().map(|a| a.id).unwrap_or_default()
            }
        };
        println!("image-info: item {} annotated {label} ({id})", item.id);
        Ok(summary)
    }
}

/// `landscape` (wider than tall), `portrait` (taller than wide) or `square`.
fn orientation(width: u32, height: u32) -> &'static str {
    match width.cmp(&height) {
        std::cmp::Ordering::Greater => "landscape",
        std::cmp::Ordering::Less => "portrait",
        std::cmp::Ordering::Equal => "square",
    }
}

/// Image headers, read without decoding pixels.
mod header {
    use std::io::Cursor;

    /// What a PNG or JPEG header says.
    pub struct Header {
        /// `png` or `jpeg`.
        pub format: &'static str,
        /// Width in pixels.
        pub width: u32,
        /// Height in pixels.
        pub height: u32,
        /// The color type and bit depth, e.g. `rgb8`, `gray16`, `indexed4`.
        pub color: String,
    }

    /// Reads the header of a PNG or JPEG.
    pub fn read(bytes: &[u8]) -> Result<Header, String> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            let reader = png::Decoder::new(Cursor::new(bytes)).read_info().map_err(|e| format!("bad PNG: {e}"))?;
            let info = reader.info();
            let color = match info.color_type {
                png::ColorType::Grayscale => "gray",
                png::ColorType::GrayscaleAlpha => "graya",
                png::ColorType::Rgb => "rgb",
                png::ColorType::Rgba => "rgba",
                png::ColorType::Indexed => "indexed",
            };
            let color = format!("{color}{}", info.bit_depth as u8);
            Ok(Header { format: "png", width: info.width, height: info.height, color })
        } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
            let mut decoder = jpeg_decoder::Decoder::new(bytes);
            decoder.read_info().map_err(|e| format!("bad JPEG: {e}"))?;
            let info = decoder.info().ok_or("JPEG without a frame")?;
            let color = match info.pixel_format {
                jpeg_decoder::PixelFormat::L8 => "gray8",
                jpeg_decoder::PixelFormat::L16 => "gray16",
                jpeg_decoder::PixelFormat::RGB24 => "rgb8",
                jpeg_decoder::PixelFormat::CMYK32 => "cmyk8",
            };
            Ok(Header { format: "jpeg", width: info.width.into(), height: info.height.into(), color: color.into() })
        } else {
            Err("not a PNG or JPEG image".into())
        }
    }
}

export!(ImageInfo);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orientations() {
        assert_eq!(orientation(640, 480), "landscape");
        assert_eq!(orientation(480, 640), "portrait");
        assert_eq!(orientation(7, 7), "square");
    }

    #[test]
    fn reads_the_test_images_headers() {
        let png = header::read(include_bytes!("../../../../tests/data/low-contrast.png")).unwrap();
        assert_eq!((png.format, png.width, png.height, png.color.as_str()), ("png", 256, 192, "rgb8"));
        let jpeg = header::read(include_bytes!("../../../../tests/data/tiny.jpg")).unwrap();
        assert_eq!((jpeg.format, jpeg.width, jpeg.height, jpeg.color.as_str()), ("jpeg", 48, 32, "rgb8"));
        assert!(header::read(b"GIF89a").is_err());
    }
}

//! Decoding PNG and JPEG to 8-bit RGB (`png`, `jpeg-decoder`) and encoding PNG (`png`).

use std::fmt;
use std::io::Cursor;

use crate::RgbImage;

/// The image formats the functions read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// PNG, any color type and bit depth.
    Png,
    /// Baseline or progressive JPEG, grayscale, YCbCr or CMYK.
    Jpeg,
}

impl Format {
    /// The format of `bytes`, from their signature; none when neither PNG nor JPEG.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
            Some(Self::Jpeg)
        } else {
            None
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
        })
    }
}

/// Decodes a PNG or JPEG to 8-bit RGB: 16-bit samples are reduced to 8, palettes expanded, gray
/// copied to the three channels, alpha dropped and CMYK converted naively.
pub fn decode(bytes: &[u8]) -> Result<(Format, RgbImage), String> {
    match Format::sniff(bytes) {
        Some(Format::Png) => decode_png(bytes).map(|image| (Format::Png, image)),
        Some(Format::Jpeg) => decode_jpeg(bytes).map(|image| (Format::Jpeg, image)),
        None => Err(format!("not a PNG or JPEG image (starts with {:02x?})", &bytes[..bytes.len().min(8)])),
    }
}

/// Decodes a PNG to 8-bit RGB.
fn decode_png(bytes: &[u8]) -> Result<RgbImage, String> {
    let error = |e: png::DecodingError| format!("bad PNG: {e}");
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(error)?;
    let size = reader.output_buffer_size().ok_or("PNG too large")?;
    let mut buffer = vec![0; size];
    let info = reader.next_frame(&mut buffer).map_err(error)?;
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err("PNG palette not expanded".into()),
    };
    let (width, height) = (info.width as usize, info.height as usize);
    let mut pixels = Vec::with_capacity(width * height * 3);
    for row in buffer.chunks_exact(info.line_size).take(height) {
        for pixel in row[..width * channels].chunks_exact(channels) {
            match channels {
                1 | 2 => pixels.extend([pixel[0]; 3]),
                _ => pixels.extend(&pixel[..3]),
            }
        }
    }
    Ok(RgbImage { width, height, pixels })
}

/// Decodes a JPEG to 8-bit RGB.
fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage, String> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    let data = decoder.decode().map_err(|e| format!("bad JPEG: {e}"))?;
    let info = decoder.info().ok_or("JPEG without a frame")?;
    let (width, height) = (usize::from(info.width), usize::from(info.height));
    if data.len() != width * height * info.pixel_format.pixel_bytes() {
        return Err(format!("JPEG {:?} data of unexpected size", info.pixel_format));
    }
    let pixels = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => data,
        jpeg_decoder::PixelFormat::L8 => data.iter().flat_map(|&v| [v; 3]).collect(),
        jpeg_decoder::PixelFormat::L16 => {
            data.chunks_exact(2).flat_map(|v| [(u16::from_ne_bytes([v[0], v[1]]) >> 8) as u8; 3]).collect()
        }
        jpeg_decoder::PixelFormat::CMYK32 => data
            .chunks_exact(4)
            .flat_map(|p| {
                let k = 255 - u32::from(p[3]);
                [0, 1, 2].map(|i| ((255 - u32::from(p[i])) * k / 255) as u8)
            })
            .collect(),
    };
    Ok(RgbImage { width, height, pixels })
}

/// Encodes 8-bit pixels as a PNG: `channels` 1 (gray) or 3 (RGB) bytes per pixel.
pub fn encode_png(width: usize, height: usize, channels: usize, pixels: &[u8]) -> Result<Vec<u8>, String> {
    let color = match channels {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        _ => return Err(format!("cannot encode {channels} channels")),
    };
    let error = |e: png::EncodingError| format!("PNG encoding failed: {e}");
    let (w, h) = (u32::try_from(width).map_err(|_| "too wide")?, u32::try_from(height).map_err(|_| "too tall")?);
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(error)?;
    writer.write_image_data(pixels).map_err(error)?;
    writer.finish().map_err(error)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trip() {
        let image = RgbImage { width: 3, height: 2, pixels: (0..18).map(|i| i * 14).collect() };
        let png = encode_png(3, 2, 3, &image.pixels).unwrap();
        assert_eq!(decode(&png).unwrap(), (Format::Png, image));

        let gray = encode_png(2, 2, 1, &[0, 50, 100, 255]).unwrap();
        let (_, decoded) = decode(&gray).unwrap();
        assert_eq!(decoded.pixels, [0, 0, 0, 50, 50, 50, 100, 100, 100, 255, 255, 255]);
    }

    #[test]
    fn decodes_the_test_images() {
        let (format, image) = decode(include_bytes!("../../../tests/data/low-contrast.png")).unwrap();
        assert_eq!((format, image.width, image.height), (Format::Png, 256, 192));
        let (min, max) = (image.pixels.iter().min().unwrap(), image.pixels.iter().max().unwrap());
        assert!(*min >= 95 && *max <= 155, "low contrast: {min}..{max}");

        let (format, image) = decode(include_bytes!("../../../tests/data/tiny.jpg")).unwrap();
        assert_eq!((format, image.width, image.height), (Format::Jpeg, 48, 32));
        // The generator paints the left half red-ish, the right half blue-ish: lossy, so roughly.
        let left = &image.pixels[(16 * 48 + 8) * 3..][..3];
        let right = &image.pixels[(16 * 48 + 40) * 3..][..3];
        assert!(left[0] > 150 && left[2] < 100, "left {left:?}");
        assert!(right[2] > 150 && right[0] < 100, "right {right:?}");
    }

    #[test]
    fn rejects_other_formats() {
        assert!(decode(b"GIF89a....").unwrap_err().contains("not a PNG or JPEG"));
        assert!(decode(b"\x89PNG\r\n\x1a\n broken").unwrap_err().starts_with("bad PNG"));
    }
}

//! scikit-learn's 8×8 handwritten digits (1797 images, 10 classes), read from the pinned
//! scikit-learn wheel on PyPI once and cached in `.cache/data` (sha256-checked): a real small
//! image dataset without a download from anywhere but the package registry.

use std::process::Command;
use std::sync::OnceLock;

use crate::common::{python_tools, root};

/// The wheel the data comes from, and the sha256 of the decompressed `digits.csv`.
const SCIKIT_LEARN: &str = "scikit-learn==1.7.2";
const DIGITS_SHA256: &str = "6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8";

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Every digit: (label, 64 pixels from 0 to 16, row by row).
pub fn digits() -> &'static [(u8, [u8; 64])] {
    static DIGITS: OnceLock<Vec<(u8, [u8; 64])>> = OnceLock::new();
    DIGITS.get_or_init(|| {
        let csv = root().join(".cache/data/digits.csv");
        if std::fs::read(&csv).map(|b| sha256(&b)).ok().as_deref() != Some(DIGITS_SHA256) {
            let wheels = root().join(".cache/wheels");
            let status = Command::new(python_tools().join("pip"))
                .args(["download", "--quiet", "--no-deps", "--only-binary=:all:", SCIKIT_LEARN, "-d"])
                .arg(&wheels)
                .status()
                .unwrap();
            assert!(status.success(), "pip download {SCIKIT_LEARN} failed");
            let extract = r#"
import sys, zipfile, glob, gzip, os
wheel = glob.glob(os.path.join(sys.argv[1], "scikit_learn-1.7.2-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    open(sys.argv[2], "wb").write(gzip.decompress(z.read("sklearn/datasets/data/digits.csv.gz")))
"#;
            std::fs::create_dir_all(csv.parent().unwrap()).unwrap();
            let status = Command::new("python3").args(["-c", extract]).arg(&wheels).arg(&csv).status().unwrap();
            assert!(status.success(), "extracting digits.csv from the {SCIKIT_LEARN} wheel failed");
            assert_eq!(sha256(&std::fs::read(&csv).unwrap()), DIGITS_SHA256, "sha256 of digits.csv");
        }
        let text = std::fs::read_to_string(&csv).unwrap();
        text.lines()
            .map(|line| {
                let values: Vec<u8> = line.split(',').map(|v| v.trim().parse::<f32>().unwrap() as u8).collect();
                assert_eq!(values.len(), 65, "64 pixels and a label per line");
                (values[64], values[..64].try_into().unwrap())
            })
            .collect()
    })
}

/// A digit as an 8×8 grayscale PNG (pixel values scaled from 0..16 to 0..255).
pub fn png(pixels: &[u8; 64]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, 8, 8);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let gray: Vec<u8> = pixels.iter().map(|&v| (u16::from(v) * 255 / 16) as u8).collect();
    encoder.write_header().unwrap().write_image_data(&gray).unwrap();
    bytes
}

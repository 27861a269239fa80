//! Golden tests: every `tests/manifest/*.toml` is an invalid manifest, and the sibling `.err`
//! file holds the exact error text it must produce (as printed, with the manifest path
//! `host.toml`). Run with `BLESS=1` to write the `.err` files from the current output after a
//! deliberate change of wording, then review the diff.

use std::path::{Path, PathBuf};

use super::Manifest;

/// The folder of the golden files.
fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/manifest")
}

#[test]
fn every_invalid_manifest_fails_with_its_golden_error_text() {
    let bless = std::env::var_os("BLESS").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "golden files missing: {cases:?}");
    let mut failures = Vec::new();
    for case in &cases {
        let text = std::fs::read_to_string(case).unwrap();
        let actual = match Manifest::parse(Path::new("host.toml"), &text) {
            Ok(_) => "(no error)".to_string(),
            Err(e) => e.to_string(),
        };
        let expected_path = case.with_extension("err");
        if bless {
            std::fs::write(&expected_path, format!("{actual}\n")).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected.trim_end_matches('\n') != actual {
            failures.push(format!("{}:\n  expected: {expected:?}\n  actual:   {actual:?}", case.display()));
        }
    }
    assert!(failures.is_empty(), "{} golden error texts differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_golden_error_has_its_manifest() {
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "err") {
            assert!(path.with_extension("toml").exists(), "{} has no .toml", path.display());
        }
    }
}

//! A bundle: one app as a single deterministic tar, named by its sha256. It holds `host.toml`
//! (the app's manifest with every file reference pointing into the bundle and the build settings
//! dropped), the components under `components/`, model files under `models/`, the site under
//! `site/` and the outbound CA file as `ca.pem`. Packing the same files twice gives the same
//! bytes, so the digest names the content.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::DeployError;
use crate::manifest::{Manifest, ModelSource};

/// The manifest's name inside a bundle.
pub const MANIFEST: &str = "host.toml";

/// The largest bundle accepted, packed, unpacked or pulled from a registry, in bytes (512 MiB):
/// nothing can make a server or client hold more for one.
pub const MAX_BUNDLE: u64 = 512 << 20;

/// Most files in a bundle.
const MAX_FILES: usize = 10_000;

/// One app, packed.
#[derive(Clone)]
pub struct Bundle {
    bytes: Vec<u8>,
    digest: String,
    app: String,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bundle({} {}, {} bytes)", self.app, self.digest, self.bytes.len())
    }
}

impl Bundle {
    /// Pack the app of `manifest`: the manifest is checked as a load would, and every file it
    /// names must exist (build the app first).
    pub fn pack(manifest: &Path) -> Result<Bundle, DeployError> {
        let checked = Manifest::load(manifest)?;
        let text = std::fs::read_to_string(manifest)
            .map_err(|e| DeployError::Pack(format!("cannot read {}: {e}", manifest.display())))?;
        let mut doc: toml_edit::DocumentMut =
            text.parse().map_err(|e| DeployError::Pack(format!("{}: {e}", manifest.display())))?;
        // (path inside the bundle, file on disk), manifest first, the rest sorted.
        let mut files: Vec<(String, PathBuf)> = Vec::new();
        for (name, spec) in &checked.functions {
            let inside = format!("components/{name}.wasm");
            let table = &mut doc["function"][name.as_str()];
            table["source"] = toml_edit::value(inside.as_str());
            if let Some(table) = table.as_table_like_mut() {
                table.remove("build");
                table.remove("build-inputs");
            }
            files.push((inside, spec.source.clone()));
        }
        for (name, spec) in &checked.models {
            if let ModelSource::Path(path) = &spec.source {
                let file = path.file_name().map_or("model.onnx".into(), |f| f.to_string_lossy().into_owned());
                let inside = format!("models/{name}/{file}");
                doc["model"][name.as_str()]["path"] = toml_edit::value(inside.as_str());
                files.push((inside, path.clone()));
            }
        }
        if let Some(site) = &checked.site {
            doc["site"]["dir"] = toml_edit::value("site");
            site_files(&site.dir, &site.dir, &mut files)?;
        }
        if let Some(ca) = &checked.outbound.ca_file {
            doc["outbound"]["ca-file"] = toml_edit::value("ca.pem");
            files.push(("ca.pem".into(), ca.clone()));
        }
        files.sort();
        let mut tar = tar::Builder::new(Vec::new());
        append(&mut tar, MANIFEST, doc.to_string().as_bytes())?;
        for (inside, path) in &files {
            let bytes = std::fs::read(path)
                .map_err(|e| DeployError::Pack(format!("cannot read {} (bundled as {inside}): {e}", path.display())))?;
            append(&mut tar, inside, &bytes)?;
        }
        let bytes = tar.into_inner().map_err(|e| DeployError::Pack(e.to_string()))?;
        if bytes.len() as u64 > MAX_BUNDLE {
            return Err(DeployError::Pack(format!(
                "the bundle is {} bytes, over the limit of {MAX_BUNDLE} bytes",
                bytes.len()
            )));
        }
        Ok(Bundle { digest: digest(&bytes), bytes, app: checked.app })
    }

    /// A bundle received as bytes: a tar of regular files with safe relative paths and a
    /// manifest naming the app. Nothing is written anywhere.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Bundle, DeployError> {
        let mut manifest = None;
        walk(&bytes, |path, entry| {
            if path == Path::new(MANIFEST) {
                let mut text = String::new();
                entry.read_to_string(&mut text).map_err(|e| bad(format!("{MANIFEST}: {e}")))?;
                manifest = Some(text);
            }
            Ok(())
        })?;
        let text = manifest.ok_or_else(|| bad(format!("it holds no {MANIFEST}")))?;
        let app = app_name(&text)?;
        Ok(Bundle { digest: digest(&bytes), bytes, app })
    }

    /// The packed bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// `sha256:HEX` of the bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The app it holds.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// Write the files into `dir` (made if missing); returns the manifest's path.
    pub fn unpack(&self, dir: &Path) -> Result<PathBuf, DeployError> {
        let io = |path: &Path, e: std::io::Error| DeployError::Store(format!("cannot write {}: {e}", path.display()));
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        walk(&self.bytes, |path, entry| {
            let target = dir.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
            }
            let mut file = std::fs::File::create(&target).map_err(|e| io(&target, e))?;
            std::io::copy(entry, &mut file).map_err(|e| io(&target, e))?;
            Ok(())
        })?;
        Ok(dir.join(MANIFEST))
    }
}

/// `sha256:HEX` of `bytes`.
fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    format!("sha256:{}", hash.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn bad(message: String) -> DeployError {
    DeployError::BadBundle(message)
}

/// The app named by a bundle's manifest text, checked as a manifest name is.
fn app_name(text: &str) -> Result<String, DeployError> {
    #[derive(serde::Deserialize)]
    struct Head {
        app: App,
    }
    #[derive(serde::Deserialize)]
    struct App {
        name: crate::manifest::ResourceName,
    }
    let head: Head = toml::from_str(text).map_err(|e| bad(format!("{MANIFEST}: {}", e.message())))?;
    Ok(head.app.name.0)
}

/// Call `each` with every file of the tar `bytes`, after checking its path and the totals.
fn walk(
    bytes: &[u8],
    mut each: impl FnMut(&Path, &mut tar::Entry<'_, &[u8]>) -> Result<(), DeployError>,
) -> Result<(), DeployError> {
    let mut archive = tar::Archive::new(bytes);
    let (mut count, mut total) = (0usize, 0u64);
    for entry in archive.entries().map_err(|e| bad(format!("not a tar archive: {e}")))? {
        let mut entry = entry.map_err(|e| bad(format!("not a tar archive: {e}")))?;
        let path = entry.path().map_err(|e| bad(format!("an entry's path: {e}")))?.into_owned();
        let safe = !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
        if !safe {
            return Err(bad(format!("entry `{}`: expected a relative path without `..`", path.display())));
        }
        if !entry.header().entry_type().is_file() {
            return Err(bad(format!("entry `{}`: only regular files may be bundled", path.display())));
        }
        count += 1;
        total += entry.size();
        if count > MAX_FILES || total > MAX_BUNDLE {
            return Err(bad(format!("over {MAX_FILES} files or {MAX_BUNDLE} bytes")));
        }
        each(&path, &mut entry)?;
    }
    Ok(())
}

/// Add one file with fixed metadata, so equal content packs to equal bytes.
fn append(tar: &mut tar::Builder<Vec<u8>>, path: &str, bytes: &[u8]) -> Result<(), DeployError> {
    let mut header = tar::Header::new_ustar();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, bytes).map_err(|e| DeployError::Pack(format!("cannot add {path}: {e}")))
}

/// Every regular file under `dir` (a site), as `site/REL`.
fn site_files(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) -> Result<(), DeployError> {
    let read = std::fs::read_dir(dir).map_err(|e| DeployError::Pack(format!("cannot read {}: {e}", dir.display())))?;
    for entry in read {
        let entry = entry.map_err(|e| DeployError::Pack(format!("cannot read {}: {e}", dir.display())))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| DeployError::Pack(format!("{}: {e}", path.display())))?;
        if kind.is_dir() {
            site_files(root, &path, files)?;
        } else if kind.is_file() {
            let rel = path.strip_prefix(root).expect("under the site folder");
            files.push((format!("site/{}", rel.to_string_lossy()), path));
        } else {
            return Err(DeployError::Pack(format!(
                "site file {} is not a regular file (symlinks are not bundled)",
                path.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, bytes) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            // `append_data` refuses `..`; the raw header write does not.
            header.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            tar.append(&header, *bytes).unwrap();
        }
        tar.into_inner().unwrap()
    }

    #[test]
    fn a_bundle_names_its_app_and_digest() {
        let bytes = tar_of(&[("host.toml", b"[app]\nname = \"shop\"\n"), ("components/a.wasm", b"\0asm")]);
        let bundle = Bundle::from_bytes(bytes.clone()).unwrap();
        assert_eq!(bundle.app(), "shop");
        assert_eq!(bundle.digest(), digest(&bytes));
        assert_eq!(bundle.digest().len(), "sha256:".len() + 64);
        let dir = tempfile::tempdir().unwrap();
        let manifest = bundle.unpack(dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("components/a.wasm")).unwrap(), b"\0asm");
        assert_eq!(manifest, dir.path().join("host.toml"));
    }

    #[test]
    fn unsafe_or_incomplete_bundles_are_refused() {
        let escape = tar_of(&[("host.toml", b"[app]\nname = \"x\"\n"), ("../evil", b"x")]);
        let error = Bundle::from_bytes(escape).unwrap_err().to_string();
        assert!(error.contains("entry `../evil`: expected a relative path without `..`"), "{error}");
        let no_manifest = tar_of(&[("a.wasm", b"x")]);
        assert!(Bundle::from_bytes(no_manifest).unwrap_err().to_string().contains("it holds no host.toml"));
        let bad_name = tar_of(&[("host.toml", b"[app]\nname = \"Shop!\"\n")]);
        assert!(Bundle::from_bytes(bad_name).unwrap_err().to_string().contains("invalid name `Shop!`"));
        let error = Bundle::from_bytes(b"not a tar at all".repeat(40)).unwrap_err().to_string();
        assert!(error.starts_with("bad bundle"), "{error}");
    }
}

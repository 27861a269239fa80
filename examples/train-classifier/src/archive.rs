//! The images of a dataset archive (the tutorial's `get_file(..., untar=True)`): a tar file,
//! gzipped or not, whose images sit in one folder per class (`CLASS/x.png`, or under a top folder,
//! `flower_photos/daisy/x.jpg`).

use std::io::Read;

/// An image of the archive.
#[derive(Debug, PartialEq, Eq)]
pub struct Image {
    /// The folder it is in: its class.
    pub class: String,
    /// Its file name.
    pub file: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Every PNG or JPEG file of `archive` that is in a folder, in archive order; other files, and
/// hidden ones (`.x`, macOS's `._x`), are skipped.
pub fn images(archive: &[u8]) -> Result<Vec<Image>, String> {
    // Gzip by its magic number, whatever the URL's extension says.
    let reader: Box<dyn Read + '_> = match archive.starts_with(&[0x1f, 0x8b]) {
        true => Box::new(flate2::read::GzDecoder::new(archive)),
        false => Box::new(archive),
    };
    let mut tar = tar::Archive::new(reader);
    let mut images = Vec::new();
    for entry in tar.entries().map_err(|e| format!("not a tar archive: {e}"))? {
        let mut entry = entry.map_err(|e| format!("reading the archive: {e}"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(|e| format!("an entry's path: {e}"))?.into_owned();
        let names: Vec<&str> = path.iter().filter_map(|part| part.to_str()).filter(|part| *part != ".").collect();
        let [.., class, file] = names.as_slice() else { continue };
        let lower = file.to_ascii_lowercase();
        let image = [".png", ".jpg", ".jpeg"].iter().any(|ext| lower.ends_with(ext));
        if !image || file.starts_with('.') || class.starts_with('.') {
            continue;
        }
        let (class, file) = (class.to_string(), file.to_string());
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| format!("reading {}: {e}", path.display()))?;
        images.push(Image { class, file, bytes });
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, *bytes).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn images_by_class_folder_from_tar_or_tar_gz() {
        let tar = archive(&[
            ("flowers/daisy/a.jpg", b"A"),
            ("flowers/tulips/B.PNG", b"B"),
            ("./roses/c.jpeg", b"C"),
            ("flowers/LICENSE.txt", b"text"),
            ("top.png", b"no folder"),
            ("flowers/daisy/._a.jpg", b"resource fork"),
            ("flowers/.hidden/d.png", b"hidden"),
        ]);
        let expected = [("daisy", "a.jpg", "A"), ("tulips", "B.PNG", "B"), ("roses", "c.jpeg", "C")];
        for bytes in [gzip(&tar), tar] {
            let found = images(&bytes).unwrap();
            let found: Vec<(&str, &str, &str)> = found
                .iter()
                .map(|i| (i.class.as_str(), i.file.as_str(), std::str::from_utf8(&i.bytes).unwrap()))
                .collect();
            assert_eq!(found, expected);
        }
    }

    #[test]
    fn what_is_not_a_tar_archive_is_refused() {
        let error = images(&[b'x'; 1024]).unwrap_err();
        assert!(error.starts_with("reading the archive: "), "{error}");
    }
}

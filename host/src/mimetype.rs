//! Mimetypes guessed from file names, for items and static sites.

/// The mimetype for a file name's extension (`application/octet-stream` when unknown).
pub fn guess(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e).to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" | "mjs" => "text/javascript",
        "json" | "map" => "application/json",
        "txt" | "md" => "text/plain",
        "csv" => "text/csv",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "pdf" => "application/pdf",
        "xml" => "application/xml",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "onnx" => "application/onnx",
        _ => "application/octet-stream",
    }
}

/// Whether `mimetype` matches `pattern`: exact, `type/*`, or `*`.
pub fn matches(pattern: &str, mimetype: &str) -> bool {
    match pattern.strip_suffix("/*") {
        _ if pattern == "*" => true,
        Some(kind) => mimetype.split_once('/').is_some_and(|(k, _)| k.eq_ignore_ascii_case(kind)),
        None => pattern.eq_ignore_ascii_case(mimetype),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_and_patterns() {
        assert_eq!(guess("a/index.HTML"), "text/html");
        assert_eq!(guess("noext"), "application/octet-stream");
        assert!(matches("image/*", "image/png") && matches("*", "x/y") && matches("image/png", "IMAGE/PNG"));
        assert!(!matches("image/*", "video/mp4") && !matches("image/png", "image/jpeg"));
    }
}

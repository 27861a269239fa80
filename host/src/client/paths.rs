//! The REST API's paths as the client spells them: every URL it sends is built here, so that
//! they can follow the server's route table from one place.

/// All apps with their functions: `GET` lists them.
pub fn apps() -> String {
    "/v1/apps".to_string()
}

/// One function: `POST` calls it (`?async=true` or `?enqueue=true` start it as a job).
pub fn function(app: &str, function: &str) -> String {
    format!("/v1/apps/{}/functions/{}", encode(app), encode(function))
}

/// `map` or `starmap` (`kind`) of a function.
pub fn function_map(app: &str, name: &str, kind: &str) -> String {
    format!("{}/{kind}", function(app, name))
}

/// The execution records: `GET` lists them.
pub fn executions() -> String {
    "/v1/executions".to_string()
}

/// One execution's record.
pub fn execution(id: &str) -> String {
    format!("{}/{}", executions(), encode(id))
}

/// `POST` cancels an execution.
pub fn cancel(id: &str) -> String {
    format!("{}/cancel", execution(id))
}

/// An execution's logs (`?follow=true`: as Server-Sent Events until it ends).
pub fn logs(id: &str) -> String {
    format!("{}/logs", execution(id))
}

/// A dataset's items: `GET` lists them, `POST` uploads one.
pub fn items(app: &str, dataset: &str) -> String {
    format!("/v1/apps/{}/datasets/{}/items", encode(app), encode(dataset))
}

/// One item, as JSON.
pub fn item(app: &str, dataset: &str, id: &str) -> String {
    format!("{}/{}", items(app, dataset), encode(id))
}

/// One item's bytes.
pub fn download(app: &str, dataset: &str, id: &str) -> String {
    format!("{}/download", item(app, dataset, id))
}

/// `path` with a query of the `pairs` that have a value, each value percent-encoded.
pub fn with_query(path: String, pairs: &[(&str, Option<&str>)]) -> String {
    let mut url = path;
    for (key, value) in pairs.iter().filter_map(|(key, value)| Some((key, (*value)?))) {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("{key}={}", encode(value)));
    }
    url
}

/// Percent-encode a path segment or query value.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_query_values_are_encoded() {
        assert_eq!(function("my app", "f.g"), "/v1/apps/my%20app/functions/f.g");
        assert_eq!(download("a", "d", "x/y"), "/v1/apps/a/datasets/d/items/x%2Fy/download");
        let listed = with_query(executions(), &[("limit", Some("20")), ("app", None), ("status", Some("a&b"))]);
        assert_eq!(listed, "/v1/executions?limit=20&status=a%26b");
        assert_eq!(with_query(items("a", "d"), &[("dir", None)]), "/v1/apps/a/datasets/d/items");
    }
}

//! The absolute `http`/`https` URLs the client sends to, and the redirect targets they lead to:
//! just enough of RFC 3986 to split a URL into what `wasi:http` asks for (scheme, authority, path
//! and query) and to resolve a `Location` against the URL it came from.

use std::fmt;

/// An absolute `http://` or `https://` URL, without its fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `true` for `https`.
    pub https: bool,
    /// Host and optional port, as written (the host lower-cased), e.g. `api.example.com:8443`.
    pub authority: String,
    /// The path (at least `/`) and the query, e.g. `/v1/detect?x=1`.
    pub path_and_query: String,
}

impl Url {
    /// Parses an absolute URL; the reason it is not one otherwise.
    pub fn parse(text: &str) -> Result<Url, String> {
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("a URL has no spaces or control characters".into());
        }
        let text = text.split('#').next().unwrap_or_default();
        let (scheme, rest) = text.split_once("://").ok_or("expected an absolute URL, `http://` or `https://`")?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            other => return Err(format!("unsupported scheme `{other}`: expected `http` or `https`")),
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        check_authority(authority)?;
        let path_and_query = match path.strip_prefix('?') {
            Some(query) => format!("/?{query}"),
            None if path.is_empty() => "/".into(),
            None => path.into(),
        };
        Ok(Url { https, authority: authority.to_ascii_lowercase(), path_and_query })
    }

    /// The URL a redirect's `Location` leads to, resolved against this one: an absolute URL, a
    /// scheme-relative `//host/path`, an absolute path, a query, or a path relative to this
    /// URL's folder (with `.` and `..` segments removed).
    pub fn join(&self, location: &str) -> Result<Url, String> {
        let location = location.trim();
        let has_scheme = location.split_once(':').is_some_and(|(scheme, _)| {
            !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        if has_scheme {
            return Url::parse(location);
        }
        if location.starts_with("//") {
            return Url::parse(&format!("{}:{location}", self.scheme()));
        }
        let location = location.split('#').next().unwrap_or_default();
        let path = self.path_and_query.split('?').next().unwrap_or("/");
        let path_and_query = if location.is_empty() {
            self.path_and_query.clone()
        } else if location.starts_with('?') {
            format!("{path}{location}")
        } else {
            let (relative, query) = location.split_at(location.find('?').unwrap_or(location.len()));
            let merged = match relative.starts_with('/') {
                true => relative.to_string(),
                false => format!("{}{relative}", &path[..=path.rfind('/').unwrap_or(0)]),
            };
            format!("{}{query}", remove_dot_segments(&merged))
        };
        Ok(Url { path_and_query, ..self.clone() })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    /// Whether `other` has the same scheme and authority: a redirect elsewhere does not carry
    /// credentials along.
    pub fn same_origin(&self, other: &Url) -> bool {
        self.https == other.https && self.authority == other.authority
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme(), self.authority, self.path_and_query)
    }
}

/// Checks `host[:port]` (an IPv6 host in brackets); user info (`user:pass@`) is refused so that
/// credentials go in headers, where a redirect to another host drops them.
fn check_authority(authority: &str) -> Result<(), String> {
    if authority.contains('@') {
        return Err("credentials in the URL (`user@host`) are not supported: send them in a header".into());
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, rest) = v6.split_once(']').ok_or("an IPv6 host without its closing `]`")?;
            match rest.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if rest.is_empty() => (host, None),
                None => return Err(format!("unexpected `{rest}` after the IPv6 host")),
            }
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    match port {
        Some(port) if port.parse::<u16>().is_err() => Err(format!("invalid port `{port}`")),
        _ => Ok(()),
    }
}

/// RFC 3986's `remove_dot_segments` on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        match *part {
            "." if last => segments.push(""),
            "." => {}
            ".." => {
                segments.pop();
                if last {
                    segments.push("");
                }
            }
            segment => segments.push(segment),
        }
    }
    format!("/{}", segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn parses_scheme_authority_path_and_query() {
        let u = url("HTTPS://API.Example.com:8443/v1/detect?x=1#frag");
        assert_eq!(
            (u.https, u.authority.as_str(), u.path_and_query.as_str()),
            (true, "api.example.com:8443", "/v1/detect?x=1")
        );
        assert_eq!(url("http://127.0.0.1:8089").path_and_query, "/");
        assert_eq!(url("http://h?q=1").path_and_query, "/?q=1");
        assert_eq!(url("http://[::1]:80/x").authority, "[::1]:80");
    }

    #[test]
    fn refuses_what_is_not_an_http_url() {
        let refused = |text: &str| Url::parse(text).unwrap_err();
        assert_eq!(refused("ftp://h/x"), "unsupported scheme `ftp`: expected `http` or `https`");
        assert_eq!(refused("/relative"), "expected an absolute URL, `http://` or `https://`");
        assert_eq!(refused("http:///path"), "no host");
        assert_eq!(refused("http://h:99999/"), "invalid port `99999`");
        assert_eq!(refused("http://h:/"), "invalid port ``");
        assert_eq!(refused("http://[::1/"), "an IPv6 host without its closing `]`");
        assert_eq!(
            refused("http://u:p@h/"),
            "credentials in the URL (`user@host`) are not supported: send them in a header"
        );
        assert_eq!(refused("http://h/a b"), "a URL has no spaces or control characters");
    }

    #[test]
    fn resolves_redirect_locations() {
        let base = url("http://a.example/dir/page?q=1");
        let join = |location: &str| base.join(location).unwrap().to_string();
        assert_eq!(join("https://b.example/x"), "https://b.example/x");
        assert_eq!(join("//b.example:81/y"), "http://b.example:81/y");
        assert_eq!(join("/root?z"), "http://a.example/root?z");
        assert_eq!(join("?other"), "http://a.example/dir/page?other");
        assert_eq!(join("next"), "http://a.example/dir/next");
        assert_eq!(join("../up/./x?k=v#f"), "http://a.example/up/x?k=v");
        assert_eq!(join("../../.."), "http://a.example/");
        assert_eq!(join(""), "http://a.example/dir/page?q=1");
        assert_eq!(base.join("mailto:x@y").unwrap_err(), "expected an absolute URL, `http://` or `https://`");
    }

    #[test]
    fn origins_compare_scheme_and_authority() {
        let a = url("http://a.example/x");
        assert!(a.same_origin(&url("http://A.example/y")));
        assert!(!a.same_origin(&url("https://a.example/x")));
        assert!(!a.same_origin(&url("http://a.example:8080/x")));
    }
}

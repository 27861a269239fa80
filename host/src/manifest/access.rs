//! Who may reach an app without a token: `public` of `[function.NAME]` (every export, or the
//! exports it names), and `[access]`: the rate limit of calls made without a token and the
//! origins whose pages may call the app (CORS).
//!
//! ```toml
//! [function.site-api]
//! public = ["status"]
//!
//! [access]
//! public-rate-limit = "60/min"
//! cors-origins = ["https://site.example.com"]
//! ```

use std::time::Duration;

use serde::Deserialize;

/// What an origin must look like, for the messages of every check of one.
pub const ORIGIN_EXPECTED: &str = "expected an origin like `https://app.example.com` (scheme and host, no path)";

/// Whether `origin` is a browser origin: `http://` or `https://`, then a host (and port), no path,
/// in ASCII without spaces. The one check of `--cors-origin` and `[access] cors-origins`.
pub fn valid_origin(origin: &str) -> bool {
    let authority = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
    authority.is_some_and(|a| !a.is_empty() && !a.contains('/'))
        && origin.is_ascii()
        && !origin.contains(char::is_whitespace)
}

/// Which exports of a function may be called without a token (`public`): none (the default),
/// all (`true`), or those named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Public {
    /// Every call needs a token.
    #[default]
    Nothing,
    /// `public = true`: every export.
    Every,
    /// `public = ["a", "b"]`: the exports named (as `host inspect` names them).
    Exports(Vec<String>),
}

impl Public {
    /// Whether the export called `export` (its short name, `greet` or `math.add`) is public.
    pub fn covers(&self, export: &str) -> bool {
        match self {
            Public::Nothing => false,
            Public::Every => true,
            Public::Exports(names) => names.iter().any(|n| n == export),
        }
    }

    /// Checked once the component's exports are known: every name must be one of `exports`.
    /// `at` is the key path (`function.NAME.public`).
    pub fn check_exports(&self, at: &str, exports: &[&str]) -> Result<(), String> {
        let Public::Exports(names) = self else { return Ok(()) };
        match names.iter().find(|n| !exports.contains(&n.as_str())) {
            Some(unknown) => Err(format!("{at}: no export `{unknown}`: the exports are {}", exports.join(", "))),
            None => Ok(()),
        }
    }

    /// Checked on its own: a list names each export once and is not empty.
    pub(super) fn check(self, at: &str) -> Result<Public, String> {
        if let Public::Exports(names) = &self {
            if names.is_empty() {
                return Err(format!("{at}: an empty list: leave `public` out, or name the exports"));
            }
            if let Some((i, twice)) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)) {
                return Err(format!("{at}: `{twice}` is listed twice (entry {})", i + 1));
            }
        }
        Ok(self)
    }
}

impl<'de> Deserialize<'de> for Public {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Public;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`true`, `false` or a list of export names")
            }

            fn visit_bool<E: serde::de::Error>(self, all: bool) -> Result<Public, E> {
                Ok(if all { Public::Every } else { Public::Nothing })
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Public, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(Public::Exports(names))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The most calls one client may make without a token in a window: a token bucket holding `count`
/// calls, refilled evenly over `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Calls per window, also the most at once (the burst).
    pub count: u32,
    /// The window: a second, a minute or an hour.
    pub per: Duration,
}

/// The largest `count` of a rate limit.
const MAX_RATE_COUNT: u32 = 1_000_000;

impl Default for RateLimit {
    /// 60 calls a minute, all of them at once at most.
    fn default() -> Self {
        RateLimit { count: 60, per: Duration::from_secs(60) }
    }
}

impl std::str::FromStr for RateLimit {
    type Err = String;

    /// `COUNT/UNIT`: `10/s`, `60/min`, `1000/h`.
    fn from_str(text: &str) -> Result<RateLimit, String> {
        let expected = || {
            format!(
                "invalid rate `{text}`: expected COUNT/UNIT like `60/min` (count 1 to {MAX_RATE_COUNT}, unit `s`, `min` or `h`)"
            )
        };
        let (count, unit) = text.split_once('/').ok_or_else(expected)?;
        let count =
            count.trim().parse::<u32>().ok().filter(|c| (1..=MAX_RATE_COUNT).contains(c)).ok_or_else(expected)?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "min" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(expected()),
        };
        Ok(RateLimit { count, per })
    }
}
deserialize_from_str!(RateLimit, |t: &str| t.parse::<RateLimit>());

impl std::fmt::Display for RateLimit {
    /// As written in the manifest: `60/min`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// `[access]`, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessSpec {
    /// Per client address, for calls without a token (public exports and public routes).
    pub public_rate_limit: RateLimit,
    /// Origins whose pages may call the app's API routes and `[[trigger.http]]` routes, besides
    /// the server's `--cors-origin`s.
    pub cors_origins: Vec<String>,
}

/// `[access]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawAccess {
    #[serde(default)]
    public_rate_limit: RateLimit,
    #[serde(default)]
    cors_origins: Vec<String>,
}

impl RawAccess {
    /// The section, its origins checked like `--cors-origin`.
    pub(super) fn check(self) -> Result<AccessSpec, String> {
        if let Some(bad) = self.cors_origins.iter().find(|o| !valid_origin(o)) {
            return Err(format!("access.cors-origins: `{bad}`: {ORIGIN_EXPECTED}"));
        }
        Ok(AccessSpec { public_rate_limit: self.public_rate_limit, cors_origins: self.cors_origins })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_their_units() {
        assert_eq!("60/min".parse(), Ok(RateLimit::default()));
        assert_eq!("5/s".parse(), Ok(RateLimit { count: 5, per: Duration::from_secs(1) }));
        assert_eq!("1000 / h".parse(), Ok(RateLimit { count: 1000, per: Duration::from_secs(3600) }));
        assert_eq!(
            ["5/s", "60/min", "7/h"].map(|t| t.parse::<RateLimit>().unwrap().to_string()),
            ["5/s", "60/min", "7/h"]
        );
        for bad in ["60", "0/min", "60/day", "-1/s", "x/s", "1000001/s", "/min"] {
            let err = bad.parse::<RateLimit>().unwrap_err();
            assert!(err.starts_with(&format!("invalid rate `{bad}`: expected COUNT/UNIT")), "{err}");
        }
    }

    #[test]
    fn origins_have_a_scheme_and_a_host_and_no_path() {
        for ok in ["https://site.example.com", "http://127.0.0.1:8080", "http://localhost:3000"] {
            assert!(valid_origin(ok), "{ok}");
        }
        for bad in
            ["site.example.com", "https://", "https://a.example/", "https://a.example/x", "ftp://a", "https://a b"]
        {
            assert!(!valid_origin(bad), "{bad}");
        }
    }

    #[test]
    fn public_lists_name_known_exports_once() {
        let some = Public::Exports(vec!["status".into(), "request-training".into()]);
        assert!(some.covers("status") && !some.covers("classify"));
        assert!(Public::Every.covers("x") && !Public::Nothing.covers("x"));
        assert_eq!(some.check_exports("function.f.public", &["status", "request-training", "classify"]), Ok(()));
        assert_eq!(
            some.check_exports("function.f.public", &["status", "classify"]),
            Err("function.f.public: no export `request-training`: the exports are status, classify".into())
        );
        assert_eq!(
            Public::Exports(vec!["a".into(), "b".into(), "a".into()]).check("p"),
            Err("p: `a` is listed twice (entry 3)".into())
        );
        assert_eq!(
            Public::Exports(Vec::new()).check("p"),
            Err("p: an empty list: leave `public` out, or name the exports".into())
        );
    }
}

//! `[[trigger.http]]` routes to `wasi:http` components and `[site]` static files: the paths
//! `host serve` answers for the app.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::function::FunctionSpec;
use crate::names::ResourceName;

/// Path prefixes `host serve` keeps for itself; routes and sites may not use them.
pub const RESERVED_ROUTES: [&str; 5] = ["/v1", "/ui", "/docs", "/metrics", "/healthz"];

/// One `[[trigger.http]]`: requests to `route` go to a component exporting
/// `wasi:http/incoming-handler`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// `/hello` matches exactly that path; `/hello/...` matches `/hello` and everything under it.
    pub route: String,
    /// The `[function.NAME]` handling the requests.
    pub function: String,
    /// Whether requests need no bearer token when the server has one.
    pub public: bool,
}

impl HttpRoute {
    /// The path prefix of a `/...` route, or `None` for an exact route.
    pub fn prefix(&self) -> Option<&str> {
        self.route.strip_suffix("/...")
    }

    /// Whether `path` is handled by this route.
    pub fn matches(&self, path: &str) -> bool {
        match self.prefix() {
            Some(prefix) => {
                path == prefix
                    || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/') || prefix.is_empty())
            }
            None => path == self.route,
        }
    }
}

/// `[site]`: a folder of static files served under `route` (always public).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The folder, resolved against the manifest's folder.
    pub dir: PathBuf,
    /// The path prefix it is served under, e.g. `/` or `/docs-site`.
    pub route: String,
}

/// A route: `/`, `/...`, or `/` and segments of URL-safe characters, optionally ending in `/...`.
struct RoutePath(String);
deserialize_from_str!(RoutePath, |t: &str| {
    let path = t.strip_suffix("/...").unwrap_or(t);
    let valid = t == "/"
        || path.is_empty()
        || path.starts_with('/')
            && path.split('/').skip(1).all(|seg| {
                !seg.chars().all(|c| c == '.') && seg.chars().all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
            });
    if !valid {
        return Err(format!(
            "invalid route `{t}`: expected `/` or a path like `/hello` (letters, digits and `-._~` between slashes), optionally ending in `/...`"
        ));
    }
    match RESERVED_ROUTES.iter().find(|r| path == **r || path.starts_with(&format!("{r}/"))) {
        Some(r) => Err(format!("invalid route `{t}`: `{r}` is reserved for the host's own API and pages")),
        None => Ok(RoutePath(t.to_string())),
    }
});

/// A `[[trigger.http]]` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttpRoute {
    route: RoutePath,
    function: ResourceName,
    #[serde(default)]
    public: bool,
}

/// The routes, checked: each names a function of `functions` and no route is used twice.
pub(super) fn check_routes(
    raw: Vec<RawHttpRoute>,
    functions: &BTreeMap<String, FunctionSpec>,
) -> Result<Vec<HttpRoute>, String> {
    let mut routes: Vec<HttpRoute> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        if !functions.contains_key(&r.function.0) {
            return Err(format!("trigger.http[{i}].function: no `[function.{}]` in this manifest", r.function));
        }
        if routes.iter().any(|other| other.route == r.route.0) {
            return Err(format!("trigger.http[{i}].route: `{}` is used twice", r.route.0));
        }
        routes.push(HttpRoute { route: r.route.0, function: r.function.0, public: r.public });
    }
    Ok(routes)
}

/// A `[site]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSite {
    dir: PathBuf,
    #[serde(default = "root_route")]
    route: RoutePath,
}

fn root_route() -> RoutePath {
    RoutePath("/".into())
}

impl RawSite {
    /// The site, its folder resolved against `base` and its route stored as a plain prefix (a site
    /// always serves everything under its route, so `/web/...` and `/web` mean the same).
    pub(super) fn resolve(self, base: &Path) -> Site {
        let route = match self.route.0.strip_suffix("/...") {
            Some("") => "/".into(),
            Some(prefix) => prefix.into(),
            None => self.route.0,
        };
        Site { dir: base.join(self.dir), route }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(text: &str) -> Result<String, String> {
        toml::from_str::<RawSite>(&format!("dir = \"d\"\nroute = {text:?}\n"))
            .map(|s| s.route.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn routes_are_url_safe_paths_outside_the_reserved_ones() {
        for good in ["/", "/...", "/hello", "/hello/...", "/a-b/c_d.e~f"] {
            assert_eq!(route(good).as_deref(), Ok(good));
        }
        for bad in ["hello", "/a//b", "/..", "/a/./b", "/a b", "/a?b"] {
            assert!(route(bad).unwrap_err().contains(&format!("invalid route `{bad}`: expected `/`")), "{bad}");
        }
        for reserved in ["/v1", "/v1/...", "/ui/x", "/metrics", "/healthz"] {
            assert!(route(reserved).unwrap_err().contains("is reserved"), "{reserved}");
        }
        assert!(route("/v10").is_ok() && route("/uix").is_ok());
    }

    #[test]
    fn prefix_routes_match_themselves_and_below() {
        let r = |route: &str| HttpRoute { route: route.into(), function: "f".into(), public: false };
        assert!(r("/hello").matches("/hello") && !r("/hello").matches("/hello/x"));
        assert!(r("/hello/...").matches("/hello") && r("/hello/...").matches("/hello/x/y"));
        assert!(!r("/hello/...").matches("/hellox") && r("/...").matches("/anything"));
    }

    #[test]
    fn a_site_route_is_stored_as_its_prefix() {
        let site = |route: &str| {
            let raw: RawSite = toml::from_str(&format!("dir = \"d\"\nroute = {route:?}\n")).unwrap();
            raw.resolve(Path::new("/apps/x")).route
        };
        assert_eq!([site("/"), site("/..."), site("/web/..."), site("/web")], ["/", "/", "/web", "/web"]);
        let raw: RawSite = toml::from_str("dir = \"public\"\n").unwrap();
        assert_eq!(raw.resolve(Path::new("/apps/x")), Site { dir: "/apps/x/public".into(), route: "/".into() });
    }
}

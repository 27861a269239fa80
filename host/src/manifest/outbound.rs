//! Outbound HTTP: a function's `grants.http` (the hosts it may reach, in Spin's
//! `allowed_outbound_hosts` syntax) and the app's `[outbound]` settings (name overrides, extra TLS
//! roots, timeouts and limits).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::units::{ByteSize, Timeout};

/// `http = [...]`: the hosts a function may send requests to. Empty: none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct HttpGrant(pub Vec<AllowedHost>);

impl HttpGrant {
    /// The entry that lets a request to `scheme://host:port` through, if one does.
    pub fn allowing(&self, scheme: &str, host: &str, port: u16) -> Option<&AllowedHost> {
        self.0.iter().find(|a| a.allows(scheme, host, port))
    }

    /// Whether an entry names `address` itself (or `localhost`, for a loopback address) for a
    /// request on `port`: only then may a name resolve to a loopback, private or link-local
    /// address.
    pub fn names_address(&self, scheme: &str, address: IpAddr, port: u16) -> bool {
        self.0.iter().any(|a| {
            a.scheme == scheme
                && a.port.allows(port, scheme)
                && match &a.host {
                    HostPattern::Exact(h) if h == "localhost" => address.is_loopback(),
                    HostPattern::Exact(h) => parse_ip(h).is_some_and(|ip| canonical(ip) == canonical(address)),
                    _ => false,
                }
        })
    }

    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One entry of `grants.http`: `scheme://host[:port]`, host with an optional leading `*.` (any
/// subdomain) or `*` alone (any host), port a number or `*` (default: the scheme's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// `http` or `https`.
    pub scheme: String,
    /// The host, lower case.
    pub host: HostPattern,
    /// The port.
    pub port: PortPattern,
}

/// The host part of an [`AllowedHost`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this name or address (IPv6 without brackets).
    Exact(String),
    /// `*.SUFFIX`: any name ending in `.SUFFIX`.
    Subdomains(String),
    /// `*`: any host.
    Any,
}

/// The port part of an [`AllowedHost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortPattern {
    /// The scheme's default port (80 or 443).
    Default,
    /// This port.
    Number(u16),
    /// `*`: any port.
    Any,
}

impl PortPattern {
    fn allows(self, port: u16, scheme: &str) -> bool {
        match self {
            PortPattern::Default => port == default_port(scheme),
            PortPattern::Number(n) => port == n,
            PortPattern::Any => true,
        }
    }
}

/// 443 for `https`, 80 otherwise.
pub fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

impl AllowedHost {
    /// Whether a request to `scheme://host:port` matches (`host` in any case, IPv6 without
    /// brackets).
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        self.scheme == scheme
            && self.port.allows(port, scheme)
            && match &self.host {
                HostPattern::Exact(h) => *h == host,
                HostPattern::Subdomains(suffix) => {
                    host.strip_suffix(suffix.as_str()).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
                        && parse_ip(&host).is_none()
                }
                HostPattern::Any => true,
            }
    }

    /// The entry's host as written (`*.example.org`), the label of its requests in metrics.
    pub fn host_label(&self) -> String {
        match &self.host {
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Subdomains(s) => format!("*.{s}"),
            HostPattern::Any => "*".into(),
        }
    }

    fn parse(text: &str) -> Result<AllowedHost, String> {
        let invalid = |why: &str| {
            format!(
                "invalid outbound host `{text}`: {why} (expected `http://HOST` or `https://HOST`, with an optional \
                 `:PORT` or `:*`; HOST may start with `*.`)"
            )
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| invalid("no scheme"))?;
        if scheme != "http" && scheme != "https" {
            return Err(invalid(&format!("scheme `{scheme}` is not http or https")));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(invalid("a path, query or user is not allowed"));
        }
        let (host, port) = split_port(rest).ok_or_else(|| invalid("bad port"))?;
        let host = host.to_ascii_lowercase();
        let host = match host.as_str() {
            "" => return Err(invalid("no host")),
            "*" => HostPattern::Any,
            h => match h.strip_prefix("*.") {
                Some(suffix) if valid_name(suffix) => HostPattern::Subdomains(suffix.into()),
                Some(_) => return Err(invalid("bad host")),
                None if valid_name(h) || parse_ip(h).is_some() => HostPattern::Exact(h.into()),
                None => return Err(invalid("bad host")),
            },
        };
        Ok(AllowedHost { scheme: scheme.into(), host, port })
    }
}
deserialize_from_str!(AllowedHost, AllowedHost::parse);

/// `host[:port]` → the host (IPv6 without brackets) and the port pattern; `None` for a bad port.
fn split_port(text: &str) -> Option<(&str, PortPattern)> {
    let (host, port) = match text.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        },
    };
    let port = match port {
        None => PortPattern::Default,
        Some("*") => PortPattern::Any,
        Some(n) => PortPattern::Number(n.parse().ok().filter(|n| *n > 0)?),
    };
    Some((host, port))
}

/// A DNS name: dot-separated labels of letters, digits and hyphens.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `host` as an IP address (IPv6 with or without brackets).
pub fn parse_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is one a name must not resolve to without an explicit grant: loopback, private,
/// link-local, unspecified (which reaches this machine), shared (CGNAT) or unique-local.
pub fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || v6.is_unspecified() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// `[outbound]`: how the app's functions reach the hosts they are granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundSpec {
    /// `resolve`: `"host:port"` → the address to connect to instead of asking DNS (like curl's
    /// `--resolve`). Only DNS: the address is checked like any other.
    pub resolve: BTreeMap<String, SocketAddr>,
    /// `ca-file`: a PEM file of extra TLS roots, resolved against the manifest's folder (read when
    /// the app is loaded).
    pub ca_file: Option<PathBuf>,
    /// Time to connect (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time from sending the request to the response's head.
    pub first_byte_timeout: Duration,
    /// Time between two pieces of the response body.
    pub between_bytes_timeout: Duration,
    /// Bytes of one response body a function may read; more fail with `HTTP-response-body-size`.
    pub max_response_body: u64,
    /// Outbound requests one call may have in flight (from sending to the end of the body).
    pub requests_at_once: u32,
}

impl Default for OutboundSpec {
    fn default() -> OutboundSpec {
        OutboundSpec {
            resolve: BTreeMap::new(),
            ca_file: None,
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(30),
            between_bytes_timeout: Duration::from_secs(30),
            max_response_body: 64 << 20,
            requests_at_once: 8,
        }
    }
}

/// `[outbound]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawOutbound {
    #[serde(default)]
    resolve: BTreeMap<String, String>,
    ca_file: Option<PathBuf>,
    connect_timeout: Option<Timeout>,
    first_byte_timeout: Option<Timeout>,
    between_bytes_timeout: Option<Timeout>,
    max_response_body: Option<ByteSize>,
    requests_at_once: Option<std::num::NonZeroU32>,
}

impl RawOutbound {
    /// The settings, checked; relative paths resolve against `base`.
    pub(super) fn check(self, base: &Path) -> Result<OutboundSpec, String> {
        let defaults = OutboundSpec::default();
        let mut resolve = BTreeMap::new();
        for (from, to) in self.resolve {
            let at = format!("outbound.resolve.\"{from}\"");
            match split_port(&from) {
                Some((host, PortPattern::Number(_))) if valid_name(host) || parse_ip(host).is_some() => {}
                _ => return Err(format!("{at}: expected `HOST:PORT` as the key, e.g. `\"api.example.com:443\"`")),
            }
            let address = to
                .parse()
                .map_err(|_| format!("{at}: `{to}` is not an `IP:PORT` address, e.g. `\"127.0.0.1:8443\"`"))?;
            resolve.insert(from.to_ascii_lowercase(), address);
        }
        Ok(OutboundSpec {
            resolve,
            ca_file: self.ca_file.map(|f| base.join(f)),
            connect_timeout: self.connect_timeout.map_or(defaults.connect_timeout, |t| t.0),
            first_byte_timeout: self.first_byte_timeout.map_or(defaults.first_byte_timeout, |t| t.0),
            between_bytes_timeout: self.between_bytes_timeout.map_or(defaults.between_bytes_timeout, |t| t.0),
            max_response_body: self.max_response_body.map_or(defaults.max_response_body, |b| b.0),
            requests_at_once: self.requests_at_once.map_or(defaults.requests_at_once, |n| n.get()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(entries: &[&str]) -> HttpGrant {
        HttpGrant(entries.iter().map(|e| AllowedHost::parse(e).unwrap()).collect())
    }

    #[test]
    fn entries_match_scheme_host_and_port() {
        let g =
            grant(&["https://api.example.com", "http://127.0.0.1:8089", "https://*.example.org:*", "http://[::1]:*"]);
        assert!(g.allowing("https", "api.example.com", 443).is_some());
        assert!(g.allowing("https", "API.Example.com", 443).is_some(), "names are case-insensitive");
        assert!(g.allowing("http", "api.example.com", 80).is_none(), "the scheme must match");
        assert!(g.allowing("https", "api.example.com", 8443).is_none(), "the default port only");
        assert!(g.allowing("https", "evil.com", 443).is_none());
        assert!(g.allowing("http", "127.0.0.1", 8089).is_some() && g.allowing("http", "127.0.0.1", 8090).is_none());
        assert!(
            g.allowing("https", "a.example.org", 1).is_some() && g.allowing("https", "a.b.example.org", 2).is_some()
        );
        assert!(g.allowing("https", "example.org", 443).is_none(), "`*.` needs a subdomain");
        assert!(g.allowing("https", "badexample.org", 443).is_none());
        assert!(g.allowing("http", "::1", 5).is_some());
        assert_eq!(g.allowing("https", "x.example.org", 443).unwrap().host_label(), "*.example.org");
        assert!(grant(&["http://*"]).allowing("http", "anything.net", 80).is_some());
    }

    #[test]
    fn internal_addresses_need_an_entry_naming_them() {
        let g = grant(&["http://127.0.0.1:8089", "http://localhost:*", "https://10.0.0.5"]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let exact = grant(&["http://127.0.0.1:8089"]);
        assert!(
            exact.names_address("http", ip("127.0.0.1"), 8089) && !exact.names_address("http", ip("127.0.0.1"), 8088)
        );
        assert!(
            !exact.names_address("https", ip("127.0.0.1"), 8089) && !exact.names_address("http", ip("127.0.0.2"), 8089)
        );
        assert!(g.names_address("http", ip("127.0.0.2"), 1), "localhost covers loopback");
        assert!(g.names_address("https", ip("10.0.0.5"), 443) && !g.names_address("https", ip("10.0.0.6"), 443));
        assert!(g.names_address("http", ip("::ffff:127.0.0.1"), 8089), "IPv4-mapped is the IPv4 address");
        assert!(!grant(&["http://api.example.com:*"]).names_address("http", ip("127.0.0.1"), 80));
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "::",
        ] {
            assert!(is_internal(ip(internal)), "{internal}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:2800:220:1::1", "172.32.0.1"] {
            assert!(!is_internal(ip(public)), "{public}");
        }
    }

    #[test]
    fn bad_entries_are_named() {
        for (entry, why) in [
            ("api.example.com", "no scheme"),
            ("ftp://x.org", "scheme `ftp`"),
            ("https://x.org/path", "a path"),
            ("https://x.org:99999", "bad port"),
            ("https://", "no host"),
            ("https://a..b", "bad host"),
            ("https://*.", "bad host"),
        ] {
            let err = AllowedHost::parse(entry).unwrap_err();
            assert!(err.contains(&format!("`{entry}`")) && err.contains(why), "{entry}: {err}");
        }
    }

    #[test]
    fn outbound_settings_are_checked() {
        let raw: RawOutbound = toml::from_str(
            "resolve = { \"API.example.com:443\" = \"127.0.0.1:8443\" }\nca-file = \"ca.pem\"\nmax-response-body = \"1MiB\"\n",
        )
        .unwrap();
        let spec = raw.check(Path::new("/apps/x")).unwrap();
        assert_eq!(spec.resolve["api.example.com:443"], "127.0.0.1:8443".parse().unwrap());
        assert_eq!(spec.ca_file.as_deref(), Some(Path::new("/apps/x/ca.pem")));
        assert_eq!((spec.max_response_body, spec.requests_at_once), (1 << 20, 8));
        let bad = |toml: &str| toml::from_str::<RawOutbound>(toml).unwrap().check(Path::new("/")).unwrap_err();
        assert!(bad("resolve = { \"api.example.com\" = \"127.0.0.1:1\" }").contains("expected `HOST:PORT`"));
        assert!(bad("resolve = { \"a.org:1\" = \"localhost:1\" }").contains("`localhost:1` is not an `IP:PORT`"));
    }
}

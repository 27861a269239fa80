//! Tokens with scopes: the tokens file (`host serve --tokens FILE`), read once at start, and what
//! each scope opens. The file holds only the tokens' SHA-256 digests, so reading it gives nobody
//! a token.
//!
//! ```toml
//! [[token]]
//! name = "ci"
//! sha256 = "<64 hex digits>"
//! scopes = ["deploy", "app:counter:invoke"]
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::routes::Access;

/// A token's digest.
pub(super) type Digest32 = [u8; 32];

/// The SHA-256 digest of `secret`.
pub(super) fn digest(secret: &[u8]) -> Digest32 {
    Sha256::digest(secret).into()
}

/// The SHA-256 of `token` in lower-case hex, as the tokens file's `sha256` holds it.
pub fn hash_hex(token: &str) -> String {
    digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// What one scope lets a token do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything.
    Admin,
    /// Deploying apps (reserved for the deploy routes).
    Deploy,
    /// One app's functions (call, map, starmap) and its non-public HTTP routes.
    Invoke(String),
    /// One app's executions, logs, items, KV and bucket values, queue stats.
    Read(String),
    /// One app's KV, bucket and item writes, queue sends, topic publishes, pause and resume.
    Write(String),
}

impl Scope {
    /// Parse `admin`, `deploy` or `app:NAME:invoke|read|write`.
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "admin" => return Some(Scope::Admin),
            "deploy" => return Some(Scope::Deploy),
            _ => {}
        }
        let (app, level) = text.strip_prefix("app:")?.rsplit_once(':')?;
        if app.is_empty() || app.contains(':') {
            return None;
        }
        let app = app.to_string();
        match level {
            "invoke" => Some(Scope::Invoke(app)),
            "read" => Some(Scope::Read(app)),
            "write" => Some(Scope::Write(app)),
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Admin => f.write_str("admin"),
            Scope::Deploy => f.write_str("deploy"),
            Scope::Invoke(app) => write!(f, "app:{app}:invoke"),
            Scope::Read(app) => write!(f, "app:{app}:read"),
            Scope::Write(app) => write!(f, "app:{app}:write"),
        }
    }
}

/// The scopes a request was authorized with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Grant(Vec<Scope>);

impl Grant {
    /// Everything: a server without tokens, or the `--token` token.
    pub(super) fn admin() -> Grant {
        Grant(vec![Scope::Admin])
    }

    /// `Ok` when the grant opens a route of `access` (of `app`, for per-app routes), else the
    /// scope that would: the one the 403 names.
    pub(super) fn allows(&self, access: Access, app: Option<&str>) -> Result<(), String> {
        if self.0.contains(&Scope::Admin) {
            return Ok(());
        }
        let app = app.unwrap_or_default().to_string();
        let needed = match access {
            // The record's app is known to the handler only.
            Access::Public | Access::Any | Access::Record => return Ok(()),
            Access::AppAny => {
                let of_app = |s: &Scope| matches!(s, Scope::Invoke(a) | Scope::Read(a) | Scope::Write(a) if *a == app);
                if self.0.iter().any(of_app) {
                    return Ok(());
                }
                Scope::Read(app)
            }
            Access::Admin => Scope::Admin,
            Access::Deploy => Scope::Deploy,
            Access::Invoke => Scope::Invoke(app),
            Access::Read => Scope::Read(app),
            Access::Write => Scope::Write(app),
        };
        if self.0.contains(&needed) { Ok(()) } else { Err(needed.to_string()) }
    }
}

/// One entry of the tokens file.
#[derive(Debug, Clone)]
pub struct Token {
    /// Its name, for messages and logs.
    pub name: String,
    pub(super) digest: Digest32,
    pub(super) scopes: Grant,
}

impl Token {
    /// The `--token` token: every scope.
    pub fn admin(secret: &str) -> Token {
        Token { name: "--token".into(), digest: digest(secret.as_bytes()), scopes: Grant::admin() }
    }
}

/// The tokens file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// It could not be read.
    #[error("cannot read tokens file {path}: {source}", path = path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Group or others may read it.
    #[error(
        "tokens file {path} has mode {mode:04o}: group or others can read it; run `chmod 600 {path}`",
        path = path.display()
    )]
    Readable {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// An entry is wrong.
    #[error("invalid tokens file {path}: {message}", path = path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which entry and field, and what is wrong.
        message: String,
    },
}

/// Read the tokens file `path`, refused when group or others may read it, or when an entry has
/// an unknown key or scope, or a `sha256` that is not 64 hex digits.
pub fn read_tokens(path: &Path) -> Result<Vec<Token>, TokensError> {
    let read_error = |source| TokensError::Read { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(read_error)?;
    if let Some(mode) = crate::files::readable_by_others(&file.metadata().map_err(read_error)?) {
        return Err(TokensError::Readable { path: path.to_path_buf(), mode });
    }
    let text = std::io::read_to_string(file).map_err(read_error)?;
    parse_tokens(&text).map_err(|message| TokensError::Invalid { path: path.to_path_buf(), message })
}

fn parse_tokens(text: &str) -> Result<Vec<Token>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.message().to_string())?;
    if let Some(key) = table.keys().find(|k| *k != "token") {
        return Err(format!("unknown key `{key}`: expected only `[[token]]` entries"));
    }
    let Some(entries) = table.get("token") else { return Ok(Vec::new()) };
    let entries = entries.as_array().ok_or("`token` must be `[[token]]` entries")?;
    let tokens = entries.iter().enumerate().map(|(i, e)| parse_entry(i + 1, e)).collect::<Result<Vec<_>, _>>()?;
    for (i, token) in tokens.iter().enumerate() {
        if let Some(other) = tokens[..i].iter().find(|t| t.name == token.name || t.digest == token.digest) {
            return Err(format!("token `{}`: same name or sha256 as token `{}`", token.name, other.name));
        }
    }
    Ok(tokens)
}

/// Entry `number` (from 1): named by its `name` when it has one.
fn parse_entry(number: usize, entry: &toml::Value) -> Result<Token, String> {
    let entry = entry.as_table().ok_or(format!("token entry {number}: expected a table"))?;
    let name = entry.get("name").and_then(|v| v.as_str()).map(str::to_string);
    let at = name.as_ref().map_or(format!("token entry {number}"), |n| format!("token `{n}`"));
    if let Some(key) = entry.keys().find(|k| !["name", "sha256", "scopes"].contains(&k.as_str())) {
        return Err(format!("{at}: unknown field `{key}`: expected name, sha256, scopes"));
    }
    let name = name.ok_or(format!("{at}: field `name`: expected a string"))?;
    let hex = entry.get("sha256").and_then(|v| v.as_str()).unwrap_or_default();
    let digest = parse_hex(hex).ok_or(format!("{at}: field `sha256`: expected 64 hex digits (`host token hash`)"))?;
    let scopes = entry
        .get("scopes")
        .and_then(|v| v.as_array())
        .ok_or(format!("{at}: field `scopes`: expected a list of strings"))?
        .iter()
        .map(|s| {
            s.as_str().and_then(Scope::parse).ok_or(format!(
                "{at}: field `scopes`: unknown scope {s}: expected admin, deploy, app:NAME:invoke, app:NAME:read or app:NAME:write"
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Token { name, digest, scopes: Grant(scopes) })
}

fn parse_hex(text: &str) -> Option<Digest32> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(text.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print() {
        for text in ["admin", "deploy", "app:counter:invoke", "app:counter:read", "app:a-b:write"] {
            assert_eq!(Scope::parse(text).unwrap().to_string(), text);
        }
        for bad in ["", "Admin", "app:counter", "app::read", "app:a:b:read", "app:counter:delete", "counter:read"] {
            assert_eq!(Scope::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn grants_open_their_routes_only() {
        let grant = Grant(vec![Scope::Invoke("a".into()), Scope::Read("a".into())]);
        assert_eq!(grant.allows(Access::Invoke, Some("a")), Ok(()));
        assert_eq!(grant.allows(Access::AppAny, Some("a")), Ok(()));
        assert_eq!(grant.allows(Access::Any, None), Ok(()));
        assert_eq!(grant.allows(Access::Write, Some("a")), Err("app:a:write".into()));
        assert_eq!(grant.allows(Access::Invoke, Some("b")), Err("app:b:invoke".into()));
        assert_eq!(grant.allows(Access::AppAny, Some("b")), Err("app:b:read".into()));
        assert_eq!(grant.allows(Access::Admin, None), Err("admin".into()));
        assert_eq!(grant.allows(Access::Deploy, None), Err("deploy".into()));
        assert_eq!(Grant::admin().allows(Access::Write, Some("b")), Ok(()));
    }

    #[test]
    fn tokens_file_entries_are_checked() {
        let hex = hash_hex("s3cret");
        assert_eq!(hex, "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0");
        let good =
            format!("[[token]]\nname = \"ci\"\nsha256 = \"{hex}\"\nscopes = [\"deploy\", \"app:counter:invoke\"]\n");
        let tokens = parse_tokens(&good).unwrap();
        assert_eq!(tokens[0].name, "ci");
        assert_eq!(tokens[0].digest, digest(b"s3cret"));
        assert_eq!(tokens[0].scopes, Grant(vec![Scope::Deploy, Scope::Invoke("counter".into())]));
        let cases = [
            (
                good.replace("app:counter:invoke", "app:counter:run"),
                "token `ci`: field `scopes`: unknown scope \"app:counter:run\"",
            ),
            (good.replace(&hex, "xyz"), "token `ci`: field `sha256`: expected 64 hex digits"),
            (good.replace(&hex, &hex.replace(&hex[..2], "zz")), "token `ci`: field `sha256`"),
            (good.replace("scopes", "scope"), "token `ci`: unknown field `scope`"),
            (good.replace("name = \"ci\"\n", ""), "token entry 1: field `name`"),
            (format!("{good}{good}"), "token `ci`: same name or sha256 as token `ci`"),
            (format!("tokens = 1\n{good}"), "unknown key `tokens`"),
        ];
        for (text, expected) in cases {
            let err = parse_tokens(&text).unwrap_err();
            assert!(err.starts_with(expected), "{err}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_tokens_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let shown = path.display();
        let err = read_tokens(&path).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("tokens file {shown} has mode 0640: group or others can read it; run `chmod 600 {shown}`")
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_tokens(&path).unwrap().is_empty());
    }
}

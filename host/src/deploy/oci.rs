//! Bundles as OCI artifacts: one layer (the bundle's tar) and a small JSON config naming the app,
//! pushed to and pulled from any registry that speaks the OCI distribution API.
//!
//! Registries on loopback (`localhost`, `127.*`) are spoken to in plain HTTP, every other one in
//! HTTPS only: a bundle is code the server will run, so it never travels unencrypted off the
//! machine.

use futures_util::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciImageManifest;
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};

use super::bundle::MAX_BUNDLE;
use super::{Bundle, DeployError};

/// The media type of a bundle's one layer: the bundle's tar as is.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.host.bundle.v1.tar";
/// The media type of a bundle's config blob, also the manifest's `artifactType`.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.host.bundle.config.v1+json";

/// How long connecting to a registry may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The form a reference must have, for error messages.
const EXPECTED_FORM: &str = "REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:HEX";

/// How to authenticate to a registry.
#[derive(Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    /// No credentials.
    Anonymous,
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        user: String,
        /// The password or access token.
        password: String,
    },
}

// By hand, so that a password never reaches a log line.
impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryAuth::Anonymous => f.write_str("Anonymous"),
            RegistryAuth::Basic { user, .. } => write!(f, "Basic({user}, <redacted>)"),
        }
    }
}

/// What can go wrong pushing or pulling a bundle; each message names the reference.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The reference does not parse, or lacks its registry or its tag/digest.
    #[error("bad registry reference `{reference}`: {reason}; expected {EXPECTED_FORM}")]
    BadReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection to the registry could be made.
    #[error("cannot reach the registry {registry} for `{reference}`: {reason}")]
    Unreachable {
        /// The registry's host (and port).
        registry: String,
        /// The reference.
        reference: String,
        /// The connection error.
        reason: String,
    },
    /// The repository exists but has no such tag or digest.
    #[error("no tag or digest `{reference}` in the registry (unknown manifest)")]
    UnknownTag {
        /// The reference.
        reference: String,
    },
    /// The registry has no such repository.
    #[error("no repository `{repository}` in the registry {registry} (for `{reference}`)")]
    UnknownRepository {
        /// The registry's host (and port).
        registry: String,
        /// The repository.
        repository: String,
        /// The reference.
        reference: String,
    },
    /// The registry refused the credentials, or asked for some.
    #[error(
        "the registry refused access to `{reference}` (set HOST_REGISTRY_USER and HOST_REGISTRY_PASSWORD): {reason}"
    )]
    Unauthorized {
        /// The reference.
        reference: String,
        /// The registry's answer.
        reason: String,
    },
    /// The artifact is not a host bundle: not one layer of the bundle media type.
    #[error("`{reference}` is not a host bundle: {found} (a bundle is one layer of type {BUNDLE_MEDIA_TYPE})")]
    NotABundle {
        /// The reference.
        reference: String,
        /// What the manifest holds instead.
        found: String,
    },
    /// The layer's bytes do not hash to the digest the manifest names.
    #[error("the bundle layer of `{reference}` does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The reference.
        reference: String,
        /// The digest in the manifest.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// The layer is larger than [`MAX_BUNDLE`].
    #[error("the bundle layer of `{reference}` is too large: {size} bytes, at most {MAX_BUNDLE} are accepted")]
    TooLarge {
        /// The reference.
        reference: String,
        /// Its size as declared, or the bytes received before giving up.
        size: u64,
    },
    /// The layer is not a bundle that [`Bundle::from_bytes`] accepts.
    #[error("`{reference}` holds no usable bundle: {error}")]
    BadBundle {
        /// The reference.
        reference: String,
        /// Why the bundle was refused.
        error: DeployError,
    },
    /// Any other answer of the registry.
    #[error("registry error for `{reference}`: {reason}")]
    Registry {
        /// The reference.
        reference: String,
        /// The registry's answer.
        reason: String,
    },
}

/// Push `bundle` (the bytes of the bundle of app `app`) to `reference` (`REGISTRY/REPO:TAG`).
/// Returns the digest of the pushed manifest, `sha256:HEX`; pushing the same bundle again
/// changes nothing and returns the same digest.
pub async fn push(reference: &str, app: &str, bundle: &[u8], auth: &RegistryAuth) -> Result<String, OciError> {
    let parsed = parse(reference)?;
    let client = client(&parsed);
    let auth = auth.into();
    let failed = |e| classify(reference, &parsed, e);
    let layers = [ImageLayer::new(bundle.to_vec(), BUNDLE_MEDIA_TYPE.to_string(), None)];
    let config = serde_json::to_vec(&serde_json::json!({ "app": app })).expect("a JSON object serialises");
    let config = Config::new(config, CONFIG_MEDIA_TYPE.to_string(), None);
    let mut manifest = OciImageManifest::build(&layers, &config, None);
    manifest.artifact_type = Some(CONFIG_MEDIA_TYPE.to_string());
    client.push(&parsed, &layers, config, &auth, Some(manifest)).await.map_err(failed)?;
    // The registry's own digest of what it stored, rather than one computed over a
    // serialisation of the manifest that only the client knows.
    client.fetch_manifest_digest(&parsed, &auth).await.map_err(failed)
}

/// Pull the bundle at `reference` and return its bytes, checked: the manifest must hold one
/// layer of [`BUNDLE_MEDIA_TYPE`], at most [`MAX_BUNDLE`] long, whose bytes match its
/// digest.
pub async fn pull(reference: &str, auth: &RegistryAuth) -> Result<Vec<u8>, OciError> {
    let parsed = parse(reference)?;
    let client = client(&parsed);
    let auth = auth.into();
    let failed = |e| classify(reference, &parsed, e);
    let (manifest, _) = match client.pull_image_manifest(&parsed, &auth).await {
        Ok(pulled) => pulled,
        Err(e) => return Err(unknown_repository(&client, &parsed, &auth, failed(e)).await),
    };
    let layer = match manifest.layers.as_slice() {
        [layer] if layer.media_type == BUNDLE_MEDIA_TYPE => layer,
        layers => {
            let types: Vec<&str> = layers.iter().map(|l| l.media_type.as_str()).collect();
            let found = format!("{} layer(s) of type [{}]", layers.len(), types.join(", "));
            return Err(OciError::NotABundle { reference: reference.to_string(), found });
        }
    };
    let too_large = |size| OciError::TooLarge { reference: reference.to_string(), size };
    let declared = u64::try_from(layer.size).unwrap_or(0);
    if declared > MAX_BUNDLE {
        return Err(too_large(declared));
    }
    // Streamed with a running count, since the declared size is only the registry's word.
    let mut stream = client.pull_blob_stream(&parsed, layer).await.map_err(failed)?;
    let mut bytes = Vec::with_capacity(declared as usize);
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.map_err(|e| failed(e.into()))?);
        if bytes.len() as u64 > MAX_BUNDLE {
            return Err(too_large(bytes.len() as u64));
        }
    }
    check_digest(reference, &layer.digest, &bytes)?;
    Ok(bytes)
}

/// Pull the bundle at `reference` as [`pull`] does, and open it as a [`Bundle`] (for
/// `host deploy REGISTRY/REPO:TAG`).
pub async fn pull_bundle(reference: &str, auth: &RegistryAuth) -> Result<Bundle, OciError> {
    let bytes = pull(reference, auth).await?;
    Bundle::from_bytes(bytes).map_err(|error| OciError::BadBundle { reference: reference.to_string(), error })
}

/// `Ok` if `bytes` hash to `expected` (`sha256:HEX`).
pub fn check_digest(reference: &str, expected: &str, bytes: &[u8]) -> Result<(), OciError> {
    let actual = format!("sha256:{:x}", Sha256::digest(bytes));
    if actual == expected {
        Ok(())
    } else {
        Err(OciError::DigestMismatch { reference: reference.to_string(), expected: expected.to_string(), actual })
    }
}

/// Parse `reference`, insisting on what the library would otherwise default: the registry (no
/// silent Docker Hub) and the tag or digest (no silent `latest`).
pub fn parse(reference: &str) -> Result<Reference, OciError> {
    let bad = |reason: &str| OciError::BadReference { reference: reference.to_string(), reason: reason.to_string() };
    let (registry, rest) = reference.split_once('/').ok_or_else(|| bad("no registry"))?;
    if !(registry.contains(['.', ':']) || registry == "localhost") {
        return Err(bad("the first part is not a registry host (HOST.DOMAIN, HOST:PORT or localhost)"));
    }
    if !rest.contains([':', '@']) {
        return Err(bad("no tag or digest"));
    }
    reference.parse().map_err(|e: oci_client::ParseError| bad(&e.to_string()))
}

/// Whether `registry` (`HOST[:PORT]`) is on this machine, the only place plain HTTP is used.
fn is_loopback(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(host, _)| host);
    host == "localhost" || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// A client for the registry of `reference`.
fn client(reference: &Reference) -> Client {
    // reqwest is built without a crypto provider of its own (it would bring aws-lc): give it the
    // ring provider the rest of the host uses. `Err` means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let protocol = if is_loopback(reference.registry()) { ClientProtocol::Http } else { ClientProtocol::Https };
    // A registry that drops packets fails in seconds, not after the system's TCP timeout.
    Client::new(ClientConfig { protocol, connect_timeout: Some(CONNECT_TIMEOUT), ..Default::default() })
}

/// If `error` is an unknown manifest, whether the repository is unknown too (registries answer
/// the same for both): asking for its tags tells.
async fn unknown_repository(
    client: &Client,
    parsed: &Reference,
    auth: &oci_client::secrets::RegistryAuth,
    error: OciError,
) -> OciError {
    let OciError::UnknownTag { reference } = error else { return error };
    match client.list_tags(parsed, auth, Some(1), None).await {
        Err(OciDistributionError::RegistryError { envelope, .. })
            if envelope.errors.iter().any(|e| e.code == OciErrorCode::NameUnknown) =>
        {
            OciError::UnknownRepository {
                registry: parsed.registry().to_string(),
                repository: parsed.repository().to_string(),
                reference,
            }
        }
        _ => OciError::UnknownTag { reference },
    }
}

/// The [`OciError`] for an error of the client.
fn classify(reference: &str, parsed: &Reference, error: OciDistributionError) -> OciError {
    let reference = reference.to_string();
    match error {
        OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
            OciError::Unreachable { registry: parsed.registry().to_string(), reference, reason: root_cause(&e) }
        }
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes = |code: OciErrorCode| envelope.errors.iter().any(|e| e.code == code);
            if codes(OciErrorCode::ManifestUnknown) {
                OciError::UnknownTag { reference }
            } else if codes(OciErrorCode::NameUnknown) {
                OciError::UnknownRepository {
                    registry: parsed.registry().to_string(),
                    repository: parsed.repository().to_string(),
                    reference,
                }
            } else if codes(OciErrorCode::Unauthorized) || codes(OciErrorCode::Denied) {
                OciError::Unauthorized { reference, reason: envelope.to_string() }
            } else {
                OciError::Registry { reference, reason: envelope.to_string() }
            }
        }
        OciDistributionError::ImageManifestNotFoundError(_) => OciError::UnknownTag { reference },
        e @ (OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::ServerError { code: 401 | 403, .. }) => {
            OciError::Unauthorized { reference, reason: e.to_string() }
        }
        e => OciError::Registry { reference, reason: e.to_string() },
    }
}

/// The innermost source of `error`: reqwest's own message is only "error sending request".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

impl From<&RegistryAuth> for oci_client::secrets::RegistryAuth {
    fn from(auth: &RegistryAuth) -> Self {
        match auth {
            RegistryAuth::Anonymous => oci_client::secrets::RegistryAuth::Anonymous,
            RegistryAuth::Basic { user, password } => {
                oci_client::secrets::RegistryAuth::Basic(user.clone(), password.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_registries_get_plain_http() {
        for registry in ["localhost", "localhost:5000", "127.0.0.1:5000", "127.1.2.3"] {
            assert!(is_loopback(registry), "{registry}");
        }
        for registry in ["ghcr.io", "registry.example.com:5000", "10.0.0.1:5000", "localhost.example.com"] {
            assert!(!is_loopback(registry), "{registry}");
        }
    }

    #[test]
    fn a_layer_whose_bytes_do_not_match_its_digest_is_refused() {
        let good = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert!(check_digest("r", good, b"hello").is_ok());
        let error = check_digest("localhost:5000/a:v1", good, b"hello!").unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "the bundle layer of `localhost:5000/a:v1` does not match its digest: expected {good}, got \
                 sha256:ce06092fb948d9ffac7d1a376e404b26b7575bcc11ee05a4615fef4fec3a308b"
            )
        );
    }

    #[test]
    fn references_keep_their_registry_and_tag() {
        let parsed = parse("localhost:5000/apps/hello:v1").unwrap();
        assert_eq!(
            (parsed.registry(), parsed.repository(), parsed.tag()),
            ("localhost:5000", "apps/hello", Some("v1"))
        );
        let digest = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let parsed = parse(&format!("ghcr.io/a/b@{digest}")).unwrap();
        assert_eq!((parsed.registry(), parsed.repository(), parsed.digest()), ("ghcr.io", "a/b", Some(digest)));
    }
}

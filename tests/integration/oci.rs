//! Bundles in a real OCI registry on loopback (`registry::Registry`): push, pull, and each way a
//! pull is refused.

use std::process::Command;

use host::deploy::Bundle;
use host::deploy::oci::{self, BUNDLE_MEDIA_TYPE, CONFIG_MEDIA_TYPE, OciError, RegistryAuth};
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth as ClientAuth;
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};

use crate::registry::Registry;

const ANONYMOUS: RegistryAuth = RegistryAuth::Anonymous;

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// A plain-HTTP client of the library itself, to look at what was stored or store other things.
fn raw_client() -> Client {
    // As `oci` does: reqwest is built without a crypto provider of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new(ClientConfig { protocol: ClientProtocol::Http, ..Default::default() })
}

/// Bytes that stand for a bundle (the transport does not look inside).
fn bundle() -> Vec<u8> {
    (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test]
async fn a_pushed_bundle_pulls_back_byte_for_byte_under_its_digests() {
    let registry = Registry::start();
    let reference = registry.reference("apps/hello:v1");
    let digest = oci::push(&reference, "hello", &bundle(), &ANONYMOUS).await.unwrap();

    assert_eq!(oci::pull(&reference, &ANONYMOUS).await.unwrap(), bundle());
    let by_digest = format!("{}/apps/hello@{digest}", registry.host());
    assert_eq!(oci::pull(&by_digest, &ANONYMOUS).await.unwrap(), bundle());

    // What the registry holds: the manifest under the returned digest, one bundle layer under
    // the bundle's sha256, and the config naming the app.
    let parsed: Reference = reference.parse().unwrap();
    let client = raw_client();
    let (raw, manifest_digest) = client
        .pull_manifest_raw(&parsed, &ClientAuth::Anonymous, &["application/vnd.oci.image.manifest.v1+json"])
        .await
        .unwrap();
    assert_eq!(manifest_digest, digest);
    assert_eq!(sha256(&raw), digest);
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(manifest["artifactType"], CONFIG_MEDIA_TYPE);
    assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(manifest["layers"][0]["mediaType"], BUNDLE_MEDIA_TYPE);
    assert_eq!(manifest["layers"][0]["digest"], sha256(&bundle()));
    assert_eq!(manifest["layers"][0]["size"], 100_000);
    let mut config = Vec::new();
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    client.pull_blob(&parsed, config_digest, &mut config).await.unwrap();
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&config).unwrap(), serde_json::json!({ "app": "hello" }));
}

#[tokio::test]
async fn pushing_the_same_bundle_twice_changes_nothing() {
    let registry = Registry::start();
    let reference = registry.reference("apps/hello:v1");
    let first = oci::push(&reference, "hello", &bundle(), &ANONYMOUS).await.unwrap();
    let second = oci::push(&reference, "hello", &bundle(), &ANONYMOUS).await.unwrap();
    assert_eq!(first, second);
    let tags = raw_client().list_tags(&reference.parse().unwrap(), &ClientAuth::Anonymous, None, None).await.unwrap();
    assert_eq!(tags.tags, ["v1"]);
    assert_eq!(oci::pull(&reference, &ANONYMOUS).await.unwrap(), bundle());
}

#[tokio::test]
async fn an_unknown_tag_and_an_unknown_repository_are_named() {
    let registry = Registry::start();
    oci::push(&registry.reference("apps/hello:v1"), "hello", &bundle(), &ANONYMOUS).await.unwrap();

    let tag = registry.reference("apps/hello:v2");
    let error = oci::pull(&tag, &ANONYMOUS).await.unwrap_err();
    assert!(matches!(error, OciError::UnknownTag { .. }), "{error:?}");
    assert_eq!(error.to_string(), format!("no tag or digest `{tag}` in the registry (unknown manifest)"));

    let repository = registry.reference("apps/nothing:v1");
    let error = oci::pull(&repository, &ANONYMOUS).await.unwrap_err();
    assert!(matches!(error, OciError::UnknownRepository { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("no repository `apps/nothing` in the registry {} (for `{repository}`)", registry.host())
    );
}

#[tokio::test]
async fn an_artifact_that_is_not_a_bundle_is_refused() {
    let registry = Registry::start();
    let reference = registry.reference("images/plain:v1");
    let layers = [ImageLayer::oci_v1(bundle(), None)];
    let config = Config::oci_v1(b"{}".to_vec(), None);
    raw_client().push(&reference.parse().unwrap(), &layers, config, &ClientAuth::Anonymous, None).await.unwrap();

    let error = oci::pull(&reference, &ANONYMOUS).await.unwrap_err();
    assert!(matches!(error, OciError::NotABundle { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "`{reference}` is not a host bundle: 1 layer(s) of type [application/vnd.oci.image.layer.v1.tar] \
             (a bundle is one layer of type {BUNDLE_MEDIA_TYPE})"
        )
    );
}

#[tokio::test]
async fn a_layer_declared_larger_than_the_cap_is_refused_before_downloading() {
    let registry = Registry::start();
    let reference = registry.reference("apps/huge:v1");
    let layers = [ImageLayer::new(bundle(), BUNDLE_MEDIA_TYPE.to_string(), None)];
    let config = Config::new(b"{}".to_vec(), CONFIG_MEDIA_TYPE.to_string(), None);
    let mut manifest = oci_client::manifest::OciImageManifest::build(&layers, &config, None);
    manifest.layers[0].size = 600 << 20;
    raw_client()
        .push(&reference.parse().unwrap(), &layers, config, &ClientAuth::Anonymous, Some(manifest))
        .await
        .unwrap();

    let error = oci::pull(&reference, &ANONYMOUS).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("the bundle layer of `{reference}` is too large: 629145600 bytes, at most 536870912 are accepted")
    );
}

#[tokio::test]
async fn a_reference_of_bad_syntax_is_refused_before_any_network() {
    // `registry.invalid` would fail to resolve: each error below comes from the syntax alone.
    for (reference, reason) in [
        ("hello", "no registry"),
        ("apps/hello:v1", "the first part is not a registry host (HOST.DOMAIN, HOST:PORT or localhost)"),
        ("registry.invalid/apps/hello", "no tag or digest"),
        ("registry.invalid/Apps/hello:v1", "invalid reference format"),
    ] {
        let error = oci::pull(reference, &ANONYMOUS).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "bad registry reference `{reference}`: {reason}; expected REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:HEX"
            )
        );
        let error = oci::push(reference, "hello", b"x", &ANONYMOUS).await.unwrap_err();
        assert!(matches!(error, OciError::BadReference { .. }), "{error:?}");
    }
}

#[tokio::test]
async fn a_stopped_registry_cannot_be_reached() {
    let mut registry = Registry::start();
    registry.stop();
    let reference = registry.reference("apps/hello:v1");
    for error in [
        oci::pull(&reference, &ANONYMOUS).await.unwrap_err(),
        oci::push(&reference, "hello", b"x", &ANONYMOUS).await.unwrap_err(),
    ] {
        let message = error.to_string();
        let prefix = format!("cannot reach the registry {} for `{reference}`: ", registry.host());
        assert!(message.starts_with(&prefix) && message.contains("refused"), "{message}");
    }
}

#[tokio::test]
async fn host_push_sends_an_app_that_pulls_back_as_the_same_bundle() {
    let registry = Registry::start();
    let manifest = crate::common::manifest(crate::common::HELLO);
    let reference = registry.reference("apps/hello:v1");
    let output = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["push", &reference, "--no-build", "-f"])
        .arg(&manifest)
        .env_remove("HOST_REGISTRY_USER")
        .env_remove("HOST_REGISTRY_PASSWORD")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let packed = Bundle::pack(&manifest).unwrap();
    let pulled = oci::pull_bundle(&reference, &ANONYMOUS).await.unwrap();
    assert_eq!((pulled.app(), pulled.digest()), ("hello", packed.digest()));
    // The line names the pushed manifest by digest, and that reference pulls the same bundle.
    let stdout = String::from_utf8(output.stdout).unwrap();
    let suffix = format!(" (hello, bundle {}, {} bytes)\n", packed.digest(), packed.bytes().len());
    let pinned = stdout.strip_suffix(&suffix).unwrap_or_else(|| panic!("{stdout}"));
    let manifest_digest = pinned.strip_prefix(&format!("{reference}@")).unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(manifest_digest.len(), "sha256:".len() + 64, "{stdout}");
    let by_digest = format!("{}/apps/hello@{manifest_digest}", registry.host());
    assert_eq!(oci::pull_bundle(&by_digest, &ANONYMOUS).await.unwrap().digest(), packed.digest());
}

#[test]
fn host_push_refuses_a_bad_reference_and_half_given_credentials() {
    let push = |reference: &str, env: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_host"));
        command.args(["push", reference, "--no-build", "-f", "/nonexistent/host.toml"]);
        command.env_remove("HOST_REGISTRY_USER").env_remove("HOST_REGISTRY_PASSWORD").envs(env.iter().copied());
        let output = command.output().unwrap();
        (output.status.code(), String::from_utf8(output.stderr).unwrap())
    };
    assert_eq!(
        push("hello:v1", &[]),
        (
            Some(2),
            "error: bad registry reference `hello:v1`: no registry; expected REGISTRY/REPO:TAG or \
             REGISTRY/REPO@sha256:HEX\n"
                .to_string()
        )
    );
    assert_eq!(
        push("localhost:5000/apps/hello:v1", &[("HOST_REGISTRY_USER", "ci")]),
        (Some(1), "error: set both HOST_REGISTRY_USER and HOST_REGISTRY_PASSWORD, or neither\n".to_string())
    );
}

#[tokio::test]
async fn a_registry_with_a_password_takes_basic_credentials_and_refuses_others() {
    let registry = Registry::start_with_password();
    let reference = registry.reference("apps/hello:v1");
    let (user, password) = crate::registry::USER;
    let auth = RegistryAuth::Basic { user: user.into(), password: password.into() };
    oci::push(&reference, "hello", &bundle(), &auth).await.unwrap();
    assert_eq!(oci::pull(&reference, &auth).await.unwrap(), bundle());

    let wrong = RegistryAuth::Basic { user: user.into(), password: "wrong".into() };
    for auth in [ANONYMOUS, wrong] {
        let error = oci::pull(&reference, &auth).await.unwrap_err();
        assert!(matches!(error, OciError::Unauthorized { .. }), "{auth:?}: {error}");
        let prefix = format!(
            "the registry refused access to `{reference}` (set HOST_REGISTRY_USER and HOST_REGISTRY_PASSWORD): "
        );
        assert!(error.to_string().starts_with(&prefix), "{error}");
        let error = oci::push(&reference, "hello", &bundle(), &auth).await.unwrap_err();
        assert!(matches!(error, OciError::Unauthorized { .. }), "{auth:?}: {error}");
    }
}

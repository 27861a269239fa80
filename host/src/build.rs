//! `host build`: run the manifest's build commands, installing a missing Rust target first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use crate::manifest::Manifest;

/// A build command failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The command could not be started.
    #[error("cannot run build command `{command}` in {dir}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Where it ran.
        dir: PathBuf,
        /// Why it did not start.
        source: std::io::Error,
    },
    /// The command ran and failed.
    #[error("build command `{command}` (function `{function}`) failed with {status}")]
    Failed {
        /// The function whose build failed.
        function: String,
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// A `build-inputs` entry does not exist.
    #[error("build input {path} (function `{function}`) does not exist")]
    MissingInput {
        /// The function whose input is missing.
        function: String,
        /// The missing path.
        path: PathBuf,
    },
    /// A Rust target the command needs is missing and could not be installed.
    #[error("Rust target `{target}` is missing and `rustup target add {target}` failed: {message}")]
    Target {
        /// The target triple.
        target: String,
        /// What rustup said.
        message: String,
    },
}

/// Run each distinct `build` command of the manifest once, in the manifest's folder, with the
/// output going to this process's stderr. A command whose function lists `build-inputs` is skipped
/// while its `source` is newer than every one of them.
pub fn build(manifest: &Manifest) -> Result<(), BuildError> {
    let mut done: Vec<&str> = Vec::new();
    for (function, spec) in &manifest.functions {
        let Some(command) = spec.build.as_deref() else { continue };
        if done.contains(&command) {
            continue;
        }
        done.push(command);
        if !spec.build_inputs.is_empty() && up_to_date(&spec.source, &spec.build_inputs, function)? {
            tracing::info!(%function, source = %spec.source.display(), "up to date; not rebuilt");
            continue;
        }
        if let Some(target) = cargo_target(command) {
            ensure_rust_target(target)?;
        }
        tracing::info!(%function, %command, "building");
        let dir = manifest.dir().to_path_buf();
        let status = Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(&dir)
            .stdout(std::process::Stdio::from(std::io::stderr()))
            .status()
            .map_err(|source| BuildError::Spawn { command: command.to_string(), dir, source })?;
        if !status.success() {
            return Err(BuildError::Failed { function: function.clone(), command: command.to_string(), status });
        }
    }
    Ok(())
}

/// Whether `output` exists and is newer than every file in `inputs` (folders are walked,
/// symbolic links followed).
fn up_to_date(output: &Path, inputs: &[PathBuf], function: &str) -> Result<bool, BuildError> {
    let Ok(built) = std::fs::metadata(output).and_then(|m| m.modified()) else { return Ok(false) };
    let stamp = Stamp::of(inputs).map_err(|path| BuildError::MissingInput { function: function.to_string(), path })?;
    Ok(stamp.newest.is_none_or(|newest| newest < built))
}

/// The newest change among some files, and how many there are: a change, an addition or a
/// removal changes the stamp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stamp {
    /// The latest modification time.
    pub newest: Option<SystemTime>,
    /// How many files.
    pub files: usize,
}

impl Stamp {
    /// The stamp of the files of `paths` (folders walked, symbolic links followed); a path that
    /// does not exist is the error.
    pub fn of(paths: &[PathBuf]) -> Result<Stamp, PathBuf> {
        let mut stamp = Stamp::default();
        let mut pending: Vec<PathBuf> = paths.to_vec();
        while let Some(path) = pending.pop() {
            let metadata = std::fs::metadata(&path).map_err(|_| path.clone())?;
            if metadata.is_dir() {
                pending.extend(std::fs::read_dir(&path).into_iter().flatten().flatten().map(|entry| entry.path()));
            } else {
                stamp.files += 1;
                stamp.newest = stamp.newest.max(metadata.modified().ok());
            }
        }
        Ok(stamp)
    }
}

/// The `--target` of a cargo command line, if any.
fn cargo_target(command: &str) -> Option<&str> {
    let mut words = command.split_whitespace();
    if words.next() != Some("cargo") {
        return None;
    }
    let mut words = words.peekable();
    while let Some(word) = words.next() {
        if word == "--target" {
            return words.next();
        }
        if let Some(target) = word.strip_prefix("--target=") {
            return Some(target);
        }
    }
    None
}

/// Install a Rust target with rustup when it is missing (offline machines set
/// `RUSTUP_AUTO_INSTALL=0`, so cargo would otherwise just fail). Without rustup, leave it to cargo.
pub fn ensure_rust_target(target: &str) -> Result<(), BuildError> {
    let failed = |message: String| BuildError::Target { target: target.to_string(), message };
    let Ok(listed) = Command::new("rustup").args(["target", "list", "--installed"]).output() else {
        return Ok(());
    };
    if String::from_utf8_lossy(&listed.stdout).lines().any(|t| t.trim() == target) {
        return Ok(());
    }
    eprintln!("installing Rust target {target} (rustup target add {target})");
    let added = Command::new("rustup").args(["target", "add", target]).output().map_err(|e| failed(e.to_string()))?;
    if !added.status.success() {
        return Err(failed(String::from_utf8_lossy(&added.stderr).trim().to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::{BuildError, cargo_target, up_to_date};

    #[test]
    fn a_source_newer_than_its_inputs_is_up_to_date() {
        let dir = tempfile::tempdir().unwrap();
        let (output, input, folder) = (dir.path().join("out.wasm"), dir.path().join("app.py"), dir.path().join("wit"));
        std::fs::create_dir(&folder).unwrap();
        let nested = folder.join("world.wit");
        let inputs = [input.clone(), folder];
        let at = |path: &std::path::Path, seconds_ago: u64| {
            let file = std::fs::File::options().create(true).append(true).open(path).unwrap();
            file.set_modified(SystemTime::now() - Duration::from_secs(seconds_ago)).unwrap();
        };
        at(&input, 30);
        at(&nested, 20);
        assert!(!up_to_date(&output, &inputs, "f").unwrap(), "no output yet");
        at(&output, 10);
        assert!(up_to_date(&output, &inputs, "f").unwrap());
        at(&nested, 5);
        assert!(!up_to_date(&output, &inputs, "f").unwrap(), "a file inside an input folder changed");
        at(&output, 1);
        let missing = [dir.path().join("gone.py")];
        match up_to_date(&output, &missing, "f") {
            Err(BuildError::MissingInput { function, path }) => {
                assert_eq!((function.as_str(), &path), ("f", &missing[0]))
            }
            other => panic!("expected a missing input, got {other:?}"),
        }
    }

    #[test]
    fn finds_the_cargo_target() {
        assert_eq!(cargo_target("cargo build --target wasm32-wasip2 --release -p x"), Some("wasm32-wasip2"));
        assert_eq!(cargo_target("cargo build --release --target=wasm32-wasip1"), Some("wasm32-wasip1"));
        assert_eq!(cargo_target("cargo build --release"), None);
        assert_eq!(cargo_target("make --target wasm32-wasip2"), None);
    }
}

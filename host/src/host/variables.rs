//! The values of an app's `[variables]`, resolved when it is loaded, and the function config
//! rendered from them.
//!
//! Each variable takes the first value found, in this order: the environment variable
//! `HOST_VAR_<NAME>` (its name upper-cased), the host's secrets file, its `default`. The
//! environment comes first because it is the narrower, per-process setting: it overrides the
//! standing file for one run without editing it (as a flag overrides a config file).
//!
//! Values live only in the functions' `wasi:config` contexts: the [`Manifest`] keeps the
//! templates, and no error here names a value.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::manifest::{self, Manifest};

/// The prefix of the environment variables that give variables' values.
const ENV_PREFIX: &str = "HOST_VAR_";

/// A variable's value could not be found, or the secrets file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum VariableError {
    /// The secrets file could not be read.
    #[error("cannot read secrets file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Group or others may read the secrets file.
    #[error(
        "secrets file {path} has mode {mode:04o}: group or others can read it; run `chmod 600 {path}`",
        path = path.display()
    )]
    Readable {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The secrets file is not a TOML table of strings.
    #[error("invalid secrets file {path}: {message}", path = path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong: a line, a key and a type, never a value.
        message: String,
    },
    /// A required variable has no value.
    #[error(
        "app `{app}`: variable `{name}` is required and has no value; set {ENV_PREFIX}{upper} or put `{name} = \"...\"` in the secrets file (--secrets)",
        upper = name.to_ascii_uppercase()
    )]
    Missing {
        /// The app.
        app: String,
        /// The variable.
        name: String,
    },
    /// The environment variable of a variable is not UTF-8.
    #[error("app `{app}`: {ENV_PREFIX}{upper} is not valid UTF-8", upper = name.to_ascii_uppercase())]
    NotUnicode {
        /// The app.
        app: String,
        /// The variable.
        name: String,
    },
}

/// The values of a secrets file (`--secrets FILE`): TOML `name = "value"` lines, readable by its
/// owner only. Names no app declares are ignored (one file may serve several apps).
#[derive(Clone)]
pub(crate) struct Secrets {
    path: PathBuf,
    values: BTreeMap<String, String>,
}

impl fmt::Debug for Secrets {
    /// The file and its names: never the values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets").field("path", &self.path).field("names", &self.values.keys()).finish()
    }
}

impl Secrets {
    /// Read the secrets file `path`, refused when group or others may read it.
    pub(crate) fn read(path: &Path) -> Result<Secrets, VariableError> {
        let read_error = |source| VariableError::Read { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(read_error)?;
        check_mode(path, &file.metadata().map_err(read_error)?)?;
        let text = std::io::read_to_string(file).map_err(read_error)?;
        let invalid = |message| VariableError::Invalid { path: path.to_path_buf(), message };
        // toml's own error text quotes the offending line, which may hold a secret: only its
        // position and message are kept.
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            let line = e.span().map_or(1, |span| text[..span.start].matches('\n').count() + 1);
            invalid(format!("line {line}: {}", e.message()))
        })?;
        let values = table
            .into_iter()
            .map(|(name, value)| match value {
                toml::Value::String(value) => Ok((name, value)),
                other => Err(invalid(format!("`{name}`: expected a string, found {}", other.type_str()))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Secrets { path: path.to_path_buf(), values })
    }
}

/// Refuse a secrets file that group or others may read.
fn check_mode(path: &Path, metadata: &std::fs::Metadata) -> Result<(), VariableError> {
    match crate::files::readable_by_others(metadata) {
        Some(mode) => Err(VariableError::Readable { path: path.to_path_buf(), mode }),
        None => Ok(()),
    }
}

/// The value of every variable of `manifest`, from `env` (the process environment, passed in
/// for tests), `secrets`, or the default.
pub(super) fn resolve(
    manifest: &Manifest,
    secrets: Option<&Secrets>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<BTreeMap<String, String>, VariableError> {
    let mut values = BTreeMap::new();
    for (name, spec) in &manifest.variables {
        let from_env = match env(&format!("{ENV_PREFIX}{}", name.to_ascii_uppercase())) {
            Some(value) => Some(
                value
                    .into_string()
                    .map_err(|_| VariableError::NotUnicode { app: manifest.app.clone(), name: name.clone() })?,
            ),
            None => None,
        };
        let value = from_env
            .or_else(|| secrets.and_then(|s| s.values.get(name).cloned()))
            .or_else(|| spec.default.clone())
            .ok_or_else(|| VariableError::Missing { app: manifest.app.clone(), name: name.clone() })?;
        values.insert(name.clone(), value);
    }
    Ok(values)
}

/// A function's config with every `{{ name }}` replaced by the variable's value.
pub(super) fn render_config(
    config: &BTreeMap<String, String>,
    values: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    // Every name has a value: the manifest checked that templates name declared variables, and
    // `resolve` gave each of those one.
    let value = |name: &str| values.get(name).map_or("", String::as_str);
    config.iter().map(|(key, template)| (key.clone(), manifest::render(template, value))).collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;

    fn manifest(variables: &str) -> Manifest {
        let text = format!(
            "[app]\nname = \"a\"\n[variables]\n{variables}\n[function.f]\nsource = \"f.wasm\"\nconfig = {{ url = \"{{{{ host }}}}/x?key={{{{ key }}}}\" }}\n"
        );
        Manifest::parse(Path::new("host.toml"), &text).unwrap()
    }

    fn secrets_file(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("secrets.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn environment_then_file_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = Secrets::read(&secrets_file(dir.path(), "key = \"from-file\"\nhost = \"file-host\"\n", 0o600));
        let secrets = secrets.unwrap();
        let m = manifest("key = { required = true, secret = true }\nhost = { default = \"http://d\" }");
        let env = |name: &str| (name == "HOST_VAR_HOST").then(|| OsString::from("http://env"));
        let values = resolve(&m, Some(&secrets), env).unwrap();
        assert_eq!(values, BTreeMap::from([("host".into(), "http://env".into()), ("key".into(), "from-file".into())]));
        let config = render_config(&m.functions["f"].config, &values);
        assert_eq!(config["url"], "http://env/x?key=from-file");
        let values = resolve(&m, Some(&secrets), |_| None).unwrap();
        assert_eq!(values["host"], "file-host");
        let env = |name: &str| (name == "HOST_VAR_KEY").then(|| OsString::from("from-env"));
        let values = resolve(&m, None, env).unwrap();
        assert_eq!((values["host"].as_str(), values["key"].as_str()), ("http://d", "from-env"));
    }

    #[test]
    fn a_required_variable_without_a_value_is_named() {
        let m = manifest("key = { required = true }\nhost = { default = \"h\" }");
        let err = resolve(&m, None, |_| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "app `a`: variable `key` is required and has no value; set HOST_VAR_KEY or put `key = \"...\"` in the secrets file (--secrets)"
        );
    }

    #[test]
    fn a_secrets_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = secrets_file(dir.path(), "key = \"v\"\n", 0o644);
        let err = Secrets::read(&path).unwrap_err().to_string();
        let shown = path.display();
        assert_eq!(
            err,
            format!("secrets file {shown} has mode 0644: group or others can read it; run `chmod 600 {shown}`")
        );
        let path = secrets_file(dir.path(), "key = \"v\"\n", 0o640);
        assert!(Secrets::read(&path).unwrap_err().to_string().contains("mode 0640"));
        let path = secrets_file(dir.path(), "key = \"v\"\n", 0o400);
        assert_eq!(Secrets::read(&path).unwrap().values["key"], "v");
    }

    #[test]
    fn errors_in_a_secrets_file_never_show_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = secrets_file(dir.path(), "ok = \"fine\"\nkey = \"s3cr3t-unclosed\nother = 1\n", 0o600);
        let err = Secrets::read(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("invalid secrets file {}: line 2: ", path.display())), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
        let path = secrets_file(dir.path(), "key = 12345678\n", 0o600);
        let err = Secrets::read(&path).unwrap_err().to_string();
        assert_eq!(err, format!("invalid secrets file {}: `key`: expected a string, found integer", path.display()));
        let secrets = Secrets::read(&secrets_file(dir.path(), "key = \"s3cr3t\"\n", 0o600)).unwrap();
        assert!(!format!("{secrets:?}").contains("s3cr3t"));
    }
}

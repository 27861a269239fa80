//! `host new`: write a ready-to-build app folder from one of the templates embedded in the binary
//! (the repository's `templates/` folder).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

/// Write a new app folder from a template: host.toml, sources, WIT world and README.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  host new rust my-counter --dir apps/my-counter")]
pub struct New {
    /// The template (`--list` shows them).
    #[arg(required_unless_present = "list")]
    template: Option<String>,
    /// The app's name: a lowercase letter, then lowercase letters, digits and `-`.
    #[arg(required_unless_present = "list")]
    name: Option<String>,
    /// The folder to write [default: NAME]; refused when it exists and is not empty.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The host repository whose `guest-sdk`, `wit` and `examples/toolchain` the app uses
    /// [default: the first folder holding them from the current one upwards].
    #[arg(long, env = "HOST_REPO", value_name = "DIR")]
    repo: Option<PathBuf>,
    /// List the templates, one a line.
    #[arg(long)]
    list: bool,
}

/// One template: its files, with `{{name}}`, `{{name_snake}}` and `{{repo}}` to fill in.
struct Template {
    name: &'static str,
    summary: &'static str,
    files: &'static [(&'static str, &'static str)],
}

/// `(path, contents)` of the files of `templates/$dir`, embedded at build time.
macro_rules! files {
    ($dir:literal: $($path:literal),+ $(,)?) => {
        &[$(($path, include_str!(concat!("../../../templates/", $dir, "/", $path)))),+]
    };
}

/// The templates, in the order `--list` shows them.
const TEMPLATES: &[Template] = &[
    Template {
        name: "rust",
        summary: "a Rust function with typed exports through guest-sdk: a key-value counter and a configured greeting",
        files: files!("rust": "host.toml", "Cargo.toml", "src/lib.rs", "wit/world.wit", "README.md"),
    },
    Template {
        name: "http",
        summary: "a Rust wasi:http handler served on the route /NAME",
        files: files!("http": "host.toml", "Cargo.toml", "src/lib.rs", "README.md"),
    },
    Template {
        name: "python",
        summary: "a Python function (componentize-py) with typed exports: greet and add",
        files: files!("python": "host.toml", "app.py", "wit/world.wit", "README.md"),
    },
    Template {
        name: "js",
        summary: "a JavaScript function (componentize-qjs) with typed exports: greet and add",
        files: files!("js": "host.toml", "app.js", "wit/world.wit", "README.md"),
    },
    Template {
        name: "item-trigger",
        summary: "a Rust function run on every item created in a dataset; it annotates the item",
        files: files!("item-trigger": "host.toml", "Cargo.toml", "src/lib.rs", "wit/world.wit", "README.md"),
    },
];

impl New {
    /// Run the command: the list, or the written folder's files, on `out`.
    pub fn run(self, out: &mut impl Write) -> anyhow::Result<ExitCode> {
        let (Some(template), Some(name)) = (self.template, self.name) else {
            for template in TEMPLATES {
                writeln!(out, "{:<13} {}", template.name, template.summary)?;
            }
            return Ok(ExitCode::SUCCESS);
        };
        let Some(template) = TEMPLATES.iter().find(|t| t.name == template) else {
            let names: Vec<&str> = TEMPLATES.iter().map(|t| t.name).collect();
            bail!("unknown template {template:?}; the templates are: {}", names.join(", "));
        };
        if !valid_name(&name) {
            bail!("invalid app name {name:?}: a lowercase letter, then lowercase letters, digits and `-`");
        }
        let dir = self.dir.unwrap_or_else(|| PathBuf::from(&name));
        if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
            bail!("{} exists and is not empty; nothing written", dir.display());
        }
        let repo = match self.repo {
            Some(repo) => repo,
            None => find_repo(&std::env::current_dir()?)?,
        };
        let repo = std::path::absolute(&repo)?;
        let snake = name.replace('-', "_");
        let fill = |text: &str| {
            text.replace("{{name_snake}}", &snake)
                .replace("{{name}}", &name)
                .replace("{{repo}}", &repo.display().to_string())
        };
        for (path, contents) in template.files {
            let target = dir.join(path);
            std::fs::create_dir_all(target.parent().unwrap_or(&dir))?;
            std::fs::write(&target, fill(contents)).with_context(|| format!("writing {}", target.display()))?;
            writeln!(out, "{}", target.display())?;
        }
        // The repository's lock file pins the dependencies a Rust app shares with guest-sdk to the
        // versions the repository builds with, and lets the app build offline from cargo's cache.
        if template.files.iter().any(|(path, _)| *path == "Cargo.toml") {
            let target = dir.join("Cargo.lock");
            std::fs::copy(repo.join("Cargo.lock"), &target)
                .with_context(|| format!("copying {} to {}", repo.join("Cargo.lock").display(), target.display()))?;
            writeln!(out, "{}", target.display())?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Whether `name` is a lowercase letter followed by lowercase letters, digits and `-`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The first folder from `start` upwards that holds the host repository's `guest-sdk`, `wit` and
/// toolchain script.
fn find_repo(start: &Path) -> anyhow::Result<PathBuf> {
    start
        .ancestors()
        .find(|dir| {
            dir.join("guest-sdk/Cargo.toml").is_file()
                && dir.join("wit").is_dir()
                && dir.join("examples/toolchain/run").is_file()
        })
        .map(Path::to_path_buf)
        .with_context(|| {
            format!(
                "no host repository (guest-sdk, wit, examples/toolchain) in {} or above; pass --repo DIR",
                start.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_start_with_a_lowercase_letter_and_hold_lowercase_letters_digits_and_dashes() {
        assert!(valid_name("a"));
        assert!(valid_name("my-app-2"));
        assert!(!valid_name(""));
        assert!(!valid_name("2app"));
        assert!(!valid_name("-app"));
        assert!(!valid_name("My-app"));
        assert!(!valid_name("my_app"));
        assert!(!valid_name("my app"));
    }
}

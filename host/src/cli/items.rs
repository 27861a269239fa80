//! `host items`: upload, list and read the items of a dataset.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::target::{Dataset, ItemQuery};
use super::{Context, RemoteArgs};

/// What to do with items.
#[derive(clap::Subcommand)]
pub enum ItemsCommand {
    /// Upload files (folders recursively) as items; prints the items as JSON lines.
    #[command(
        after_help = "Example:\n  host items upload image-process photos pictures/ --dir /2024 --remote http://127.0.0.1:8080"
    )]
    Upload {
        /// The app.
        app: String,
        /// The dataset.
        dataset: String,
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The dataset folder to put them in (a folder's subfolders are kept below it).
        #[arg(long, default_value = "/")]
        dir: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// List items (JSON lines), optionally filtered.
    List {
        /// The app.
        app: String,
        /// The dataset.
        dataset: String,
        /// Only items in this folder or below.
        #[arg(long)]
        dir: Option<String>,
        /// Only this mimetype pattern (`image/*`).
        #[arg(long)]
        mimetype: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Print one item as JSON, or save its bytes with `--output`.
    Get {
        /// The app.
        app: String,
        /// The dataset.
        dataset: String,
        /// The item id.
        id: String,
        /// Write the item's bytes to this file.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

impl ItemsCommand {
    /// Run the command: items as JSON on `out`.
    pub async fn run(self, context: &Context, out: &mut impl Write) -> anyhow::Result<ExitCode> {
        match self {
            ItemsCommand::Upload { app, dataset, paths, dir, remote } => {
                let files = files_to_upload(&paths, &dir)?;
                let (target, dataset) = (remote.open(context).await?, Dataset { app: &app, name: &dataset });
                let progress = indicatif::ProgressBar::new(files.len() as u64).with_style(
                    indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} items, {per_sec}, ETA {eta} {msg}")?,
                );
                for (file, dir) in files {
                    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    progress.set_message(name.clone());
                    let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
                    let item = target
                        .upload(&dataset, &dir, &name, bytes)
                        .await
                        .with_context(|| format!("uploading {}", file.display()))?;
                    progress.suspend(|| writeln!(out, "{item}"))?;
                    progress.inc(1);
                }
                progress.finish_and_clear();
            }
            ItemsCommand::List { app, dataset, dir, mimetype, remote } => {
                let (target, dataset) = (remote.open(context).await?, Dataset { app: &app, name: &dataset });
                let query = ItemQuery { dir, mimetype };
                // Every page first: a failure part way prints nothing.
                let (mut all, mut cursor) = (Vec::new(), None::<String>);
                loop {
                    let page = target.items(&dataset, &query, cursor.as_deref()).await?;
                    all.extend(page["items"].as_array().cloned().unwrap_or_default());
                    match page["cursor"].as_str() {
                        Some(next) => cursor = Some(next.to_string()),
                        None => break,
                    }
                }
                for item in all {
                    writeln!(out, "{item}")?;
                }
            }
            ItemsCommand::Get { app, dataset, id, output, remote } => {
                let (target, dataset) = (remote.open(context).await?, Dataset { app: &app, name: &dataset });
                match output {
                    Some(file) => {
                        let bytes = target.download(&dataset, &id).await?;
                        std::fs::write(&file, bytes).with_context(|| format!("cannot write {}", file.display()))?;
                    }
                    None => writeln!(out, "{}", String::from_utf8_lossy(&target.item(&dataset, &id).await?))?,
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Files to upload: each file, and every file under each folder, with the dataset folder it goes to.
fn files_to_upload(paths: &[PathBuf], dir: &str) -> anyhow::Result<Vec<(PathBuf, String)>> {
    fn walk(path: &Path, dir: &str, found: &mut Vec<(PathBuf, String)>) -> anyhow::Result<()> {
        if path.is_dir() {
            let sub = match path.file_name() {
                Some(name) => format!("{}/{}", dir.trim_end_matches('/'), name.to_string_lossy()),
                None => dir.to_string(),
            };
            let mut entries: Vec<_> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read folder {}", path.display()))?
                .collect::<Result<_, _>>()?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                walk(&entry.path(), &sub, found)?;
            }
        } else if path.is_file() {
            found.push((path.to_path_buf(), dir.to_string()));
        } else {
            anyhow::bail!("{}: no such file or folder", path.display());
        }
        Ok(())
    }
    let mut found = Vec::new();
    for path in paths {
        walk(path, dir, &mut found)?;
    }
    Ok(found)
}

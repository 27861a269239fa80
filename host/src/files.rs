//! File helpers shared by buckets and datasets: blocking file work moved off the async workers,
//! folders created durably, and the removal of temporary files a crash left behind.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Run blocking file work (writes, `fsync`s, large reads) on tokio's blocking pool, so that the
/// async workers keep serving other requests. Work that has started runs to its end even if the
/// caller stops waiting. A panic in `work` is raised again here.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("blocking file work was cancelled by the runtime's shutdown: {e}"),
    }
}

/// The permission bits of a file that group or others may read (a secrets or tokens file must
/// not be), or `None` when only its owner may. Systems without mode bits always give `None`.
pub(crate) fn readable_by_others(metadata: &std::fs::Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o7777;
        (mode & 0o044 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        None
    }
}

/// Make the entries of folder `path` durable (new, renamed or removed files in it).
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

/// Create folder `path` and its missing parents, syncing the folder that holds each new one, so
/// that a crash cannot lose a folder (and the synced files in it).
pub(crate) fn create_dir_all_synced(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    create_dir_all_synced(parent)?;
    match std::fs::create_dir(path) {
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// A file written and synced under a unique temporary name (starting with `.`), waiting to be
/// renamed into place; removed if dropped before that.
pub(crate) struct Staged {
    path: PathBuf,
}

impl Staged {
    /// Write `data` to a new temporary file in folder `dir` and sync it. Blocking.
    pub(crate) fn write(dir: &Path, data: &[u8]) -> io::Result<Staged> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(".{}-{}.tmp", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let staged = Staged { path: dir.join(name) };
        let mut file = std::fs::File::create_new(&staged.path)?;
        file.write_all(data)?;
        file.sync_data()?;
        Ok(staged)
    }

    /// Rename the file onto `target` (in the same folder), replacing it, and sync the folder.
    /// Blocking.
    pub(crate) fn install(mut self, target: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, target)?;
        self.path = PathBuf::new();
        sync_dir(target.parent().unwrap_or(Path::new(".")))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Remove the files in each folder `root/*/FOLDER` (or `root/*/*` when `folder` is `None`) whose
/// names `orphan` accepts: temporary files of writes a crash interrupted. Only called when a host
/// starts, when no write can be in flight (the store's lock keeps other hosts off the data dir).
pub(crate) fn remove_orphans(root: &Path, folder: Option<&str>, orphan: impl Fn(&str) -> bool) -> io::Result<()> {
    for app in read_dir_or_empty(root)? {
        let app = app?.path();
        let folders: Vec<_> = match folder {
            Some(folder) => vec![app.join(folder)],
            None => read_dir_or_empty(&app)?.map(|e| e.map(|e| e.path())).collect::<io::Result<_>>()?,
        };
        for dir in folders.into_iter().filter(|d| d.is_dir()) {
            let mut removed = false;
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                if entry.file_type()?.is_file() && orphan(&entry.file_name().to_string_lossy()) {
                    std::fs::remove_file(entry.path())?;
                    tracing::info!(file = %entry.path().display(), "removed a temporary file left by a crash");
                    removed = true;
                }
            }
            if removed {
                sync_dir(&dir)?;
            }
        }
    }
    Ok(())
}

/// The entries of `dir`, none when it does not exist.
fn read_dir_or_empty(dir: &Path) -> io::Result<Box<dyn Iterator<Item = io::Result<std::fs::DirEntry>>>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(Box::new(entries)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Box::new(std::iter::empty())),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphans_are_removed_from_their_folders_only() {
        let root = tempfile::tempdir().unwrap();
        let staging = root.path().join("app/.staging");
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::create_dir_all(root.path().join("app/bucket")).unwrap();
        std::fs::write(staging.join("12-0"), b"half").unwrap();
        std::fs::write(root.path().join("app/bucket/12-0"), b"object").unwrap();
        remove_orphans(root.path(), Some(".staging"), |_| true).unwrap();
        assert!(!staging.join("12-0").exists());
        assert!(root.path().join("app/bucket/12-0").exists());
        remove_orphans(&root.path().join("missing"), None, |_| true).unwrap();
    }

    #[test]
    fn nested_folders_are_created_once() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("a/b/c");
        create_dir_all_synced(&deep).unwrap();
        create_dir_all_synced(&deep).unwrap();
        assert!(deep.is_dir());
    }
}

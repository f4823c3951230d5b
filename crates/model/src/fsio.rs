//! Durable file writes: every file a stage publishes is written beside its final name, fsynced, and renamed
//! into place, so a crash leaves either the old file or the new one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::ModelError;

/// A hidden sibling of `path` for staging it: `dir/.NAME.TAG` (a rename within one directory is atomic).
pub fn hidden_sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "out".into());
    parent_of(path).join(format!(".{name}.{tag}"))
}

fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` to `path` through a fsynced temporary sibling and a rename, so readers never see half a
/// file; creates the parent directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let parent = parent_of(path);
    std::fs::create_dir_all(parent).map_err(|e| ModelError::io(parent, e))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".sekator-");
    // tempfile's default is owner-only (0600); published files get the usual 0666 & !umask, like any
    // other file a user writes, so a model directory stays readable where it is deployed.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder
        .tempfile_in(parent)
        .map_err(|e| ModelError::io(parent, e))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| ModelError::io(tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| ModelError::io(path, e.error))?;
    sync_parent(path)
}

/// Publishes the finished directory `staged` as `dest`: fsyncs it, moves an existing `dest` aside, renames
/// `staged` into place (restoring the old one if that fails), then deletes the old one. Readers see the old
/// directory or the new one, never a mix, and a crash leaves at least one of them whole.
pub fn publish_dir(staged: &Path, dest: &Path) -> Result<(), ModelError> {
    sync_tree(staged)?;
    let old = hidden_sibling(dest, &format!("old-{}", std::process::id()));
    let had_old = dest.exists();
    if had_old {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| ModelError::io(&old, e))?;
        }
        std::fs::rename(dest, &old).map_err(|e| ModelError::io(dest, e))?;
    }
    if let Err(e) = std::fs::rename(staged, dest) {
        if had_old {
            let _ = std::fs::rename(&old, dest);
        }
        return Err(ModelError::io(dest, e));
    }
    if had_old {
        std::fs::remove_dir_all(&old).map_err(|e| ModelError::io(&old, e))?;
    }
    sync_parent(dest)
}

/// fsyncs a file, or every file and directory under a directory, so a rename that publishes it cannot be
/// seen on disk before its contents after a crash.
pub fn sync_tree(path: &Path) -> Result<(), ModelError> {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| ModelError::io(path, e))? {
            sync_tree(&entry.map_err(|e| ModelError::io(path, e))?.path())?;
        }
    }
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| ModelError::io(path, e))
}

/// fsyncs the directory holding `path` (makes a rename into it durable).
pub fn sync_parent(path: &Path) -> Result<(), ModelError> {
    let parent = parent_of(path);
    std::fs::File::open(parent)
        .and_then(|f| f.sync_all())
        .map_err(|e| ModelError::io(parent, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_directory_replaces_the_old_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (staged, dest) = (dir.path().join(".new"), dir.path().join("model"));
        for (name, text) in [("a", "old"), ("b", "old")] {
            write_atomic(&dest.join(name), text.as_bytes()).unwrap();
        }
        write_atomic(&staged.join("a"), b"new").unwrap();
        publish_dir(&staged, &dest).unwrap();
        assert_eq!(std::fs::read(dest.join("a")).unwrap(), b"new");
        assert!(
            !dest.join("b").exists(),
            "nothing of the old directory is left in it"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["model"]);
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.json"]);
    }

    #[cfg(unix)]
    #[test]
    fn atomic_writes_get_the_permissions_of_a_plain_write() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (ours, plain) = (dir.path().join("ours"), dir.path().join("plain"));
        write_atomic(&ours, b"x").unwrap();
        std::fs::write(&plain, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ours), mode(&plain));
    }
}

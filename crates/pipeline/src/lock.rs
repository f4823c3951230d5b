//! One process per run directory: an advisory lock (`flock`) on `<run>/.sekator.lock`, held while a stage
//! runs and deleted after. The kernel drops the lock when the holder exits however it exits (SIGKILL
//! included), so a lock file left behind never blocks; the PID inside it is only for the message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use sekator_model::ModelError;

pub const LOCK_FILE: &str = ".sekator.lock";

/// Names the lock file a process holds, for its children: a stage's own child processes (distill's
/// precision probes and teacher-cache fill) run under their parent's lock instead of being refused by it.
const HELD_ENV: &str = "SEKATOR_RUN_LOCK";

/// Held for the lifetime of the value.
#[derive(Debug)]
pub struct RunLock {
    /// `None` in a child running under its parent's lock.
    file: Option<File>,
    pub path: PathBuf,
}

impl RunLock {
    /// Locks run directory `dir` (created if missing) for `what` (the stage name, for the message another
    /// process gets). Refuses at once, naming the holder's PID, when another process holds it.
    pub fn acquire(dir: &Path, what: &str) -> Result<RunLock, ModelError> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        Self::acquire_file(&dir.join(LOCK_FILE), what)
    }

    /// Locks output directory `out` of a stage run outside a pipeline config: `<parent>/.<name>.lock`, a
    /// sibling (the directory itself may be replaced by a rename).
    pub fn for_output(out: &Path, what: &str) -> Result<RunLock, ModelError> {
        let path = sekator_model::hidden_sibling(out, "lock");
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(|e| ModelError::io(p, e))?;
        }
        Self::acquire_file(&path, what)
    }

    fn acquire_file(path: &Path, what: &str) -> Result<RunLock, ModelError> {
        if held_by_parent(path) {
            return Ok(RunLock {
                file: None,
                path: path.to_path_buf(),
            });
        }
        // The holder deletes the file when it is done; a process that opened it just before may then lock
        // the deleted file, so a lock counts only while `path` is still the file locked.
        loop {
            let lock = Self::try_once(path, what)?;
            if lock.file.as_ref().is_some_and(|f| same_file(f, path)) {
                std::env::set_var(HELD_ENV, path);
                return Ok(lock);
            }
        }
    }

    fn try_once(path: &Path, what: &str) -> Result<RunLock, ModelError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| ModelError::io(path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                file.read_to_string(&mut holder).ok();
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "another process"
                } else {
                    holder
                };
                return Err(ModelError::Other(format!(
                    "{}: the run is in use by {holder}; wait for it to finish or stop it (the lock goes \
                     with the process; nothing to delete)",
                    path.display()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(ModelError::io(path, e)),
        }
        let me = format!("PID {} ({what})\n", std::process::id());
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(me.as_bytes()))
            .and_then(|_| file.flush())
            .map_err(|e| ModelError::io(path, e))?;
        Ok(RunLock {
            file: Some(file),
            path: path.to_path_buf(),
        })
    }
}

impl Drop for RunLock {
    /// Removes the file while still holding the lock (see `acquire_file` for why that is safe).
    fn drop(&mut self) {
        if self.file.is_some() {
            std::fs::remove_file(&self.path).ok();
        }
    }
}

/// Whether `path` is the lock our parent process holds (it said so in `SEKATOR_RUN_LOCK`, and the file
/// names its PID).
#[cfg(unix)]
fn held_by_parent(path: &Path) -> bool {
    let named = std::env::var_os(HELD_ENV).is_some_and(|v| Path::new(&v) == path);
    let parent = format!("PID {} ", std::os::unix::process::parent_id());
    named && std::fs::read_to_string(path).is_ok_and(|t| t.starts_with(&parent))
}

#[cfg(not(unix))]
fn held_by_parent(_: &Path) -> bool {
    false
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.exists()
}

/// The lock a stage takes before it writes anything: the whole run directory under a pipeline config
/// (`run_dir`), else a lock beside the stage's own output directory `out`.
pub fn lock_stage(
    run_dir: Option<&Path>,
    out: &Path,
    stage: crate::Stage,
) -> Result<RunLock, ModelError> {
    match run_dir {
        Some(dir) => RunLock::acquire(dir, stage.name()),
        None => RunLock::for_output(out, stage.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path(), "distill").unwrap();
        let e = RunLock::acquire(dir.path(), "eval")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("PID {} (distill)", std::process::id())),
            "{e}"
        );
        drop(first);
        assert!(
            !dir.path().join(LOCK_FILE).exists(),
            "a released lock leaves no file"
        );
        let _second = RunLock::acquire(dir.path(), "eval").unwrap();
        assert!(dir.path().join(LOCK_FILE).exists());
    }
}

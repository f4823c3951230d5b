//! One process per run directory: an advisory lock (`flock`) on `<run>/.sekator.lock`, held while a stage
//! runs. The kernel drops it when the holder exits however it exits (SIGKILL included), so a stale lock file
//! never blocks; the PID inside it is only for the message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use sekator_model::ModelError;

pub const LOCK_FILE: &str = ".sekator.lock";

/// Held for the lifetime of the value.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
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
                let holder = if holder.is_empty() { "another process" } else { holder };
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
            _file: file,
            path: path.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path(), "distill").unwrap();
        let e = RunLock::acquire(dir.path(), "eval").unwrap_err().to_string();
        assert!(
            e.contains(&format!("PID {} (distill)", std::process::id())),
            "{e}"
        );
        drop(first);
        RunLock::acquire(dir.path(), "eval").unwrap();
    }
}

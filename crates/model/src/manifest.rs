//! Stage manifests: what a stage ran with (config section, input hashes, code version) and how long it took.
//!
//! A stage whose manifest matches what it is about to do can be skipped; that makes `just pipeline`
//! resumable after a crash or a change to a later stage only.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub stage: String,
    /// The stage's own settings, as it resolved them.
    pub config: serde_json::Value,
    /// Input name -> content hash (checkpoints, data files, importance files).
    pub inputs: BTreeMap<String, String>,
    pub code_version: String,
    /// Wall-clock seconds of the stage (not part of the match).
    #[serde(default)]
    pub seconds: f64,
    /// Free-form results worth keeping beside the outputs (not part of the match).
    #[serde(default)]
    pub results: serde_json::Value,
}

impl Manifest {
    pub fn new(stage: &str, config: serde_json::Value, inputs: BTreeMap<String, String>) -> Self {
        Self {
            stage: stage.to_string(),
            config,
            inputs,
            code_version: env!("CARGO_PKG_VERSION").to_string(),
            seconds: 0.0,
            results: serde_json::Value::Null,
        }
    }

    /// Same stage, settings, inputs and code: the outputs beside this manifest are still valid.
    pub fn matches(&self, other: &Manifest) -> bool {
        self.stage == other.stage
            && self.config == other.config
            && self.inputs == other.inputs
            && self.code_version == other.code_version
    }

    pub fn read(dir: &Path) -> Option<Manifest> {
        serde_json::from_str(&std::fs::read_to_string(dir.join(MANIFEST_FILE)).ok()?).ok()
    }

    pub fn write(&self, dir: &Path) -> Result<(), ModelError> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| ModelError::Other(e.to_string()))?;
        write_atomic(&dir.join(MANIFEST_FILE), text.as_bytes())
    }
}

/// A hidden sibling of `path` for staging it: `dir/.NAME.TAG` (a rename within one directory is atomic).
pub fn hidden_sibling(path: &Path, tag: &str) -> std::path::PathBuf {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "out".into());
    parent.join(format!(".{name}.{tag}"))
}

/// Writes `bytes` to `path` through a temporary sibling and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| ModelError::io(parent, e))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| ModelError::io(&tmp, e))?;
    sync_tree(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))?;
    sync_parent(path)
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
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(parent)
        .and_then(|f| f.sync_all())
        .map_err(|e| ModelError::io(parent, e))
}

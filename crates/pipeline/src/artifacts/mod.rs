//! The typed files stages hand each other, each with one writer (its stage) and one reader.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use sekator_model::{write_atomic, ModelError};

use crate::Stage;

pub mod distill;
pub mod eval;
pub mod importance;
pub mod size;

/// Reads `dir/file`, written by `stage`; a missing or damaged file is an error naming it and the rerun.
fn read_json<T: DeserializeOwned>(dir: &Path, file: &str, stage: Stage) -> Result<T, ModelError> {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ModelError::Other(format!(
            "{}: {e} (the {stage} stage writes it: `just {stage} CONFIG`)",
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        ModelError::Other(format!(
            "{}: {e} (rerun the {stage} stage with --force to rewrite it)",
            path.display()
        ))
    })
}

/// Writes `value` as pretty JSON to `dir/file`, atomically.
fn write_json<T: Serialize>(dir: &Path, file: &str, value: &T) -> Result<(), ModelError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| ModelError::Other(e.to_string()))?;
    write_atomic(&dir.join(file), (text + "\n").as_bytes())
}

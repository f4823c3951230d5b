//! The pipeline config file (`configs/*.toml`): a `[run]` section plus one section per stage.
//!
//! Every stage binary takes `--config FILE`, reads `[run]` and its own section, and derives its input and
//! output directories from the run name, so `just pipeline` is just the stages called in order with the
//! same file; nothing is orchestrated twice. Unknown sections and unknown keys are errors naming the key.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// Sections a config file may contain.
pub const SECTIONS: [&str; 6] = ["run", "importance", "surgery", "distill", "eval", "report"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Run name: outputs go to `<runs_dir>/<name>/<stage>/`.
    pub name: String,
    /// The teacher / original checkpoint (Hugging Face directory).
    pub model: PathBuf,
    /// en<TAB>ru training pairs.
    #[serde(default = "default_pairs")]
    pub pairs: PathBuf,
    /// Held-out pairs for distillation metrics.
    #[serde(default = "default_dev_pairs")]
    pub dev_pairs: PathBuf,
    /// encodechka data directory.
    #[serde(default = "default_encodechka")]
    pub encodechka: PathBuf,
    #[serde(default = "default_runs")]
    pub runs_dir: PathBuf,
    /// `auto`, `cpu` or `cuda`.
    #[serde(default)]
    pub device: crate::DeviceKind,
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_pairs() -> PathBuf {
    "data/en-ru/pairs.tsv".into()
}
fn default_dev_pairs() -> PathBuf {
    "data/en-ru/pairs_dev.tsv".into()
}
fn default_encodechka() -> PathBuf {
    "data/encodechka".into()
}
fn default_runs() -> PathBuf {
    "runs".into()
}
fn default_seed() -> u64 {
    42
}

/// A parsed config file.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub path: PathBuf,
    pub run: RunSection,
    table: toml::Table,
}

impl RunConfig {
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ModelError::Config {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
        if let Some(k) = table.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
            return Err(ModelError::Config {
                path: path.to_path_buf(),
                msg: format!("unknown section [{k}] (known: {})", SECTIONS.join(", ")),
            });
        }
        let run_value = table
            .get("run")
            .cloned()
            .ok_or_else(|| ModelError::Config {
                path: path.to_path_buf(),
                msg: "missing [run] section (name, model, ...)".into(),
            })?;
        let run: RunSection =
            run_value
                .try_into()
                .map_err(|e: toml::de::Error| ModelError::Config {
                    path: path.to_path_buf(),
                    msg: format!("[run]: {e}"),
                })?;
        Ok(Self {
            path: path.to_path_buf(),
            run,
            table,
        })
    }

    /// Deserialises section `name` into the stage's own settings (all defaults when the section is absent).
    pub fn section<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T, ModelError> {
        match self.table.get(name) {
            None => Ok(T::default()),
            Some(v) => v
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| ModelError::Config {
                    path: self.path.clone(),
                    msg: format!("[{name}]: {e}"),
                }),
        }
    }

    /// The raw section, for manifests (so a change in one section reruns only that stage and later ones).
    pub fn section_json(&self, name: &str) -> serde_json::Value {
        self.table
            .get(name)
            .and_then(|v| serde_json::to_value(v).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    /// `<runs_dir>/<name>/<stage>`.
    pub fn stage_dir(&self, stage: &str) -> PathBuf {
        self.run.runs_dir.join(&self.run.name).join(stage)
    }
}

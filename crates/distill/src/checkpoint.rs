//! Checkpoints: `out/checkpoints/step-N/` = a Hugging Face model directory (loadable by `embed`, the eval
//! stage and transformers) plus `optimizer.safetensors` (AdamW moments by parameter path) and `state.json`
//! (step, data position, seed, settings, metrics).
//!
//! A checkpoint is assembled in a hidden sibling (`.step-N.partial`) and renamed into place, so a directory
//! named `step-N` is always complete; `--resume` picks the highest such N. Only the newest `keep` are kept.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use sekator_export::card::CardFacts;
use sekator_model::{write_atomic, write_model_dir, BertConfig, NamedTensor};

use crate::data::DataPosition;
use crate::error::{DistillError, Result};
use crate::optim::AdamW;

pub const STATE_FILE: &str = "state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const CHECKPOINTS: &str = "checkpoints";
/// Files a stage may leave in a model directory that must not be copied into ours.
const FOREIGN_FILES: [&str; 3] = ["manifest.json", STATE_FILE, OPTIMIZER_FILE];

/// Everything besides weights and moments that a resumed run needs to continue exactly.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// The float dtype the weights were trained in (absent in checkpoints from before precisions existed).
    #[serde(default)]
    pub precision: Option<crate::precision::Precision>,
    /// Optimizer steps done.
    pub step: usize,
    pub total_steps: usize,
    /// Where the next batch comes from (follows from `step`; stored to check and to read).
    pub position: DataPosition,
    pub seed: u64,
    /// AdamW update count (bias correction).
    pub optimizer_step: usize,
    /// The settings that define the trajectory (see `DistillConfig::trajectory_key`).
    pub trajectory: serde_json::Value,
    pub teacher_hash: String,
    /// Hash of the student the run *started* from.
    pub student_hash: String,
    pub data_hash: String,
    /// Seconds of training so far (for throughput over resumed runs).
    pub train_seconds: f64,
    /// Latest training loss and evaluation.
    pub metrics: serde_json::Value,
}

pub fn checkpoints_dir(out: &Path) -> PathBuf {
    out.join(CHECKPOINTS)
}

pub fn checkpoint_dir(out: &Path, step: usize) -> PathBuf {
    checkpoints_dir(out).join(format!("step-{step}"))
}

/// Writes a model directory atomically (temp sibling + rename) without stage files of the source dir.
pub fn write_clean_model_dir(
    out: &Path,
    config: &BertConfig,
    tensors: &[NamedTensor],
    tokenizer_from: &Path,
    card: &CardFacts,
    extra: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let partial = sekator_model::hidden_sibling(out, "partial");
    write_model_dir(&partial, config, tensors, Some(tokenizer_from), true)?;
    crate::card::write(&partial, card)?;
    for f in FOREIGN_FILES {
        let p = partial.join(f);
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| DistillError::io(&p, e))?;
        }
    }
    extra(&partial)?;
    sekator_model::sync_tree(&partial)?;
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(|e| DistillError::io(out, e))?;
    }
    std::fs::rename(&partial, out).map_err(|e| DistillError::io(out, e))?;
    Ok(sekator_model::sync_parent(out)?)
}

/// Writes `step-N` and deletes all but the newest `keep` checkpoints.
#[allow(clippy::too_many_arguments)]
pub fn save<B: burn::tensor::backend::Backend>(
    out: &Path,
    config: &BertConfig,
    tensors: &[NamedTensor],
    tokenizer_from: &Path,
    card: &CardFacts,
    optim: &AdamW<B>,
    state: &TrainState,
    keep: usize,
) -> Result<PathBuf> {
    let dir = checkpoint_dir(out, state.step);
    write_clean_model_dir(&dir, config, tensors, tokenizer_from, card, |partial| {
        optim.save(&partial.join(OPTIMIZER_FILE))?;
        let text =
            serde_json::to_string_pretty(state).map_err(|e| DistillError::Resume(e.to_string()))?;
        write_atomic(&partial.join(STATE_FILE), text.as_bytes())?;
        Ok(())
    })?;
    let all = list(out);
    for (_, old) in all.iter().rev().skip(keep.max(1)) {
        if let Err(e) = std::fs::remove_dir_all(old) {
            tracing::warn!("{}: could not delete old checkpoint: {e}", old.display());
        }
    }
    Ok(dir)
}

/// Complete checkpoints `(step, dir)`, oldest first.
pub fn list(out: &Path) -> Vec<(usize, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(checkpoints_dir(out)) else {
        return Vec::new();
    };
    let mut v: Vec<(usize, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            let p = e.path();
            let complete = [
                STATE_FILE,
                OPTIMIZER_FILE,
                "config.json",
                "model.safetensors",
            ]
            .iter()
            .all(|f| p.join(f).is_file());
            complete.then_some((step, p))
        })
        .collect();
    v.sort();
    v
}

/// The newest complete checkpoint and its state.
pub fn latest(out: &Path) -> Result<Option<(PathBuf, TrainState)>> {
    let Some((_, dir)) = list(out).pop() else {
        return Ok(None);
    };
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| DistillError::io(&path, e))?;
    let state = serde_json::from_str(&text)
        .map_err(|e| DistillError::Resume(format!("{}: {e}", path.display())))?;
    Ok(Some((dir, state)))
}

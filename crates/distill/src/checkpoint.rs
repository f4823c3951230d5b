//! Checkpoints: `out/checkpoints/step-N/` = a Hugging Face model directory (loadable by `embed`, the eval
//! stage and transformers) plus `optimizer.safetensors` (AdamW moments by parameter path) and `state.json`
//! (step, data position, seed, settings, metrics).
//!
//! A checkpoint is assembled in a hidden sibling (`.step-N.partial`) and renamed into place, so a directory
//! named `step-N` is always complete. `state.json` is written last and records the sha256 of the weight
//! files beside it, so `--resume` ([`newest_verified`]) takes the highest N whose files still match (a
//! checkpoint truncated or damaged after it was written is skipped with a warning). Only the newest `keep`
//! are kept.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use sekator_export::card::CardFacts;
use sekator_model::{
    file_hash, write_atomic, write_model_dir, BertConfig, NamedTensor, SafetensorsWeights,
};

use crate::data::DataPosition;
use crate::error::{DistillError, Result};
use crate::optim::AdamW;

pub const STATE_FILE: &str = "state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const WEIGHTS_FILE: &str = "model.safetensors";
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
    /// Warm-up steps of the schedule this checkpoint was trained on (kept when a resumed run is longer;
    /// absent in older checkpoints, where it follows from the config and `total_steps`).
    #[serde(default)]
    pub warmup_steps: Option<usize>,
    /// sha256 (hex, as [`sekator_model::file_hash`]) of this checkpoint's `model.safetensors`, taken from
    /// the written file before `state.json` (absent in older checkpoints). Filled in by [`save`].
    #[serde(default)]
    pub weights_sha256: Option<String>,
    /// The same of `optimizer.safetensors`.
    #[serde(default)]
    pub optimizer_sha256: Option<String>,
    /// Build-time code fingerprint (`SEKATOR_CODE`) of the binary that wrote the checkpoint.
    #[serde(default)]
    pub code: Option<String>,
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
    Ok(sekator_model::publish_dir(&partial, out)?)
}

/// Writes `step-N` (weights, moments, then `state.json` with their hashes) and deletes all but the newest
/// `keep` checkpoints.
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
        let opt_path = partial.join(OPTIMIZER_FILE);
        optim.save(&opt_path)?;
        let mut state = state.clone();
        state.weights_sha256 = Some(file_hash(&partial.join(WEIGHTS_FILE))?);
        state.optimizer_sha256 = Some(file_hash(&opt_path)?);
        let text = serde_json::to_string_pretty(&state)
            .map_err(|e| DistillError::Resume(e.to_string()))?;
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

/// A checkpoint that `--resume` passed over, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub step: usize,
    pub dir: PathBuf,
    pub why: String,
}

/// What [`newest_verified`] found.
#[derive(Debug, Default)]
pub struct Found {
    /// The newest checkpoint that verifies, and its state.
    pub good: Option<(PathBuf, TrainState)>,
    /// Newer `step-N` directories that did not verify, newest first.
    pub skipped: Vec<Skipped>,
}

/// Walks the `step-N` directories newest first and returns the first that verifies: every file present,
/// `state.json` parses and names the same step, the weights and moments match their recorded sha256
/// (checkpoints from before hashes were recorded: both safetensors files open and hold every tensor
/// their headers list) and the model directory opens. Each one passed over is logged with a warning
/// naming it and why; none verifying gives `good: None`.
pub fn newest_verified(out: &Path) -> Found {
    let mut found = Found::default();
    for (step, dir) in step_dirs(out).into_iter().rev() {
        match verify(&dir, step) {
            Ok(state) => {
                found.good = Some((dir, state));
                break;
            }
            Err(why) => {
                tracing::warn!("{}: {why}; skipping it", dir.display());
                found.skipped.push(Skipped { step, dir, why });
            }
        }
    }
    found
}

/// Moves a checkpoint that failed verification out of the way (to a hidden `.step-N.damaged` sibling,
/// replacing an earlier one), so that it is neither taken by a later `--resume` nor counted among the
/// newest `keep` when new checkpoints are pruned; returns where it went.
pub fn set_aside(dir: &Path) -> Result<PathBuf> {
    let aside = sekator_model::hidden_sibling(dir, "damaged");
    if aside.exists() {
        std::fs::remove_dir_all(&aside).map_err(|e| DistillError::io(&aside, e))?;
    }
    std::fs::rename(dir, &aside).map_err(|e| DistillError::io(dir, e))?;
    Ok(aside)
}

/// Every `step-N` directory `(step, dir)`, complete or not, oldest first.
fn step_dirs(out: &Path) -> Vec<(usize, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(checkpoints_dir(out)) else {
        return Vec::new();
    };
    let mut v: Vec<(usize, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            Some((step, e.path()))
        })
        .collect();
    v.sort();
    v
}

/// The state of checkpoint `dir` (`step-{step}`) if its files are whole, else why not.
fn verify(dir: &Path, step: usize) -> std::result::Result<TrainState, String> {
    for f in [STATE_FILE, OPTIMIZER_FILE, "config.json", WEIGHTS_FILE] {
        if !dir.join(f).is_file() {
            return Err(format!("{f} is missing"));
        }
    }
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{STATE_FILE}: {e}"))?;
    let state: TrainState = serde_json::from_str(&text)
        .map_err(|e| format!("{STATE_FILE} does not parse ({e}; truncated or damaged?)"))?;
    if state.step != step {
        return Err(format!(
            "{STATE_FILE} is of step {}, not {step}",
            state.step
        ));
    }
    for (file, recorded) in [
        (WEIGHTS_FILE, &state.weights_sha256),
        (OPTIMIZER_FILE, &state.optimizer_sha256),
    ] {
        let p = dir.join(file);
        match recorded {
            Some(want) => {
                let got = file_hash(&p).map_err(|e| format!("{file}: {e}"))?;
                if &got != want {
                    return Err(format!(
                        "{file} does not match its recorded hash (truncated or damaged?)"
                    ));
                }
            }
            // an older checkpoint: at least every tensor its header lists must be in the file
            None => {
                SafetensorsWeights::open_files(&[p])
                    .map_err(|e| format!("{file} does not open ({e})"))?;
            }
        }
    }
    SafetensorsWeights::open_dir(dir).map_err(|e| format!("{WEIGHTS_FILE} does not open ({e})"))?;
    Ok(state)
}

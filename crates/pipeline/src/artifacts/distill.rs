//! `distill/summary.json`: what a finished distillation reached (written by distill, read by the report).

use std::path::Path;

use serde::{Deserialize, Serialize};

use sekator_model::{write_atomic, ModelError};

pub const DISTILL_SUMMARY_FILE: &str = "summary.json";

/// The student on the dev pairs at one step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DevMetrics {
    pub step: usize,
    /// (MSE(s(en), t(en)) + MSE(s(ru), t(ru))) / 2.
    pub mse: f32,
    pub mse_en: f32,
    pub mse_ru: f32,
    /// MSE(s(ru), t(en)).
    pub mse_cross: f32,
    pub acc_en_ru: f32,
    pub acc_ru_en: f32,
    pub pairs: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillSummary {
    pub total_steps: usize,
    pub train_pairs: usize,
    /// Pairs per second of the training steps of the last invocation (evaluation and checkpoints excluded).
    pub pairs_per_s: f64,
    /// The float dtype the student trained in.
    pub precision: String,
    /// Dev metrics before the first and after the last step (absent without dev pairs).
    pub eval_first: Option<DevMetrics>,
    pub eval_last: Option<DevMetrics>,
    /// The teacher's own dev retrieval accuracy (en->ru, ru->en).
    pub teacher_acc: Option<(f32, f32)>,
}

impl DistillSummary {
    /// Reads `dir/summary.json`, naming the file and the stage that writes it when missing or damaged.
    pub fn read(dir: &Path) -> Result<DistillSummary, ModelError> {
        let path = dir.join(DISTILL_SUMMARY_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ModelError::Other(format!(
                "{}: {e} (a finished distillation writes it: `just distill CONFIG`)",
                path.display()
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| {
            ModelError::Other(format!(
                "{}: {e} (rerun distill with --force to rewrite it)",
                path.display()
            ))
        })
    }

    pub fn write(&self, dir: &Path) -> Result<(), ModelError> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| ModelError::Other(e.to_string()))?;
        write_atomic(&dir.join(DISTILL_SUMMARY_FILE), (text + "\n").as_bytes())
    }
}

//! `distill/summary.json`: what a finished distillation reached (written by distill, read by the report).

use std::path::Path;

use serde::{Deserialize, Serialize};

use sekator_model::ModelError;

use crate::Stage;

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
        super::read_json(dir, DISTILL_SUMMARY_FILE, Stage::Distill)
    }

    pub fn write(&self, dir: &Path) -> Result<(), ModelError> {
        super::write_json(dir, DISTILL_SUMMARY_FILE, self)
    }
}

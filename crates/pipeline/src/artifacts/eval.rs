//! `eval/summary.json`: encodechka scores per measured model (written by the eval stage, read by the report).
//! `summary.csv` and `summary.md` beside it are for people and carry the published rows too.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use sekator_model::ModelError;

use crate::Stage;

pub const EVAL_SUMMARY_FILE: &str = "summary.json";

/// encodechka's task codes in its column order (the eval stage's `TaskId::ALL`, checked there).
pub const TASKS: [&str; 10] = [
    "STS", "PI", "NLI", "SA", "TI", "IA", "IC", "ICX", "NE1", "NE2",
];

/// The word-level tasks (NER); the other eight are the sentence tasks of Mean S.
pub const WORD_TASKS: [&str; 2] = ["NE1", "NE2"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSummary {
    pub models: Vec<ModelSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// The eval stage's `--name` (`teacher`, `pruned`, `distilled` in a pipeline run).
    pub model: String,
    /// encodechka task code (`sts`, `pi`, ..., `ne2`) -> score, for the tasks that ran.
    pub scores: BTreeMap<String, f64>,
    /// Mean over the sentence tasks / over all ten, when every one of them ran.
    pub mean_s: Option<f64>,
    pub mean_sw: Option<f64>,
    /// Milliseconds per text on the CPU (encodechka's speed column); `None` on another device.
    pub cpu_ms: Option<f64>,
    pub size_mb: Option<f64>,
    pub dim: usize,
    /// Batched throughput on the device the run used.
    pub texts_per_s: Option<f64>,
}

impl EvalSummary {
    pub fn model(&self, name: &str) -> Option<&ModelSummary> {
        self.models.iter().find(|m| m.model == name)
    }

    /// Reads `dir/summary.json`, naming the file and the stage that writes it when missing or damaged.
    pub fn read(dir: &Path) -> Result<EvalSummary, ModelError> {
        super::read_json(dir, EVAL_SUMMARY_FILE, Stage::Eval)
    }

    pub fn write(&self, dir: &Path) -> Result<(), ModelError> {
        super::write_json(dir, EVAL_SUMMARY_FILE, self)
    }
}

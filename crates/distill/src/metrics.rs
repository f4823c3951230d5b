//! `metrics.jsonl`: one JSON object per line, `{"kind": "train" | "eval", "step": N, ...}`.
//!
//! On resume, records after the checkpoint's step are dropped (they belong to the lost part of the run
//! and will be written again), so the file always describes one trajectory.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DistillError, Result};
use crate::eval::EvalMetrics;
use crate::loss::LossValues;

pub const METRICS_FILE: &str = "metrics.jsonl";

/// Mean training loss over the `log_every` steps ending at `step`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct TrainRecord {
    pub step: usize,
    pub epoch: usize,
    #[serde(flatten)]
    pub loss: LossValues,
    pub lr: f64,
    pub grad_norm: f32,
    pub pairs_per_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Train(TrainRecord),
    Eval(EvalMetrics),
}

impl Record {
    pub fn step(&self) -> usize {
        match self {
            Record::Train(r) => r.step,
            Record::Eval(e) => e.step,
        }
    }
}

pub struct MetricsLog {
    /// `None`: records are kept in memory only (a precision probe writes no files).
    path: Option<PathBuf>,
    pub records: Vec<Record>,
}

impl MetricsLog {
    /// A fresh log (an existing file is replaced).
    pub fn create(out: &Path) -> Result<Self> {
        let path = out.join(METRICS_FILE);
        std::fs::write(&path, b"").map_err(|e| DistillError::io(&path, e))?;
        Ok(Self {
            path: Some(path),
            records: Vec::new(),
        })
    }

    /// A log that writes nothing.
    pub fn discard() -> Self {
        Self {
            path: None,
            records: Vec::new(),
        }
    }

    /// The log of a resumed run: records up to and including `step` are kept.
    pub fn resume(out: &Path, step: usize) -> Result<Self> {
        let path = out.join(METRICS_FILE);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let records: Vec<Record> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Record>(l).ok())
            .filter(|r| r.step() <= step)
            .collect();
        let mut body = String::new();
        for r in &records {
            body.push_str(&serde_json::to_string(r).expect("serialisable"));
            body.push('\n');
        }
        sekator_model::write_atomic(&path, body.as_bytes())?;
        Ok(Self {
            path: Some(path),
            records,
        })
    }

    pub fn push(&mut self, r: Record) -> Result<()> {
        if let Some(path) = &self.path {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .map_err(|e| DistillError::io(path, e))?;
            let line = serde_json::to_string(&r).expect("serialisable") + "\n";
            f.write_all(line.as_bytes())
                .map_err(|e| DistillError::io(path, e))?;
        }
        self.records.push(r);
        Ok(())
    }

    pub fn train(&self) -> impl Iterator<Item = &TrainRecord> {
        self.records.iter().filter_map(|r| match r {
            Record::Train(t) => Some(t),
            _ => None,
        })
    }

    pub fn evals(&self) -> impl Iterator<Item = &EvalMetrics> {
        self.records.iter().filter_map(|r| match r {
            Record::Eval(e) => Some(e),
            _ => None,
        })
    }
}

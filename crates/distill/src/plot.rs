//! The loss-curve PNG written at the end of a run.

use std::path::{Path, PathBuf};

use crate::metrics::MetricsLog;

/// Writes `loss.png` (training loss per logged step, dev MSE per evaluation, each relative to its first
/// value so both fit one axis) into `out`; `None` when no plot could be made (logged, never fatal).
pub fn loss_curve(out: &Path, metrics: &MetricsLog) -> Option<PathBuf> {
    let relative = |pts: Vec<(f64, f64)>| -> Vec<(f64, f64)> {
        match pts.first().map(|p| p.1) {
            Some(first) if first.is_finite() && first != 0.0 => {
                pts.into_iter().map(|(x, y)| (x, y / first)).collect()
            }
            _ => pts,
        }
    };
    let train: Vec<(f64, f64)> = metrics
        .train()
        .map(|r| (r.step as f64, r.loss.total as f64))
        .collect();
    let dev: Vec<(f64, f64)> = metrics
        .evals()
        .map(|e| (e.step as f64, e.mse as f64))
        .collect();
    let series = [
        ("training loss", relative(train)),
        ("dev MSE to teacher", relative(dev)),
    ];
    let path = out.join("loss.png");
    match sekator_plot::lines(
        &path,
        "distillation",
        "step",
        "relative to the first value",
        &series,
    ) {
        Ok(()) => Some(path),
        Err(e) => {
            tracing::warn!("loss plot skipped: {e}");
            None
        }
    }
}

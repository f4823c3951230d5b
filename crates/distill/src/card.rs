//! The model card of a distilled model: the student's card (base, plan, sizes from surgery) plus this run's
//! settings, and the ONNX export of the final model.

use std::path::Path;

use sekator_export::card::{self, CardFacts, ModelFacts};
use sekator_model::{BertConfig, NamedTensor};

use crate::config::DistillConfig;
use crate::error::{DistillError, Result};

/// The card facts of a model distilled from `student_dir` by `cfg`, `step` of `total_steps` done.
pub fn facts(
    cfg: &DistillConfig,
    student_dir: &Path,
    student_cfg: &BertConfig,
    tensors: &[NamedTensor],
    step: usize,
    total_steps: usize,
) -> Result<CardFacts> {
    let mut f = match card::read_facts(student_dir).map_err(export_err)? {
        Some(f) => f,
        None => {
            // A student sekator did not cut: the teacher is the base, sizes only as far as known here.
            let teacher = cfg.teacher()?;
            let (base, license) = card::base_of(teacher, &sekator_model::read_config(teacher)?)
                .map_err(export_err)?;
            CardFacts {
                base,
                license,
                model: ModelFacts {
                    params: Some(tensors.iter().map(|t| t.data.len()).sum()),
                    ..ModelFacts::shape_of("student", student_cfg)
                },
                ..Default::default()
            }
        }
    };
    if !f.stages.iter().any(|s| s == "distillation") {
        f.stages.push("distillation".into());
    }
    let name = |p: Option<&Path>| {
        p.and_then(|p| p.file_name())
            .map_or("—".to_string(), |n| n.to_string_lossy().to_string())
    };
    let mut rows = card::settings([
        ("teacher", name(cfg.teacher().ok())),
        ("data", name(cfg.data().ok())),
        ("steps", format!("{step} of {total_steps}")),
        ("batch size (pairs)", cfg.batch_size.to_string()),
        ("max length (tokens)", cfg.max_length.to_string()),
        ("peak lr", format!("{:e}", cfg.lr)),
        ("schedule", format!("{:?}", cfg.schedule).to_lowercase()),
        ("weight decay", cfg.weight_decay.to_string()),
        ("loss", loss_row(cfg)),
        ("seed", cfg.seed.to_string()),
    ]);
    if let Some(n) = cfg.max_pairs {
        rows.insert(2, ("pairs sampled".into(), n.to_string()));
    }
    f.distillation = Some(rows);
    Ok(f)
}

/// The loss as the card states it; the token term only when the run used it (older cards unchanged).
fn loss_row(cfg: &DistillConfig) -> String {
    let mut s = format!(
        "{} MSE(s(x), t(x)) + {} MSE(s(ru), t(en)) + {} ranking (scale {})",
        cfg.w_mse, cfg.w_cross, cfg.w_rank, cfg.rank_scale
    );
    if cfg.w_tokens > 0.0 {
        s.push_str(&format!(" + {} token hidden-state MSE", cfg.w_tokens));
    }
    s
}

/// Writes the card into the model directory `dir`.
pub fn write(dir: &Path, facts: &CardFacts) -> Result<()> {
    card::write_card(dir, facts).map_err(export_err)
}

/// Exports `final/` to `final/onnx/` (f32, and int8 unless turned off), replacing an earlier export.
pub fn export_onnx(cfg: &DistillConfig, dir: &Path) -> Result<()> {
    if !cfg.onnx {
        return Ok(());
    }
    let opts = sekator_export::onnx::OnnxOptions {
        int8: cfg.onnx_int8,
        overwrite: true,
    };
    let report = sekator_export::onnx::export_dir(dir, &opts).map_err(export_err)?;
    tracing::info!("exported {}", report.dir.display());
    Ok(())
}

fn export_err(e: sekator_export::ExportError) -> DistillError {
    DistillError::Input(e.to_string())
}

//! The up-front time estimate of a pipeline run (`report --estimate`, printed by `just pipeline` first).
//!
//! Rates were measured on 2 CPU cores with all-MiniLM-L6-v2 (see BENCHMARKS.md and `RATES`); a stage on
//! another model is scaled by its encoder FLOPs per token against MiniLM's. It is a guide for planning
//! (a laptop with more cores is faster, a GPU much faster), not a promise.

use std::fmt::Write as _;

use crate::{Manifest, RunConfig, Stage};
use anyhow::{Context, Result};
use sekator_model::BertConfig;
use serde::Deserialize;

/// Throughputs on 2 CPU cores (Intel Xeon, 2026-11-28), MiniLM, after the CPU forward work of that day.
struct Rates {
    /// importance: forward + backward to the masks, pairs per second (batch 32, length 64).
    importance_pairs_per_s: f64,
    /// importance `--validate N`: one loss evaluation over the sample per validated head, pairs per second.
    validate_pairs_per_s: f64,
    /// distill: student steps, pairs per second (batch 32, length 64; MiniLM-sized student).
    distill_pairs_per_s: f64,
    /// distill's teacher cache: texts per second (both sides of every pair, once per data set).
    teacher_texts_per_s: f64,
    /// full encodechka (10 tasks + speed): seconds of embedding (scales with the model) ...
    encodechka_embed_s: f64,
    /// ... and of classifiers (does not).
    encodechka_classify_s: f64,
}

/// Measured in the default run of 2026-11-28 with the fused CPU kernels (importance 1024 pairs at 20.4 pairs/s;
/// distillation 18.4 pairs/s on the half-size student; teacher cache 16,384 texts in 86 s; encodechka 488 s of
/// embedding and 40 s of classifiers for MiniLM).
const RATES: Rates = Rates {
    importance_pairs_per_s: 20.0,
    validate_pairs_per_s: 60.0,
    distill_pairs_per_s: 9.2,
    teacher_texts_per_s: 190.0,
    encodechka_embed_s: 488.0,
    encodechka_classify_s: 40.0,
};

/// encodechka task codes with their share of the full run's time for MiniLM (embedding dominates).
const TASK_SHARE: [(&str, f64); 10] = [
    ("sts", 0.05),
    ("pi", 0.06),
    ("nli", 0.14),
    ("sa", 0.12),
    ("ti", 0.06),
    ("ia", 0.09),
    ("ic", 0.12),
    ("icx", 0.08),
    ("ne1", 0.14),
    ("ne2", 0.14),
];

/// MiniLM's encoder FLOPs per token (what the rates were measured on), from [`encoder_flops`].
fn minilm_flops() -> f64 {
    encoder_flops(384, &[12; 6], &[1536; 6], 32)
}

/// Multiply-adds x2 per token of the encoder at sequence length 128 (the same count as surgery's size
/// report; embeddings and LayerNorms left out).
fn encoder_flops(hidden: usize, heads: &[usize], ffn: &[usize], head_dim: usize) -> f64 {
    let seq = 128.0;
    heads
        .iter()
        .zip(ffn)
        .map(|(&h, &f)| {
            let inner = (h * head_dim) as f64;
            let hd = hidden as f64;
            2.0 * (4.0 * hd * inner) + 2.0 * 2.0 * seq * inner + 2.0 * 2.0 * hd * f as f64
        })
        .sum()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ImportanceSection {
    samples: Option<usize>,
    validate: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SurgerySection {
    heads_ratio: Option<f64>,
    ffn_ratio: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DistillSection {
    steps: Option<usize>,
    batch_size: Option<usize>,
    max_pairs: Option<usize>,
    epochs: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EvalSection {
    tasks: Option<Vec<String>>,
}

/// Sections are read loosely here: each stage binary validates its own keys.
fn loose<T: for<'de> Deserialize<'de> + Default>(rc: &RunConfig, name: &str) -> T {
    serde_json::from_value(rc.section_json(name)).unwrap_or_default()
}

/// The estimate as a small markdown table (minutes per stage), with a note on stages already done.
pub fn estimate(rc: &RunConfig) -> Result<String> {
    let cfg = BertConfig::load(&rc.run.model.join("config.json"))
        .with_context(|| format!("{}: reading the teacher's config", rc.run.model.display()))?;
    let heads = cfg.heads_per_layer();
    let ffn = cfg.ffn_sizes();
    let teacher = encoder_flops(cfg.hidden_size, &heads, &ffn, cfg.head_dim());
    let scale = teacher / minilm_flops();

    let imp: ImportanceSection = loose(rc, "importance");
    let sur: SurgerySection = loose(rc, "surgery");
    let dis: DistillSection = loose(rc, "distill");
    let ev: EvalSection = loose(rc, "eval");

    let samples = imp.samples.unwrap_or(1024) as f64;
    let importance_s = scale
        * (samples / RATES.importance_pairs_per_s
            + imp.validate.unwrap_or(0) as f64 * samples / RATES.validate_pairs_per_s);

    // the student's size after surgery (ratios of heads and FFN neurons removed)
    let keep = |n: usize, r: Option<f64>| ((n as f64) * (1.0 - r.unwrap_or(0.0))).round() as usize;
    let s_heads: Vec<usize> = heads
        .iter()
        .map(|&h| keep(h, sur.heads_ratio).max(1))
        .collect();
    let s_ffn: Vec<usize> = ffn.iter().map(|&f| keep(f, sur.ffn_ratio).max(1)).collect();
    let student = encoder_flops(cfg.hidden_size, &s_heads, &s_ffn, cfg.head_dim());
    let s_scale = student / minilm_flops();

    let batch = dis.batch_size.unwrap_or(32) as f64;
    let pairs = match (dis.steps, dis.max_pairs) {
        (Some(steps), _) => steps as f64 * batch,
        (None, Some(n)) => n as f64 * dis.epochs.unwrap_or(1.0),
        (None, None) => 0.0,
    };
    let distill_s = s_scale * pairs / RATES.distill_pairs_per_s
        + scale * 2.0 * pairs / RATES.teacher_texts_per_s;

    let share: f64 = match &ev.tasks {
        None => 1.0,
        Some(t) => TASK_SHARE
            .iter()
            .filter(|(code, _)| t.iter().any(|x| x.eq_ignore_ascii_case(code)))
            .map(|(_, s)| s)
            .sum(),
    };
    let eval_s = share
        * (3.0 * RATES.encodechka_classify_s + RATES.encodechka_embed_s * (scale + 2.0 * s_scale));

    let mut rows = vec![
        ("importance", importance_s),
        ("surgery", 10.0 * scale),
        ("distill", distill_s),
        ("eval", eval_s),
    ];
    rows.push(("total", rows.iter().map(|r| r.1).sum()));
    let mut s = format!(
        "Estimated time of run `{}` on 2 CPU cores (rates measured with MiniLM, scaled by FLOPs per token: \
         teacher {scale:.2}x, student {s_scale:.2}x MiniLM); stages whose manifest matches are skipped.\n\n\
         | stage | est. minutes | state |\n|---|---:|---|\n",
        rc.run.name
    );
    for (stage, secs) in rows {
        let done = Stage::ALL
            .into_iter()
            .find(|s| s.name() == stage)
            .is_some_and(|s| Manifest::read(&rc.stage_dir(s)).is_some());
        let state = if stage == "total" {
            ""
        } else if done {
            "done before (rerun only if its settings changed)"
        } else {
            "to run"
        };
        writeln!(s, "| {stage} | {:.1} | {state} |", secs / 60.0).ok();
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minilm_flops_match_the_surgery_count() {
        // 22,413,312 is surgery's analytic FLOPs/token of all-MiniLM-L6-v2 (BENCHMARKS.md)
        assert_eq!(minilm_flops(), 22_413_312.0);
        // heads and FFN halved: exactly half (the study's 2x point)
        assert_eq!(
            encoder_flops(384, &[6; 6], &[768; 6], 32),
            22_413_312.0 / 2.0
        );
    }

    #[test]
    fn task_shares_cover_the_full_run() {
        let total: f64 = TASK_SHARE.iter().map(|t| t.1).sum();
        assert!((total - 1.0).abs() < 1e-9);
    }
}

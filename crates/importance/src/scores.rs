//! The importance output directory: the scores (`importance.safetensors`, `importance.json`; their type and
//! format are `sekator_pipeline::artifacts::importance`, the one reader surgery uses too), plus what only
//! people read:
//!
//! - `heads.csv`: `layer,head,score` for every present head (original head indices).
//! - `heads.png`: heat map of the head scores (pruned heads grey); `ffn.png`: each layer's FFN scores sorted.
//! - `manifest.json`: the stage manifest, written last.
//!
//! Every file is written through a temporary sibling and a rename (the charts by `sekator-plot`).

use std::path::Path;

use sekator_model::write_atomic;
use sekator_pipeline::Manifest;

pub use sekator_pipeline::artifacts::importance::{
    ImportanceMeta, Scores, ValidatedHead, Validation, META_FILE, SCORES_FILE,
};

use crate::{ImportanceError, Normalize};

pub const HEADS_CSV: &str = "heads.csv";
pub const HEADS_PNG: &str = "heads.png";
pub const FFN_PNG: &str = "ffn.png";
pub const STAGE: &str = sekator_pipeline::Stage::Importance.name();

/// The stage manifest of scores with `meta` (settings, input hashes, this build's code).
pub fn manifest(meta: &ImportanceMeta) -> Manifest {
    let k = meta.validate.as_ref().map(|v| v.k).unwrap_or(0);
    let mut m = Manifest::new(STAGE, meta.settings(k), meta.inputs(), env!("SEKATOR_CODE"));
    m.seconds = meta.seconds;
    m.results = serde_json::json!({
        "mean_loss": meta.mean_loss,
        "pairs_per_s": meta.pairs_per_s,
        "spearman": meta.validate.as_ref().map(|v| v.spearman),
    });
    m
}

/// Divides each layer's vector by its L2 norm (`Layer`), everything by the global L2 norm (`Global`), or
/// nothing. All-zero vectors stay zero.
pub fn normalize(v: &mut [Vec<f64>], how: Normalize) {
    let norm = |xs: &mut dyn Iterator<Item = f64>| xs.map(|x| x * x).sum::<f64>().sqrt();
    match how {
        Normalize::None => {}
        Normalize::Layer => {
            for row in v.iter_mut() {
                let n = norm(&mut row.iter().copied());
                if n > 0.0 {
                    row.iter_mut().for_each(|x| *x /= n);
                }
            }
        }
        Normalize::Global => {
            let n = norm(&mut v.iter().flatten().copied());
            if n > 0.0 {
                v.iter_mut().flatten().for_each(|x| *x /= n);
            }
        }
    }
}

/// Writes the whole output directory (see the module docs): the scores, `heads.csv`, the plots, and the
/// manifest last.
pub fn write(scores: &Scores, dir: &Path) -> Result<(), ImportanceError> {
    scores.write_scores(dir)?;
    let meta = &scores.meta;
    let layers = scores.heads.len();
    let nh = scores.heads.first().map(|r| r.len()).unwrap_or(0);

    // csv
    let mut csv = String::from("layer,head,score\n");
    for (l, row) in scores.heads.iter().enumerate() {
        for (h, s) in row.iter().enumerate() {
            if scores.head_present[l][h] {
                csv.push_str(&format!("{l},{h},{s}\n"));
            }
        }
    }
    write_atomic(&dir.join(HEADS_CSV), csv.as_bytes())?;

    // plots (drawn to a temporary name, then renamed)
    let values: Vec<f64> = scores
        .heads
        .iter()
        .enumerate()
        .flat_map(|(l, row)| {
            row.iter().enumerate().map(move |(h, &s)| {
                if scores.head_present[l][h] {
                    s as f64
                } else {
                    f64::NAN
                }
            })
        })
        .collect();
    let title = format!(
        "head importance ({}, {}, normalize {})",
        meta.loss.name(),
        meta.criterion.name(),
        meta.normalize.name()
    );
    sekator_plot::heatmap(
        &dir.join(HEADS_PNG),
        &title,
        layers,
        nh,
        &values,
        "layer",
        "head",
    )
    .map_err(|e| ImportanceError::Other(e.to_string()))?;
    let series: Vec<(String, Vec<(f64, f64)>)> = scores
        .ffn
        .iter()
        .enumerate()
        .map(|(l, f)| {
            let mut s: Vec<f32> = f.clone();
            s.sort_by(|a, b| b.total_cmp(a));
            (
                format!("layer {l}"),
                s.iter()
                    .enumerate()
                    .map(|(i, &v)| (i as f64, v as f64))
                    .collect(),
            )
        })
        .collect();
    if series.iter().any(|(_, p)| !p.is_empty()) {
        sekator_plot::lines(
            &dir.join(FFN_PNG),
            "FFN neuron importance, sorted per layer",
            "rank",
            "score",
            &series,
        )
        .map_err(|e| ImportanceError::Other(e.to_string()))?;
    }

    manifest(meta).write(dir)?;
    Ok(())
}

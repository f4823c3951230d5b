//! The importance stage's scores (`sekator_pipeline::artifacts::importance`, the one reader of its files)
//! as surgery's [`Scores`]: per layer, `Some(score)` for each present head by original index and
//! `(original neuron, score)` for each FFN neuron, checked against the model's config.

use std::path::{Path, PathBuf};

use sekator_model::{checkpoint_hash, BertConfig};
use sekator_pipeline::artifacts::importance::{self as artifact, ImportanceMeta};

use crate::error::SurgeryError;
use crate::plan::Scores;

pub use artifact::{META_FILE, SCORES_FILE};

/// Scores plus what they were computed for.
#[derive(Debug, Clone)]
pub struct Importance {
    pub scores: Scores,
    /// `checkpoint_hash` of the model the scores belong to.
    pub checkpoint_hash: String,
    pub meta: ImportanceMeta,
    pub scores_path: PathBuf,
}

fn err(path: &Path, msg: impl Into<String>) -> SurgeryError {
    SurgeryError::Importance {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Reads `dir/importance.{json,safetensors}` and checks the scores against `cfg`: the same heads present,
/// the same FFN widths, every score finite.
pub fn read(dir: &Path, cfg: &BertConfig) -> Result<Importance, SurgeryError> {
    if !dir.is_dir() {
        return Err(err(
            dir,
            "not a directory (expected the output of the importance stage)",
        ));
    }
    let scores_path = dir.join(SCORES_FILE);
    let file = artifact::Scores::read(dir).map_err(|e| err(dir, e.to_string()))?;
    let (l, nh) = (cfg.num_hidden_layers, cfg.num_attention_heads);
    let shape = [file.heads.len(), file.heads.first().map_or(0, |r| r.len())];
    if shape != [l, nh] {
        return Err(err(
            &scores_path,
            format!("`heads` has shape {shape:?}, the model implies [{l}, {nh}]"),
        ));
    }
    let mut heads = Vec::with_capacity(l);
    for layer in 0..l {
        let kept = cfg.kept_heads(layer);
        let mut row = vec![None; nh];
        for (h, slot) in row.iter_mut().enumerate() {
            let is_present = file.head_present[layer][h];
            if is_present != kept.contains(&h) {
                return Err(err(
                    &scores_path,
                    format!(
                        "layer {layer} head {h} is {} in the scores but {} in the model (scores of another checkpoint?)",
                        if is_present { "present" } else { "pruned" },
                        if is_present { "pruned" } else { "present" }
                    ),
                ));
            }
            let s = file.heads[layer][h];
            if is_present {
                if !s.is_finite() {
                    return Err(err(
                        &scores_path,
                        format!("layer {layer} head {h} has score {s}"),
                    ));
                }
                *slot = Some(s);
            }
        }
        heads.push(row);
    }
    let mut ffn = Vec::with_capacity(l);
    for (layer, &width) in cfg.ffn_sizes().iter().enumerate() {
        let v = &file.ffn[layer];
        if v.len() != width {
            return Err(err(
                &scores_path,
                format!(
                    "`ffn.{layer}` has {} scores, layer {layer} has {width} neurons",
                    v.len()
                ),
            ));
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(err(
                &scores_path,
                format!("`ffn.{layer}`[{i}] is not finite"),
            ));
        }
        ffn.push(
            cfg.kept_ffn(layer)
                .into_iter()
                .zip(v.iter().copied())
                .collect(),
        );
    }
    let hidden = read_hidden(&file.hidden, cfg, &scores_path)?;
    Ok(Importance {
        scores: Scores { heads, ffn, hidden },
        checkpoint_hash: file.meta.checkpoint_hash.clone(),
        meta: file.meta,
        scores_path,
    })
}

/// The residual-stream scores as `(original dimension, score)`, empty when the file has none.
fn read_hidden(
    v: &[f32],
    cfg: &BertConfig,
    path: &Path,
) -> Result<Vec<(usize, f32)>, SurgeryError> {
    if v.is_empty() {
        return Ok(Vec::new());
    }
    if v.len() != cfg.hidden_size {
        return Err(err(
            path,
            format!(
                "`hidden` has {} scores, the model's hidden_size is {}",
                v.len(),
                cfg.hidden_size
            ),
        ));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(err(path, format!("`hidden`[{i}] is not finite")));
    }
    Ok(cfg
        .kept_hidden()
        .into_iter()
        .zip(v.iter().copied())
        .collect())
}

/// Refuses scores computed for another checkpoint unless `force` (then only warns).
pub fn check_hash(imp: &Importance, model_dir: &Path, force: bool) -> Result<String, SurgeryError> {
    let model_hash = checkpoint_hash(model_dir)?;
    if imp.checkpoint_hash != model_hash {
        let msg = format!(
            "importance scores were computed for checkpoint {}, but {} is {} (re-run importance on this model, \
             or pass --force to use them anyway)",
            short(&imp.checkpoint_hash),
            model_dir.display(),
            short(&model_hash)
        );
        if !force {
            return Err(err(&imp.scores_path, msg));
        }
        tracing::warn!("--force: {msg}");
    }
    Ok(model_hash)
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

/// Writes `scores` for `cfg` in the importance stage's format, recorded as weight-magnitude stand-ins for
/// checkpoint `checkpoint_hash` (tests, and trying surgery before importance has run).
pub fn write(
    dir: &Path,
    cfg: &BertConfig,
    scores: &Scores,
    checkpoint_hash: &str,
) -> Result<(), SurgeryError> {
    let nh = cfg.num_attention_heads;
    let file = artifact::Scores {
        heads: scores
            .heads
            .iter()
            .map(|row| {
                (0..nh)
                    .map(|h| row.get(h).copied().flatten().unwrap_or(0.0))
                    .collect()
            })
            .collect(),
        head_present: scores
            .heads
            .iter()
            .map(|row| {
                (0..nh)
                    .map(|h| row.get(h).is_some_and(|s| s.is_some()))
                    .collect()
            })
            .collect(),
        ffn: scores
            .ffn
            .iter()
            .map(|v| v.iter().map(|&(_, s)| s).collect())
            .collect(),
        hidden: scores.hidden.iter().map(|&(_, s)| s).collect(),
        meta: ImportanceMeta::stand_in(cfg, checkpoint_hash),
    };
    Ok(file.write_scores(dir)?)
}

/// A weight-magnitude stand-in for the importance stage (no data, no gradients), for tests and for trying
/// surgery before importance has run: a head scores the L2 norm of its value rows times that of its
/// output-projection columns; an FFN neuron the norm of its input row times that of its output column; a
/// residual-stream dimension the norm of its word-embedding column. Scores are L2-normalised per layer
/// (and the hidden ones as one vector) like the importance stage's default.
pub fn magnitude_scores(ck: &crate::checkpoint::Checkpoint) -> Result<Scores, SurgeryError> {
    let cfg = &ck.config;
    let hd = cfg.head_dim();
    let norm_rows = |t: &sekator_model::NamedTensor, rows: std::ops::Range<usize>| -> f32 {
        let n = t.shape[1];
        t.data[rows.start * n..rows.end * n]
            .iter()
            .map(|v| v * v)
            .sum::<f32>()
            .sqrt()
    };
    let norm_cols = |t: &sekator_model::NamedTensor, cols: std::ops::Range<usize>| -> f32 {
        let n = t.shape[1];
        (0..t.shape[0])
            .map(|r| {
                t.data[r * n + cols.start..r * n + cols.end]
                    .iter()
                    .map(|v| v * v)
                    .sum::<f32>()
            })
            .sum::<f32>()
            .sqrt()
    };
    let normalise = |v: &mut [f32]| {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if n > 0.0 {
            v.iter_mut().for_each(|x| *x /= n);
        }
    };
    let mut heads = Vec::new();
    let mut ffn = Vec::new();
    for l in 0..cfg.num_hidden_layers {
        let a = format!("encoder.layer.{l}.attention");
        let value = ck.get(&format!("{a}.self.value.weight"))?;
        let out = ck.get(&format!("{a}.output.dense.weight"))?;
        let kept = cfg.kept_heads(l);
        let mut s: Vec<f32> = (0..kept.len())
            .map(|p| norm_rows(value, p * hd..(p + 1) * hd) * norm_cols(out, p * hd..(p + 1) * hd))
            .collect();
        normalise(&mut s);
        let mut row = vec![None; cfg.num_attention_heads];
        for (p, &h) in kept.iter().enumerate() {
            row[h] = Some(s[p]);
        }
        heads.push(row);
        let inter = ck.get(&format!("encoder.layer.{l}.intermediate.dense.weight"))?;
        let outp = ck.get(&format!("encoder.layer.{l}.output.dense.weight"))?;
        let mut f: Vec<f32> = (0..inter.shape[0])
            .map(|i| norm_rows(inter, i..i + 1) * norm_cols(outp, i..i + 1))
            .collect();
        normalise(&mut f);
        ffn.push(cfg.kept_ffn(l).into_iter().zip(f).collect());
    }
    let words = ck.get("embeddings.word_embeddings.weight")?;
    let mut h: Vec<f32> = (0..words.shape[1])
        .map(|d| norm_cols(words, d..d + 1))
        .collect();
    normalise(&mut h);
    let hidden = cfg.kept_hidden().into_iter().zip(h).collect();
    Ok(Scores { heads, ffn, hidden })
}

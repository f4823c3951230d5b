//! Reading an importance directory (the importance -> surgery file contract) into [`Scores`].
//!
//! `importance.safetensors` holds `heads` and `head_present` `[layers, original heads]` and `ffn.{l}`
//! `[current width of layer l]` (current neuron order, mapped to original indices with `config.kept_ffn(l)`);
//! `importance.json` holds at least `checkpoint_hash`, compared with the model's unless `--force`.

use std::path::{Path, PathBuf};

use sekator_model::{checkpoint_hash, BertConfig, SafetensorsWeights};

use crate::error::SurgeryError;
use crate::plan::Scores;

pub const SCORES_FILE: &str = "importance.safetensors";
pub const META_FILE: &str = "importance.json";

/// Scores plus what they were computed for.
#[derive(Debug, Clone)]
pub struct Importance {
    pub scores: Scores,
    /// `checkpoint_hash` of the model the scores belong to.
    pub checkpoint_hash: String,
    pub meta: serde_json::Value,
    pub scores_path: PathBuf,
}

fn err(path: &Path, msg: impl Into<String>) -> SurgeryError {
    SurgeryError::Importance {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Reads `dir/importance.{json,safetensors}` and checks the scores' shapes against `cfg`.
pub fn read(dir: &Path, cfg: &BertConfig) -> Result<Importance, SurgeryError> {
    if !dir.is_dir() {
        return Err(err(
            dir,
            "not a directory (expected the output of the importance stage)",
        ));
    }
    let meta_path = dir.join(META_FILE);
    let text = std::fs::read_to_string(&meta_path).map_err(|e| SurgeryError::io(&meta_path, e))?;
    let meta: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| err(&meta_path, e.to_string()))?;
    let hash = meta["checkpoint_hash"]
        .as_str()
        .ok_or_else(|| err(&meta_path, "has no `checkpoint_hash` string"))?
        .to_string();
    let scores_path = dir.join(SCORES_FILE);
    if !scores_path.exists() {
        return Err(err(&scores_path, "not found"));
    }
    let w = SafetensorsWeights::open_files(std::slice::from_ref(&scores_path))?;
    let (l, nh) = (cfg.num_hidden_layers, cfg.num_attention_heads);
    let (hs, heads) = w.read_f32("heads")?;
    if hs != [l, nh] {
        return Err(err(
            &scores_path,
            format!("`heads` has shape {hs:?}, the model implies [{l}, {nh}]"),
        ));
    }
    let present = if w.shape("head_present").is_some() {
        let (ps, p) = w.read_f32("head_present")?;
        if ps != hs {
            return Err(err(
                &scores_path,
                format!("`head_present` has shape {ps:?}, `heads` {hs:?}"),
            ));
        }
        p
    } else {
        vec![1.0; l * nh]
    };
    let mut head_scores = Vec::with_capacity(l);
    for layer in 0..l {
        let kept = cfg.kept_heads(layer);
        let mut row = vec![None; nh];
        for h in 0..nh {
            let is_present = present[layer * nh + h] > 0.5;
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
            let s = heads[layer * nh + h];
            if is_present {
                if !s.is_finite() {
                    return Err(err(
                        &scores_path,
                        format!("layer {layer} head {h} has score {s}"),
                    ));
                }
                row[h] = Some(s);
            }
        }
        head_scores.push(row);
    }
    let widths = cfg.ffn_sizes();
    let mut ffn = Vec::with_capacity(l);
    for (layer, &width) in widths.iter().enumerate().take(l) {
        let name = format!("ffn.{layer}");
        let kept = cfg.kept_ffn(layer);
        let v = if w.shape(&name).is_some() {
            let (s, v) = w.read_f32(&name)?;
            if s != [width] {
                return Err(err(
                    &scores_path,
                    format!(
                        "`{name}` has shape {s:?}, layer {layer} has {} neurons",
                        width
                    ),
                ));
            }
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(err(&scores_path, format!("`{name}`[{i}] is not finite")));
            }
            v
        } else {
            // Scores without FFN entries still allow head plans; FFN ratios then see equal scores.
            vec![0.0; width]
        };
        ffn.push(kept.into_iter().zip(v).collect());
    }
    Ok(Importance {
        scores: Scores {
            heads: head_scores,
            ffn,
        },
        checkpoint_hash: hash,
        meta,
        scores_path,
    })
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

/// Writes scores in the contract's format (for tests and stand-in importance files).
pub fn write(
    dir: &Path,
    cfg: &BertConfig,
    scores: &Scores,
    checkpoint_hash: &str,
) -> Result<(), SurgeryError> {
    use sekator_model::NamedTensor;
    std::fs::create_dir_all(dir).map_err(|e| SurgeryError::io(dir, e))?;
    let (l, nh) = (cfg.num_hidden_layers, cfg.num_attention_heads);
    let mut heads = vec![0.0f32; l * nh];
    let mut present = vec![0.0f32; l * nh];
    for (layer, row) in scores.heads.iter().enumerate() {
        for (h, s) in row.iter().enumerate() {
            if let Some(s) = s {
                heads[layer * nh + h] = *s;
                present[layer * nh + h] = 1.0;
            }
        }
    }
    let mut tensors = vec![
        NamedTensor {
            name: "heads".into(),
            shape: vec![l, nh],
            data: heads,
        },
        NamedTensor {
            name: "head_present".into(),
            shape: vec![l, nh],
            data: present,
        },
    ];
    for (layer, v) in scores.ffn.iter().enumerate() {
        tensors.push(NamedTensor {
            name: format!("ffn.{layer}"),
            shape: vec![v.len()],
            data: v.iter().map(|&(_, s)| s).collect(),
        });
    }
    sekator_model::loader::write_safetensors(&dir.join(SCORES_FILE), &tensors, Default::default())?;
    let meta = serde_json::json!({ "checkpoint_hash": checkpoint_hash, "criterion": "stand-in" });
    let p = dir.join(META_FILE);
    std::fs::write(
        &p,
        serde_json::to_string_pretty(&meta).expect("json") + "\n",
    )
    .map_err(|e| SurgeryError::io(&p, e))
}

/// A weight-magnitude stand-in for the importance stage (no data, no gradients), for tests and for trying
/// surgery before importance has run: a head scores the L2 norm of its value rows times that of its
/// output-projection columns; an FFN neuron the norm of its input row times that of its output column.
/// Scores are L2-normalised per layer like the importance stage's default.
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
    Ok(Scores { heads, ffn })
}

//! Sentence vectors from token vectors: CLS, masked mean, or the pooler; optional L2 normalisation.

use std::path::Path;

use burn::tensor::{backend::Backend, Tensor};

use crate::bert::BertModel;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Hidden state of the first token (`[CLS]`).
    Cls,
    /// Mean of the hidden states of real (non-padding) tokens.
    Mean,
    /// BERT pooler `tanh(W h_cls + b)`; LaBSE's sentence embedding.
    Pooler,
}

impl std::fmt::Display for Pooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pooling::Cls => "cls",
            Pooling::Mean => "mean",
            Pooling::Pooler => "pooler",
        })
    }
}

/// `[batch, seq, hidden]` -> `[batch, hidden]`, first token.
pub fn cls<B: Backend>(hidden: &Tensor<B, 3>) -> Tensor<B, 2> {
    let [b, _, h] = hidden.dims();
    hidden.clone().slice([0..b, 0..1, 0..h]).reshape([b, h])
}

/// Masked mean over the sequence; `mask` is `[batch, seq]` with 1 for tokens.
pub fn mean<B: Backend>(hidden: &Tensor<B, 3>, mask: &Tensor<B, 2>) -> Tensor<B, 2> {
    let [b, s, h] = hidden.dims();
    let m = mask.clone().reshape([b, s, 1]);
    let sum = (hidden.clone() * m).sum_dim(1).reshape([b, h]);
    let count = mask.clone().sum_dim(1).clamp_min(1e-9);
    sum / count
}

/// Row-wise L2 normalisation (rows of zero norm stay zero).
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x
        .clone()
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    x / norm
}

/// Applies `pooling` (falls back to CLS for `pooler` on a model without one is *not* done: it is an error
/// upstream, so this returns `None`).
pub fn pool<B: Backend>(
    model: &BertModel<B>,
    hidden: &Tensor<B, 3>,
    mask: &Tensor<B, 2>,
    pooling: Pooling,
) -> Option<Tensor<B, 2>> {
    match pooling {
        Pooling::Cls => Some(cls(hidden)),
        Pooling::Mean => Some(mean(hidden, mask)),
        Pooling::Pooler => model.pool(hidden),
    }
}

/// The pooling and normalisation a checkpoint asks for: sentence-transformers files (`modules.json`,
/// `1_Pooling/config.json`) when present, else the pooler when the weights have one, else CLS.
pub fn default_pooling(dir: &Path, has_pooler: bool) -> (Pooling, bool) {
    let read = |p: &Path| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
    };
    let modules = read(&dir.join("modules.json"));
    let normalize = modules
        .as_ref()
        .and_then(|m| m.as_array().cloned())
        .map(|mods| {
            mods.iter()
                .any(|m| m["type"].as_str().is_some_and(|t| t.ends_with("Normalize")))
        })
        .unwrap_or(false);
    let pooling_dir = modules
        .as_ref()
        .and_then(|m| m.as_array().cloned())
        .and_then(|mods| {
            mods.iter()
                .find(|m| m["type"].as_str().is_some_and(|t| t.ends_with("Pooling")))
                .and_then(|m| m["path"].as_str().map(String::from))
        })
        .unwrap_or_else(|| "1_Pooling".into());
    if let Some(cfg) = read(&dir.join(pooling_dir).join("config.json")) {
        if cfg["pooling_mode_mean_tokens"].as_bool() == Some(true) {
            return (Pooling::Mean, normalize);
        }
        if cfg["pooling_mode_cls_token"].as_bool() == Some(true) {
            return (Pooling::Cls, normalize);
        }
    }
    (
        if has_pooler {
            Pooling::Pooler
        } else {
            Pooling::Cls
        },
        normalize,
    )
}

//! Tiny random BERT checkpoints for tests of every stage (no download, deterministic per seed).

use std::path::Path;

use burn::tensor::backend::Backend;

use crate::bert::BertModel;
use crate::config::BertConfig;
use crate::error::ModelError;
use crate::loader;
use crate::weights::RandomWeights;

/// A small config: hidden 32, 4 heads of 8, FFN 64, vocab 160, 64 positions, `layers` layers.
pub fn tiny_config(layers: usize) -> BertConfig {
    let mut c = BertConfig::new(160, 32, layers, 4, 64);
    c.max_position_embeddings = 64;
    c.layer_norm_eps = 1e-12;
    c.extra.insert("model_type".into(), "bert".into());
    c
}

/// A WordPiece vocabulary that covers lowercase Latin and Cyrillic text letter by letter.
pub fn tiny_vocab() -> Vec<String> {
    let mut v: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let letters: Vec<char> = ('a'..='z').chain('а'..='я').chain('0'..='9').collect();
    for c in &letters {
        v.push(c.to_string());
    }
    for c in &letters {
        v.push(format!("##{c}"));
    }
    for p in [".", ",", "!", "?", "-"] {
        v.push(p.to_string());
    }
    v
}

/// Writes a random model with `cfg` (pruned heads and FFN widths honoured) plus a `vocab.txt` tokenizer.
pub fn write_random_model<B: Backend>(
    dir: &Path,
    cfg: &BertConfig,
    seed: u64,
    device: &B::Device,
) -> Result<(), ModelError> {
    write_random_model_from::<B>(dir, cfg, RandomWeights::new(seed), device)
}

/// [`write_random_model`] with the weights drawn by `src` (e.g. a larger `std`, for gradient checks whose
/// finite differences need gradients well above f32 rounding).
pub fn write_random_model_from<B: Backend>(
    dir: &Path,
    cfg: &BertConfig,
    mut src: RandomWeights,
    device: &B::Device,
) -> Result<(), ModelError> {
    let vocab = tiny_vocab();
    assert!(
        vocab.len() <= cfg.vocab_size,
        "tiny vocab ({}) exceeds vocab_size",
        vocab.len()
    );
    let model = BertModel::<B>::load(cfg, &mut src, device)?;
    loader::write_model_dir(dir, cfg, &model.export(), None, true)?;
    let vpath = dir.join("vocab.txt");
    std::fs::write(&vpath, vocab.join("\n") + "\n").map_err(|e| ModelError::io(&vpath, e))?;
    let tc = dir.join("tokenizer_config.json");
    std::fs::write(&tc, "{\"do_lower_case\": true}\n").map_err(|e| ModelError::io(&tc, e))?;
    Ok(())
}

/// Last hidden states `[batch, seq, hidden]` flattened, with the padding rows zeroed. The CPU fast path
/// computes real tokens only and leaves padding rows zero, the composed path (taken under unit masks)
/// fills them with values nothing downstream reads: comparisons of the two look at real tokens only.
pub fn real_token_states<B: Backend>(
    hidden: &burn::tensor::Tensor<B, 3>,
    mask: &burn::tensor::Tensor<B, 2>,
) -> Vec<f32> {
    crate::layers::to_vec(&(hidden.clone() * mask.clone().unsqueeze_dim::<3>(2)))
}

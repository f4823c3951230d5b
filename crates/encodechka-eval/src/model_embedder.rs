//! [`TextEmbedder`] over a checkpoint run by `sekator-model` (the burn BERT), on whichever backend was chosen.

use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use sekator_model::{checkpoint_hash, Encoder, SafetensorsWeights};

use crate::embedder::{SentenceVariants, TextEmbedder};

/// encodechka truncates sentences at 128 tokens.
pub const SENTENCE_MAX_LENGTH: usize = 128;

pub struct ModelEmbedder<B: Backend> {
    encoder: Encoder<B>,
    name: String,
    fingerprint: String,
    size_mb: f64,
    batch_size: usize,
    word_max_length: usize,
}

/// The tokenizer's own length limit (`model_max_length` of tokenizer_config.json), which is what
/// `tokenizer(words, is_split_into_words=True, truncation=True)` truncates at; 512 when absent or unset
/// (transformers writes a huge sentinel for "no limit").
fn tokenizer_limit(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["model_max_length"].as_f64())
        .filter(|n| (1.0..=100_000.0).contains(n))
        .map_or(512, |n| n as usize)
}

impl<B: Backend> ModelEmbedder<B> {
    pub fn load(dir: &Path, device: &B::Device, batch_size: usize) -> Result<Self> {
        let encoder = Encoder::<B>::load(dir, device)
            .with_context(|| format!("loading model {}", dir.display()))?;
        let fingerprint =
            checkpoint_hash(dir).with_context(|| format!("hashing {}", dir.display()))?;
        // encodechka's size column: MiB of float32 parameters
        let weights = SafetensorsWeights::open_dir(dir)?;
        let params: usize = weights
            .names()
            .iter()
            .filter_map(|n| weights.shape(n))
            .map(|s| s.iter().product::<usize>())
            .sum();
        let name = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(Self {
            encoder,
            name,
            fingerprint,
            size_mb: params as f64 * 4.0 / (1024.0 * 1024.0),
            batch_size: batch_size.max(1),
            word_max_length: tokenizer_limit(dir),
        })
    }
}

impl<B: Backend> TextEmbedder for ModelEmbedder<B> {
    fn name(&self) -> &str {
        &self.name
    }
    fn dim(&self) -> usize {
        self.encoder.hidden_size()
    }
    fn has_pooler(&self) -> bool {
        self.encoder.has_pooler()
    }
    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    fn size_mb(&self) -> Option<f64> {
        Some(self.size_mb)
    }

    fn embed(&mut self, texts: &[String]) -> Result<SentenceVariants> {
        let v = self
            .encoder
            .embed_variants(texts, SENTENCE_MAX_LENGTH, self.batch_size)?;
        let flat = |rows: Vec<Vec<f32>>| rows.into_iter().flatten().collect::<Vec<f32>>();
        let pooler = self.has_pooler().then(|| flat(v.pooler));
        Ok(SentenceVariants {
            dim: v.dim,
            cls: flat(v.cls),
            mean: flat(v.mean),
            pooler,
        })
    }

    fn word_vectors(&mut self, words: &[String]) -> Result<Vec<f32>> {
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let enc = self.encoder.encode_words(&refs, self.word_max_length)?;
        Ok(enc
            .word_vectors(words.len())
            .into_iter()
            .flatten()
            .collect())
    }

    fn word_vectors_many(&mut self, texts: &[Vec<String>]) -> Result<Vec<Vec<f32>>> {
        let refs: Vec<Vec<&str>> = texts
            .iter()
            .map(|w| w.iter().map(String::as_str).collect())
            .collect();
        let encs = self
            .encoder
            .encode_words_many(&refs, self.word_max_length, self.batch_size)?;
        Ok(encs
            .iter()
            .zip(texts)
            .map(|(e, w)| e.word_vectors(w.len()).into_iter().flatten().collect())
            .collect())
    }
}

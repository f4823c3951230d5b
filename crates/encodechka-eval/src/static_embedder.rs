//! [`TextEmbedder`] over a static-embedding model (`sekator_model::StaticModel`, built by
//! `static-embedding`): every variant is the mean of the text's token rows; there is no CLS and no pooler.

use std::path::Path;

use anyhow::{Context, Result};
use sekator_model::{checkpoint_hash, StaticModel};

use crate::embedder::{SentenceVariants, TextEmbedder};
use crate::model_embedder::SENTENCE_MAX_LENGTH;

pub struct StaticEmbedder {
    model: StaticModel,
    name: String,
    fingerprint: String,
}

impl StaticEmbedder {
    pub fn load(dir: &Path) -> Result<Self> {
        let model = StaticModel::load(dir)
            .with_context(|| format!("loading static model {}", dir.display()))?;
        let fingerprint =
            checkpoint_hash(dir).with_context(|| format!("hashing {}", dir.display()))?;
        let name = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(Self {
            model,
            name,
            fingerprint,
        })
    }
}

impl TextEmbedder for StaticEmbedder {
    fn name(&self) -> &str {
        &self.name
    }
    fn dim(&self) -> usize {
        self.model.dim
    }
    fn has_pooler(&self) -> bool {
        false
    }
    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    fn size_mb(&self) -> Option<f64> {
        Some(self.model.table.len() as f64 * 4.0 / (1024.0 * 1024.0))
    }

    /// The encoder's sentence limit (128 tokens with `[CLS]` and `[SEP]`) leaves 126 text tokens.
    fn embed(&mut self, texts: &[String]) -> Result<SentenceVariants> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let mean: Vec<f32> = self
            .model
            .embed(&refs, SENTENCE_MAX_LENGTH - 2)?
            .into_iter()
            .flatten()
            .collect();
        Ok(SentenceVariants {
            dim: self.model.dim,
            cls: mean.clone(),
            mean,
            pooler: None,
        })
    }

    fn word_vectors(&mut self, words: &[String]) -> Result<Vec<f32>> {
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        Ok(self
            .model
            .word_vectors(&refs)?
            .into_iter()
            .flatten()
            .collect())
    }
}

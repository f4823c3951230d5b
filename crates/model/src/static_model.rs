//! A static-embedding model (model2vec-style): one stored vector per vocabulary token, and a sentence
//! vector that is the mean of its tokens' vectors. No encoder runs, so it costs no FLOPs beyond the look-ups:
//! the cheapest thing a user could pick instead of a pruned encoder, and the baseline a 10x model must beat.
//! `sekator-static` builds one from a teacher; this module is its one reader, used by `embed` and by
//! encodechka-eval.
//!
//! The directory is also a sentence-transformers `StaticEmbedding` folder, which tokenises without special
//! tokens and averages the rows (`nn.EmbeddingBag(mode="mean")`); the same rule is applied here:
//!
//! - `model.safetensors`: `embedding.weight` `[vocab, dim]` (f32);
//! - `tokenizer.json` (and the teacher's other tokenizer files);
//! - `modules.json`, `config_sentence_transformers.json`: sentence-transformers loads it as is;
//! - [`STATIC_FILE`]: what it was built from ([`StaticInfo`]).

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::EncodeInput;

use crate::error::ModelError;
use crate::loader::SafetensorsWeights;
use crate::tokenizer::TextTokenizer;

/// Marks a static model directory and records how it was made.
pub const STATIC_FILE: &str = "sekator_static.json";
/// The tensor name sentence-transformers' `StaticEmbedding` stores its table under.
pub const TABLE: &str = "embedding.weight";

/// `sekator_static.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StaticInfo {
    /// The teacher's directory and content hash.
    pub teacher: String,
    pub teacher_hash: String,
    /// The teacher's pooling of each token's `[CLS] token [SEP]` pass.
    pub pooling: String,
    pub vocab_size: usize,
    /// Dimensions kept by PCA (the teacher's hidden size when PCA keeps all).
    pub dim: usize,
    /// Share of the teacher vectors' variance the kept components hold.
    pub explained_variance: f64,
    /// The SIF constant `a` of the weights `a / (a + p(token))` (token frequencies from `corpus`).
    pub sif_a: f64,
    pub corpus: Vec<String>,
    pub corpus_tokens: u64,
}

pub struct StaticModel {
    pub tokenizer: TextTokenizer,
    /// Row-major `[vocab, dim]`.
    pub table: Vec<f32>,
    pub dim: usize,
    pub info: StaticInfo,
}

impl StaticModel {
    /// Whether `dir` holds a static model (its [`STATIC_FILE`]).
    pub fn is_static(dir: &Path) -> bool {
        dir.join(STATIC_FILE).is_file()
    }

    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let info_path = dir.join(STATIC_FILE);
        let text =
            std::fs::read_to_string(&info_path).map_err(|e| ModelError::io(&info_path, e))?;
        let info: StaticInfo = serde_json::from_str(&text).map_err(|e| ModelError::Config {
            path: info_path.clone(),
            msg: e.to_string(),
        })?;
        let weights = SafetensorsWeights::open_dir(dir)?;
        let (shape, table) = weights.read_f32(TABLE)?;
        if shape.len() != 2 || shape[1] != info.dim {
            return Err(ModelError::Config {
                path: info_path,
                msg: format!(
                    "`{TABLE}` has shape {shape:?}, {STATIC_FILE} says dim {}",
                    info.dim
                ),
            });
        }
        let tokenizer = TextTokenizer::from_dir(dir)?;
        Ok(Self {
            tokenizer,
            table,
            dim: shape[1],
            info,
        })
    }

    fn rows(&self) -> usize {
        self.table.len() / self.dim.max(1)
    }

    /// Token ids of `texts` without special tokens, each cut at `max_tokens`.
    pub fn token_ids(
        &self,
        texts: &[&str],
        max_tokens: usize,
    ) -> Result<Vec<Vec<u32>>, ModelError> {
        let inputs: Vec<EncodeInput> = texts
            .iter()
            .map(|t| EncodeInput::Single((*t).into()))
            .collect();
        let enc = self
            .tokenizer
            .inner()
            .encode_batch(inputs, false)
            .map_err(|e| ModelError::Tokenizer {
                path: self.tokenizer.path().to_path_buf(),
                msg: e.to_string(),
            })?;
        Ok(enc
            .iter()
            .map(|e| e.get_ids().iter().take(max_tokens).copied().collect())
            .collect())
    }

    /// The mean of the rows of `ids` (zeros for no token); ids beyond the table are skipped.
    pub fn mean_of(&self, ids: &[u32]) -> Vec<f32> {
        let mut v = vec![0.0f32; self.dim];
        let rows = self.rows();
        let mut n = 0usize;
        for &id in ids.iter().filter(|&&i| (i as usize) < rows) {
            let row = &self.table[id as usize * self.dim..(id as usize + 1) * self.dim];
            v.iter_mut().zip(row).for_each(|(a, b)| *a += b);
            n += 1;
        }
        if n > 0 {
            v.iter_mut().for_each(|a| *a /= n as f32);
        }
        v
    }

    /// Sentence vectors: the mean of each text's token rows (at most `max_tokens` tokens).
    pub fn embed(&self, texts: &[&str], max_tokens: usize) -> Result<Vec<Vec<f32>>, ModelError> {
        Ok(self
            .token_ids(texts, max_tokens)?
            .iter()
            .map(|ids| self.mean_of(ids))
            .collect())
    }

    /// One vector per word (the mean of its tokens' rows), for word-level tasks.
    pub fn word_vectors(&self, words: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.embed(words, usize::MAX)
    }
}

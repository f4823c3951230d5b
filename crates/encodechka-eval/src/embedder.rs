//! Where vectors come from: the [`TextEmbedder`] trait, the sentence variants encodechka scores, and the
//! lookup tables tasks read their feature matrices from.

use std::collections::HashMap;

use anyhow::{bail, Result};

use crate::cache::{key_of, Key};
use crate::float32::torch_l2_norm;
use crate::matrix::Matrix;

/// The sentence representations encodechka compares (`embed_bert_both` in the original), in its key order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    Cls,
    Mean,
    ClsNorm,
    MeanNorm,
    Pooler,
    PoolerNorm,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Cls => "cls",
            Variant::Mean => "mean",
            Variant::ClsNorm => "cls_norm",
            Variant::MeanNorm => "mean_norm",
            Variant::Pooler => "pooler",
            Variant::PoolerNorm => "pooler_norm",
        }
    }

    /// The variants a model yields: pooler ones only when it has a pooler.
    pub fn all(has_pooler: bool) -> Vec<Variant> {
        let mut v = vec![
            Variant::Cls,
            Variant::Mean,
            Variant::ClsNorm,
            Variant::MeanNorm,
        ];
        if has_pooler {
            v.extend([Variant::Pooler, Variant::PoolerNorm]);
        }
        v
    }

    fn base(self) -> (Base, bool) {
        match self {
            Variant::Cls => (Base::Cls, false),
            Variant::Mean => (Base::Mean, false),
            Variant::ClsNorm => (Base::Cls, true),
            Variant::MeanNorm => (Base::Mean, true),
            Variant::Pooler => (Base::Pooler, false),
            Variant::PoolerNorm => (Base::Pooler, true),
        }
    }
}

#[derive(Clone, Copy)]
enum Base {
    Cls,
    Mean,
    Pooler,
}

/// Un-normalised sentence vectors for a list of texts, row-major `[n, dim]` each; the `*_norm` variants are
/// derived from these.
#[derive(Clone, Debug, Default)]
pub struct SentenceVariants {
    pub dim: usize,
    pub cls: Vec<f32>,
    pub mean: Vec<f32>,
    /// `None` when the model has no pooler.
    pub pooler: Option<Vec<f32>>,
}

impl SentenceVariants {
    pub fn len(&self) -> usize {
        self.cls.len().checked_div(self.dim).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the shapes an embedder returned for `n` texts.
    pub fn validate(&self, n: usize, has_pooler: bool) -> Result<()> {
        let want = n * self.dim;
        if self.cls.len() != want || self.mean.len() != want {
            bail!(
                "embedder returned {} cls / {} mean values for {n} texts of dim {}",
                self.cls.len(),
                self.mean.len(),
                self.dim
            );
        }
        match (&self.pooler, has_pooler) {
            (Some(p), true) if p.len() == want => Ok(()),
            (None, false) => Ok(()),
            (Some(p), true) => bail!(
                "embedder returned {} pooler values for {n} texts of dim {}",
                p.len(),
                self.dim
            ),
            (p, _) => bail!(
                "embedder pooler presence ({}) disagrees with has_pooler() = {has_pooler}",
                p.is_some()
            ),
        }
    }
}

/// A source of sentence and word vectors: a checkpoint run by `sekator-model`, or embeddings exported by
/// the Python replica (for the parity check).
pub trait TextEmbedder {
    /// Display name (the model column of the reports).
    fn name(&self) -> &str;
    fn dim(&self) -> usize;
    fn has_pooler(&self) -> bool;
    /// Content hash of what produces the vectors (checkpoint files), for the embedding cache.
    fn fingerprint(&self) -> &str;
    /// Parameter size in MiB (encodechka's "size" column), when known.
    fn size_mb(&self) -> Option<f64>;
    /// Whether vectors are worth caching (false for sources that are already a lookup).
    fn cacheable(&self) -> bool {
        true
    }
    /// Whether timing `embed` measures a model (false for lookups).
    fn measures_speed(&self) -> bool {
        true
    }
    /// cls, masked mean and (when present) pooler vectors per text, each text as if embedded alone,
    /// truncated at 128 tokens.
    fn embed(&mut self, texts: &[String]) -> Result<SentenceVariants>;
    /// One vector per word, row-major `[words.len(), dim]`: the mean of the word's sub-token vectors of the
    /// last hidden state, the words fed as one pre-split sequence truncated at the tokenizer's own limit;
    /// words cut off (or yielding no token) get zero vectors.
    fn word_vectors(&mut self, words: &[String]) -> Result<Vec<f32>>;
    /// [`TextEmbedder::word_vectors`] of many texts; models override it to run them in batches.
    fn word_vectors_many(&mut self, texts: &[Vec<String>]) -> Result<Vec<Vec<f32>>> {
        texts.iter().map(|w| self.word_vectors(w)).collect()
    }
}

/// Sentence vectors looked up by text (through its cache key): what a sentence task turns into feature
/// matrices.
#[derive(Default)]
pub struct SentenceStore {
    dim: usize,
    index: HashMap<Key, usize>,
    vectors: SentenceVariants,
}

impl SentenceStore {
    pub fn new(dim: usize, has_pooler: bool) -> Self {
        Self {
            dim,
            index: HashMap::new(),
            vectors: SentenceVariants {
                dim,
                cls: vec![],
                mean: vec![],
                pooler: has_pooler.then(Vec::new),
            },
        }
    }

    pub fn contains(&self, text: &str) -> bool {
        self.index.contains_key(&key_of(text))
    }

    pub fn has_pooler(&self) -> bool {
        self.vectors.pooler.is_some()
    }

    /// Values per text in a cache record: cls, mean and (if present) pooler, concatenated.
    pub fn record_len(&self) -> usize {
        self.dim * if self.has_pooler() { 3 } else { 2 }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Adds one text's vectors (`cls`, `mean`, optional `pooler`, each `dim` long); a text already present is
    /// left as it is.
    pub fn insert(&mut self, text: &str, cls: &[f32], mean: &[f32], pooler: Option<&[f32]>) {
        self.insert_key(key_of(text), cls, mean, pooler);
    }

    fn insert_key(&mut self, key: Key, cls: &[f32], mean: &[f32], pooler: Option<&[f32]>) {
        if self.index.contains_key(&key) {
            return;
        }
        self.index.insert(key, self.index.len());
        self.vectors.cls.extend_from_slice(cls);
        self.vectors.mean.extend_from_slice(mean);
        if let (Some(store), Some(p)) = (self.vectors.pooler.as_mut(), pooler) {
            store.extend_from_slice(p);
        }
    }

    /// Adds a cache record (see [`Self::record_len`]); records of another shape are ignored.
    pub fn insert_record(&mut self, key: Key, record: &[f32]) {
        if record.len() != self.record_len() {
            return;
        }
        let d = self.dim;
        let pooler = self.has_pooler().then(|| &record[2 * d..3 * d]);
        self.insert_key(key, &record[..d], &record[d..2 * d], pooler);
    }

    /// The cache record of a stored text.
    pub fn record(&self, text: &str) -> Option<Vec<f32>> {
        let &i = self.index.get(&key_of(text))?;
        let d = self.dim;
        let mut r = self.vectors.cls[i * d..(i + 1) * d].to_vec();
        r.extend_from_slice(&self.vectors.mean[i * d..(i + 1) * d]);
        if let Some(p) = &self.vectors.pooler {
            r.extend_from_slice(&p[i * d..(i + 1) * d]);
        }
        Some(r)
    }

    /// Feature matrix for `texts` (rows in that order) in one variant, widened to f64. The `*_norm` variants
    /// divide by max(‖x‖, 1e-12) in float32 exactly as `torch.nn.functional.normalize` does (see
    /// [`torch_l2_norm`]), so every value is still a float32.
    pub fn matrix(&self, texts: &[String], variant: Variant) -> Result<Matrix> {
        let (base, norm) = variant.base();
        let source = match base {
            Base::Cls => &self.vectors.cls,
            Base::Mean => &self.vectors.mean,
            Base::Pooler => match &self.vectors.pooler {
                Some(p) => p,
                None => bail!(
                    "variant {} requested from a model without a pooler",
                    variant.name()
                ),
            },
        };
        let d = self.dim;
        let mut m = Matrix::zeros(texts.len(), d);
        for (r, text) in texts.iter().enumerate() {
            let Some(&i) = self.index.get(&key_of(text)) else {
                bail!(
                    "no embedding for text {:?}",
                    text.chars().take(60).collect::<String>()
                );
            };
            let row = &source[i * d..(i + 1) * d];
            let out = m.row_mut(r);
            if norm {
                let n = torch_l2_norm(row).max(1e-12);
                for (o, &v) in out.iter_mut().zip(row) {
                    *o = (v / n) as f64;
                }
            } else {
                for (o, &v) in out.iter_mut().zip(row) {
                    *o = v as f64;
                }
            }
        }
        Ok(m)
    }
}

/// Word vectors per pre-split text, looked up by its word list.
#[derive(Default)]
pub struct WordStore {
    pub dim: usize,
    index: HashMap<Key, (usize, usize)>,
    vectors: Vec<f32>,
}

/// Words never contain U+001F (Python counts it as whitespace), so it separates them unambiguously.
pub fn word_list_key(words: &[String]) -> String {
    words.join("\u{1F}")
}

impl WordStore {
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            index: HashMap::new(),
            vectors: Vec::new(),
        }
    }

    pub fn contains(&self, words: &[String]) -> bool {
        self.index.contains_key(&key_of(&word_list_key(words)))
    }

    /// Adds the `[words.len(), dim]` vectors of one text.
    pub fn insert(&mut self, words: &[String], vectors: &[f32]) -> Result<()> {
        if vectors.len() != words.len() * self.dim {
            bail!(
                "{} word-vector values for {} words of dim {}",
                vectors.len(),
                words.len(),
                self.dim
            );
        }
        self.insert_record(key_of(&word_list_key(words)), vectors);
        Ok(())
    }

    /// Adds a cache record (the text's vectors, keyed by its word list).
    pub fn insert_record(&mut self, key: Key, vectors: &[f32]) {
        if !self.index.contains_key(&key) {
            self.index.insert(key, (self.vectors.len(), vectors.len()));
            self.vectors.extend_from_slice(vectors);
        }
    }

    /// The vectors of one text, row-major.
    pub fn get(&self, words: &[String]) -> Result<&[f32]> {
        match self.index.get(&key_of(&word_list_key(words))) {
            Some(&(start, len)) => Ok(&self.vectors[start..start + len]),
            None => bail!(
                "no word vectors for a text starting {:?}",
                words.iter().take(8).collect::<Vec<_>>()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norm_variants_are_unit_length_and_rows_follow_the_request() {
        let mut store = SentenceStore::new(2, false);
        store.insert("a", &[3.0, 4.0], &[1.0, 0.0], None);
        store.insert("b", &[0.0, 0.0], &[0.0, 2.0], None);
        let texts = vec!["b".to_string(), "a".to_string()];
        let m = store.matrix(&texts, Variant::ClsNorm).unwrap();
        // float32 division, as torch's normalize
        assert_eq!(m.data, vec![0.0, 0.0, 0.6f32 as f64, 0.8f32 as f64]);
        assert_eq!(
            store.matrix(&texts, Variant::Mean).unwrap().data,
            vec![0.0, 2.0, 1.0, 0.0]
        );
        assert!(store.matrix(&texts, Variant::Pooler).is_err());
        assert!(store.matrix(&["zzz".to_string()], Variant::Cls).is_err());
    }
}

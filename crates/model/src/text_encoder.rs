//! `Encoder`: a loaded checkpoint plus its tokenizer, turning texts into vectors in input order.

use std::path::{Path, PathBuf};

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::backend::{concurrent_batches, in_flight};
use crate::bert::BertModel;
use crate::config::BertConfig;
use crate::error::ModelError;
use crate::layers::to_vec;
use crate::loader::{self, SafetensorsWeights};
use crate::masks::UnitMasks;
use crate::pooling::{self, Pooling};
use crate::tokenizer::{TextTokenizer, Tokens};

/// A padded batch of token ids, row-major `[batch, seq]`.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    pub ids: Vec<i32>,
    pub mask: Vec<f32>,
    pub batch: usize,
    pub seq: usize,
}

impl TokenBatch {
    /// Pads `tokens` to the longest one with `pad_id`.
    pub fn new(tokens: &[&Tokens], pad_id: u32) -> Self {
        let seq = tokens.iter().map(|t| t.ids.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![pad_id as i32; tokens.len() * seq];
        let mut mask = vec![0.0; tokens.len() * seq];
        for (r, t) in tokens.iter().enumerate() {
            for (c, &id) in t.ids.iter().enumerate() {
                ids[r * seq + c] = id as i32;
                mask[r * seq + c] = 1.0;
            }
        }
        Self {
            ids,
            mask,
            batch: tokens.len(),
            seq,
        }
    }

    pub fn tensors<B: Backend>(&self, device: &B::Device) -> (Tensor<B, 2, Int>, Tensor<B, 2>) {
        let shape = [self.batch, self.seq];
        (
            Tensor::from_data(TensorData::new(self.ids.clone(), shape), device),
            Tensor::from_data(TensorData::new(self.mask.clone(), shape), device),
        )
    }
}

/// Un-normalised sentence vectors of every pooling a model offers, from one forward pass per batch.
#[derive(Debug, Clone, Default)]
pub struct Variants {
    pub dim: usize,
    pub cls: Vec<Vec<f32>>,
    pub mean: Vec<Vec<f32>>,
    /// Empty when the checkpoint has no pooler.
    pub pooler: Vec<Vec<f32>>,
}

/// Token-level output for one pre-split text.
#[derive(Debug, Clone)]
pub struct WordEncoding {
    /// Last hidden state, row-major `[tokens, dim]`.
    pub hidden: Vec<f32>,
    pub dim: usize,
    /// For each token the index of the word it came from (`None` for `[CLS]`/`[SEP]`).
    pub word_ids: Vec<Option<usize>>,
}

impl WordEncoding {
    /// Mean of each word's sub-token vectors; words cut off by truncation get zero vectors.
    pub fn word_vectors(&self, n_words: usize) -> Vec<Vec<f32>> {
        let mut sums = vec![vec![0.0f32; self.dim]; n_words];
        let mut counts = vec![0usize; n_words];
        for (t, w) in self.word_ids.iter().enumerate() {
            if let Some(w) = *w {
                if w < n_words {
                    counts[w] += 1;
                    for (s, v) in sums[w]
                        .iter_mut()
                        .zip(&self.hidden[t * self.dim..(t + 1) * self.dim])
                    {
                        *s += v;
                    }
                }
            }
        }
        for (s, &c) in sums.iter_mut().zip(&counts) {
            if c > 0 {
                s.iter_mut().for_each(|v| *v /= c as f32);
            }
        }
        sums
    }
}

/// Options of [`Encoder::embed`].
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    pub pooling: Pooling,
    pub normalize: bool,
    pub batch_size: usize,
    pub max_length: usize,
}

pub struct Encoder<B: Backend> {
    pub model: BertModel<B>,
    pub config: BertConfig,
    pub tokenizer: TextTokenizer,
    /// The directory the checkpoint came from (tokenizer files are copied from it on save).
    pub dir: PathBuf,
    /// The checkpoint's own pooling and normalisation (sentence-transformers files, else pooler/CLS).
    pub pooling: Pooling,
    pub normalize: bool,
    pub device: B::Device,
}

impl<B: Backend> Encoder<B> {
    /// Loads a Hugging Face model directory: config, weights, tokenizer, default pooling.
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self, ModelError> {
        let config = loader::read_config(dir)?;
        let mut weights = SafetensorsWeights::open_dir(dir)?;
        let model = BertModel::load(&config, &mut weights, device)?;
        let tokenizer = TextTokenizer::from_dir(dir)?;
        let (pooling, normalize) = pooling::default_pooling(dir, model.pooler.is_some());
        Ok(Self {
            model,
            config,
            tokenizer,
            dir: dir.to_path_buf(),
            pooling,
            normalize,
            device: device.clone(),
        })
    }

    /// Writes the (possibly modified) model as a Hugging Face directory, copying tokenizer files.
    pub fn save(&self, out: &Path, overwrite: bool) -> Result<(), ModelError> {
        loader::write_model_dir(
            out,
            &self.config,
            &self.model.export(),
            Some(&self.dir),
            overwrite,
        )
    }

    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    pub fn has_pooler(&self) -> bool {
        self.model.pooler.is_some()
    }

    /// Tokenises with truncation at `max_length` (capped at the model's position limit).
    pub fn tokenize(&self, texts: &[&str], max_length: usize) -> Result<Vec<Tokens>, ModelError> {
        self.tokenizer
            .encode(texts, max_length.min(self.config.max_position_embeddings))
    }

    /// One forward pass: `(last_hidden_state [b, s, h], attention mask [b, s])`.
    pub fn forward(
        &self,
        batch: &TokenBatch,
        masks: Option<&UnitMasks<B>>,
    ) -> (Tensor<B, 3>, Tensor<B, 2>) {
        let (ids, mask) = batch.tensors::<B>(&self.device);
        (self.model.forward(ids, mask.clone(), masks), mask)
    }

    /// Batches of indices into `tokens`, longest first, so padding is small and output order is restorable.
    pub fn length_batches(tokens: &[Tokens], batch_size: usize) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..tokens.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(tokens[i].ids.len()));
        order
            .chunks(batch_size.max(1))
            .map(|c| c.to_vec())
            .collect()
    }

    /// Sentence vectors in input order. `progress` is called with the number of texts done after each batch.
    pub fn embed(
        &self,
        texts: &[String],
        opts: &EmbedOptions,
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        if opts.pooling == Pooling::Pooler && !self.has_pooler() {
            return Err(ModelError::Other(format!(
                "{}: --pooling pooler, but the checkpoint has no pooler weights (use cls or mean)",
                self.dir.display()
            )));
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let tokens = self.tokenize(&refs, opts.max_length)?;
        let mut out = vec![Vec::new(); texts.len()];
        let mut done = 0;
        self.for_each_batch(
            &tokens,
            opts.batch_size,
            |batch| {
                let (hidden, mask) = self.forward(batch, None);
                let mut pooled = pooling::pool(&self.model, &hidden, &mask, opts.pooling)
                    .expect("pooler checked above");
                if opts.normalize {
                    pooled = pooling::l2_normalize(pooled);
                }
                (pooled.dims()[1], to_vec(&pooled))
            },
            |idx, (dim, flat)| {
                for (r, &i) in idx.iter().enumerate() {
                    out[i] = flat[r * dim..(r + 1) * dim].to_vec();
                }
                done += idx.len();
                progress(done);
            },
        );
        Ok(out)
    }

    /// Runs `work` on every length-sorted padded batch of `tokens` and hands each result with its row
    /// indices to `sink` (in completion order). On CPU backends [`concurrent_batches`] batches are in
    /// flight at once; the per-batch results do not depend on it.
    fn for_each_batch<T: Send>(
        &self,
        tokens: &[Tokens],
        batch_size: usize,
        work: impl Fn(&TokenBatch) -> T + Sync,
        mut sink: impl FnMut(&[usize], T),
    ) {
        let batches = Self::length_batches(tokens, batch_size);
        let pad = |idx: &[usize]| {
            TokenBatch::new(
                &idx.iter().map(|&i| &tokens[i]).collect::<Vec<_>>(),
                self.tokenizer.pad_id,
            )
        };
        in_flight(
            batches.len(),
            concurrent_batches::<B>(),
            |b| work(&pad(&batches[b])),
            |b, r| sink(&batches[b], r),
        );
    }

    /// CLS, mean and pooler vectors (un-normalised) of every text, in input order.
    pub fn embed_variants(
        &self,
        texts: &[String],
        max_length: usize,
        batch_size: usize,
    ) -> Result<Variants, ModelError> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let tokens = self.tokenize(&refs, max_length)?;
        let dim = self.hidden_size();
        let n = texts.len();
        let mut v = Variants {
            dim,
            cls: vec![Vec::new(); n],
            mean: vec![Vec::new(); n],
            pooler: if self.has_pooler() {
                vec![Vec::new(); n]
            } else {
                Vec::new()
            },
        };
        self.for_each_batch(
            &tokens,
            batch_size,
            |batch| {
                let (hidden, mask) = self.forward(batch, None);
                (
                    to_vec(&pooling::cls(&hidden)),
                    to_vec(&pooling::mean(&hidden, &mask)),
                    self.model.pool(&hidden).map(|p| to_vec(&p)),
                )
            },
            |idx, (cls, mean, pooler)| {
                for (r, &i) in idx.iter().enumerate() {
                    v.cls[i] = cls[r * dim..(r + 1) * dim].to_vec();
                    v.mean[i] = mean[r * dim..(r + 1) * dim].to_vec();
                    if let Some(p) = &pooler {
                        v.pooler[i] = p[r * dim..(r + 1) * dim].to_vec();
                    }
                }
            },
        );
        Ok(v)
    }

    /// [`Encoder::encode_words`] for many pre-split texts, in padded length-sorted batches (padding does not
    /// change the real tokens' states, so each result equals the text encoded alone).
    pub fn encode_words_many(
        &self,
        texts: &[Vec<&str>],
        max_length: usize,
        batch_size: usize,
    ) -> Result<Vec<WordEncoding>, ModelError> {
        let limit = max_length.min(self.config.max_position_embeddings);
        let tokens = texts
            .iter()
            .map(|words| self.tokenizer.encode_words(words, limit))
            .collect::<Result<Vec<_>, _>>()?;
        let dim = self.hidden_size();
        let mut out: Vec<Option<WordEncoding>> = vec![None; texts.len()];
        self.for_each_batch(
            &tokens,
            batch_size,
            |batch| (batch.seq, to_vec(&self.forward(batch, None).0)),
            |idx, (seq, flat)| {
                for (r, &i) in idx.iter().enumerate() {
                    let t = &tokens[i];
                    let start = r * seq * dim;
                    out[i] = Some(WordEncoding {
                        hidden: flat[start..start + t.ids.len() * dim].to_vec(),
                        dim,
                        word_ids: t.word_ids.iter().map(|w| w.map(|w| w as usize)).collect(),
                    });
                }
            },
        );
        Ok(out
            .into_iter()
            .map(|e| e.expect("every text is in one batch"))
            .collect())
    }

    /// Last hidden state of one pre-split text and the word of every token (NER-style tasks).
    pub fn encode_words(
        &self,
        words: &[&str],
        max_length: usize,
    ) -> Result<WordEncoding, ModelError> {
        let tokens = self
            .tokenizer
            .encode_words(words, max_length.min(self.config.max_position_embeddings))?;
        let batch = TokenBatch::new(&[&tokens], self.tokenizer.pad_id);
        let (hidden, _) = self.forward(&batch, None);
        Ok(WordEncoding {
            hidden: to_vec(&hidden),
            dim: self.hidden_size(),
            word_ids: tokens
                .word_ids
                .iter()
                .map(|w| w.map(|w| w as usize))
                .collect(),
        })
    }
}

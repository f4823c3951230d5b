//! The teacher's vector of every vocabulary token on its own: `[CLS] token [SEP]` through the encoder,
//! pooled the teacher's way (model2vec's recipe). The batches are all length 3, so no padding.

use burn::tensor::backend::Backend;
use sekator_model::backend::BackendTask;
use sekator_model::layers::to_vec;
use sekator_model::{pooling, Encoder, ModelError, Pooling, TokenBatch, Tokens};

/// Row-major `[vocab, hidden]` teacher vectors, plus the pooling used.
pub struct TokenVectors {
    pub rows: Vec<f32>,
    pub dim: usize,
    pub pooling: Pooling,
}

pub struct Task<'a> {
    pub teacher: &'a std::path::Path,
    pub batch_size: usize,
    pub progress: &'a indicatif::ProgressBar,
}

impl BackendTask for Task<'_> {
    type Output = Result<TokenVectors, ModelError>;

    fn run<B: Backend>(self, device: B::Device) -> Self::Output {
        let enc = Encoder::<B>::load(self.teacher, &device)?;
        let tok = &enc.tokenizer;
        let special = |t: &str| {
            tok.token_to_id(t).ok_or_else(|| ModelError::Tokenizer {
                path: tok.path().to_path_buf(),
                msg: format!("the vocabulary has no {t}"),
            })
        };
        let (cls, sep) = (special("[CLS]")?, special("[SEP]")?);
        let vocab = enc.config.vocab_size;
        let dim = enc.config.hidden_size;
        let mut rows = Vec::with_capacity(vocab * dim);
        self.progress.set_length(vocab as u64);
        let ids: Vec<u32> = (0..vocab as u32).collect();
        for chunk in ids.chunks(self.batch_size.max(1)) {
            let tokens: Vec<Tokens> = chunk
                .iter()
                .map(|&t| Tokens {
                    ids: vec![cls, t, sep],
                    word_ids: vec![None, Some(0), None],
                })
                .collect();
            let batch = TokenBatch::new(&tokens.iter().collect::<Vec<_>>(), tok.pad_id);
            let (hidden, mask) = enc.forward(&batch, None);
            let pooled =
                pooling::pool(&enc.model, &hidden, &mask, enc.pooling).ok_or_else(|| {
                    ModelError::Other(
                        "the teacher's pooling is `pooler` but it has no pooler".into(),
                    )
                })?;
            rows.extend(to_vec(&pooled));
            self.progress.inc(chunk.len() as u64);
        }
        Ok(TokenVectors {
            rows,
            dim,
            pooling: enc.pooling,
        })
    }
}

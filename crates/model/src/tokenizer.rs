//! Text -> token ids, the way transformers' BERT tokenizers do it.
//!
//! `tokenizer.json` is used when present; otherwise (some LaBSE exports) the equivalent BERT WordPiece
//! pipeline is built from `vocab.txt`, honouring `do_lower_case` from `tokenizer_config.json`. Padding and
//! truncation stored inside `tokenizer.json` are switched off: we truncate per call (keeping `[CLS] ... [SEP]`
//! like `truncation=True`) and pad per batch ourselves, so batches can be sorted by length.

use std::path::{Path, PathBuf};

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{EncodeInput, Encoding, InputSequence, Tokenizer};

use crate::error::ModelError;

/// One tokenised text: ids and, for pre-split input, the word each token came from.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub ids: Vec<u32>,
    pub word_ids: Vec<Option<u32>>,
}

pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    pub pad_id: u32,
}

impl TextTokenizer {
    /// Loads the tokenizer of a Hugging Face model directory.
    pub fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        let json = dir.join("tokenizer.json");
        let vocab = dir.join("vocab.txt");
        let (mut inner, path) = if json.exists() {
            let t = Tokenizer::from_file(&json).map_err(|e| ModelError::Tokenizer {
                path: json.clone(),
                msg: e.to_string(),
            })?;
            (t, json)
        } else if vocab.exists() {
            (Self::wordpiece_from_vocab(dir, &vocab)?, vocab)
        } else {
            return Err(ModelError::Tokenizer {
                path: dir.to_path_buf(),
                msg: "neither tokenizer.json nor vocab.txt found".into(),
            });
        };
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| ModelError::Tokenizer {
                path: path.clone(),
                msg: e.to_string(),
            })?;
        let pad_id = inner.token_to_id("[PAD]").unwrap_or(0);
        Ok(Self {
            inner,
            path,
            pad_id,
        })
    }

    fn wordpiece_from_vocab(dir: &Path, vocab: &Path) -> Result<Tokenizer, ModelError> {
        let err = |msg: String| ModelError::Tokenizer {
            path: vocab.to_path_buf(),
            msg,
        };
        let lower = std::fs::read_to_string(dir.join("tokenizer_config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("do_lower_case").and_then(|b| b.as_bool()))
            .unwrap_or(true);
        let model = WordPiece::from_file(&vocab.to_string_lossy())
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| err(e.to_string()))?;
        let mut t = Tokenizer::new(model);
        let id = |tok: &str| {
            t.token_to_id(tok)
                .ok_or_else(|| err(format!("vocabulary has no {tok}")))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        t.with_normalizer(Some(BertNormalizer::new(true, true, None, lower)));
        t.with_pre_tokenizer(Some(BertPreTokenizer));
        t.with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), sep),
            ("[CLS]".into(), cls),
        )));
        Ok(t)
    }

    /// Tokenises `texts`, each truncated to at most `max_length` tokens including `[CLS]`/`[SEP]`.
    pub fn encode(&self, texts: &[&str], max_length: usize) -> Result<Vec<Tokens>, ModelError> {
        let inputs: Vec<EncodeInput> = texts
            .iter()
            .map(|t| EncodeInput::Single((*t).into()))
            .collect();
        let enc = self
            .inner
            .encode_batch(inputs, true)
            .map_err(|e| ModelError::Tokenizer {
                path: self.path.clone(),
                msg: e.to_string(),
            })?;
        Ok(enc.into_iter().map(|e| truncate(e, max_length)).collect())
    }

    /// Tokenises one text given as words (no further splitting between words), keeping each token's word.
    pub fn encode_words(&self, words: &[&str], max_length: usize) -> Result<Tokens, ModelError> {
        let input = EncodeInput::Single(InputSequence::from(words.to_vec()));
        let enc = self
            .inner
            .encode(input, true)
            .map_err(|e| ModelError::Tokenizer {
                path: self.path.clone(),
                msg: e.to_string(),
            })?;
        Ok(truncate(enc, max_length))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The underlying `tokenizers` pipeline (padding and truncation off), for callers that need the
    /// vocabulary or encodings without special tokens (surgery's vocabulary trimming).
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// The file the tokenizer was loaded from (`tokenizer.json` or `vocab.txt`).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Keeps the first `max_length - 1` tokens and the final special token, as transformers' `truncation=True`.
fn truncate(enc: Encoding, max_length: usize) -> Tokens {
    let mut ids = enc.get_ids().to_vec();
    let mut word_ids = enc.get_word_ids().to_vec();
    if ids.len() > max_length && max_length >= 2 {
        let last = ids.len() - 1;
        let (last_id, last_word) = (ids[last], word_ids[last]);
        ids.truncate(max_length - 1);
        word_ids.truncate(max_length - 1);
        ids.push(last_id);
        word_ids.push(last_word);
    }
    Tokens { ids, word_ids }
}

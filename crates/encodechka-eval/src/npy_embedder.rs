//! Vectors exported by the Python replica (`scripts/reference/encodechka_reference.py --export DIR`).
//!
//! Scoring the very same float32 vectors the scikit-learn side scored isolates the evaluator from the
//! model: any score difference is the evaluator's. Files: `meta.json` (`model`, `dim`, `has_pooler`),
//! `sentences.json` (texts in row order), `sent_cls.npy`, `sent_mean.npy`, optional `sent_pooler.npy`
//! (`[n, dim]` float32), `words.json` (word lists of the NER texts) and `word_vectors.npy` (their words'
//! vectors, consecutive).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::embedder::{word_list_key, SentenceVariants, TextEmbedder};

#[derive(Deserialize)]
struct Meta {
    model: String,
    dim: usize,
    has_pooler: bool,
}

pub struct NpyEmbedder {
    name: String,
    dim: usize,
    has_pooler: bool,
    fingerprint: String,
    rows: HashMap<String, usize>,
    cls: Vec<f32>,
    mean: Vec<f32>,
    pooler: Option<Vec<f32>>,
    words: HashMap<String, (usize, usize)>,
    word_vectors: Vec<f32>,
}

fn read_npy(path: &Path, dim: usize) -> Result<(usize, Vec<f32>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .with_context(|| format!("{}: not an .npy file", path.display()))?;
    let shape = npy.shape().to_vec();
    if shape.len() != 2 || shape[1] as usize != dim {
        bail!("{}: shape {shape:?}, expected [n, {dim}]", path.display());
    }
    if npy.order() != npyz::Order::C {
        bail!("{}: Fortran order is not supported", path.display());
    }
    let data: Vec<f32> = npy
        .into_vec()
        .with_context(|| format!("{}: expected float32 data", path.display()))?;
    Ok((shape[0] as usize, data))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

impl NpyEmbedder {
    pub fn open(dir: &Path) -> Result<Self> {
        let file = |name: &str| -> PathBuf { dir.join(name) };
        let meta: Meta = read_json(&file("meta.json"))?;
        let texts: Vec<String> = read_json(&file("sentences.json"))?;
        let (n_cls, cls) = read_npy(&file("sent_cls.npy"), meta.dim)?;
        let (n_mean, mean) = read_npy(&file("sent_mean.npy"), meta.dim)?;
        let pooler = if meta.has_pooler {
            let (n, p) = read_npy(&file("sent_pooler.npy"), meta.dim)?;
            if n != texts.len() {
                bail!("sent_pooler.npy has {n} rows for {} texts", texts.len());
            }
            Some(p)
        } else {
            None
        };
        if n_cls != texts.len() || n_mean != texts.len() {
            bail!(
                "{}: {} texts but {n_cls} cls / {n_mean} mean rows",
                dir.display(),
                texts.len()
            );
        }
        let word_lists: Vec<Vec<String>> = read_json(&file("words.json"))?;
        let (n_words, word_vectors) = read_npy(&file("word_vectors.npy"), meta.dim)?;
        let mut words = HashMap::new();
        let mut offset = 0;
        for ws in &word_lists {
            words.insert(word_list_key(ws), (offset * meta.dim, ws.len() * meta.dim));
            offset += ws.len();
        }
        if offset != n_words {
            bail!("words.json lists {offset} words but word_vectors.npy has {n_words} rows");
        }
        let mut h = Sha256::new();
        h.update(std::fs::read(file("meta.json"))?);
        h.update(std::fs::read(file("sentences.json"))?);
        let rows = texts.into_iter().enumerate().map(|(i, t)| (t, i)).collect();
        Ok(Self {
            name: format!("{} (python export)", meta.model),
            dim: meta.dim,
            has_pooler: meta.has_pooler,
            fingerprint: hex::encode(h.finalize()),
            rows,
            cls,
            mean,
            pooler,
            words,
            word_vectors,
        })
    }
}

impl TextEmbedder for NpyEmbedder {
    fn name(&self) -> &str {
        &self.name
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn has_pooler(&self) -> bool {
        self.has_pooler
    }
    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    fn size_mb(&self) -> Option<f64> {
        None
    }
    fn cacheable(&self) -> bool {
        false
    }
    fn measures_speed(&self) -> bool {
        false
    }

    fn embed(&mut self, texts: &[String]) -> Result<SentenceVariants> {
        let d = self.dim;
        let mut out = SentenceVariants {
            dim: d,
            cls: vec![],
            mean: vec![],
            pooler: self.has_pooler.then(Vec::new),
        };
        for t in texts {
            let Some(&i) = self.rows.get(t) else {
                bail!(
                    "text not in the export (was it made from other data?): {:?}",
                    t.chars().take(80).collect::<String>()
                );
            };
            out.cls.extend_from_slice(&self.cls[i * d..(i + 1) * d]);
            out.mean.extend_from_slice(&self.mean[i * d..(i + 1) * d]);
            if let (Some(o), Some(p)) = (out.pooler.as_mut(), &self.pooler) {
                o.extend_from_slice(&p[i * d..(i + 1) * d]);
            }
        }
        Ok(out)
    }

    fn word_vectors(&mut self, words: &[String]) -> Result<Vec<f32>> {
        match self.words.get(&word_list_key(words)) {
            Some(&(start, len)) => Ok(self.word_vectors[start..start + len].to_vec()),
            None => bail!(
                "word list not in the export (a razdel split that differs from Python's?): {:?}",
                words.iter().take(12).collect::<Vec<_>>()
            ),
        }
    }
}

//! A checkpoint held as plain named tensors (HF names and `[out, in]` layout) plus its config.
//!
//! Surgery never builds a burn module: slicing rows and columns of the stored matrices is exact by
//! construction (no arithmetic touches a value), needs one copy of the weights in memory, and works for any
//! backend the model is later run on.

use std::path::Path;

use sekator_model::{read_config, write_model_dir, BertConfig, NamedTensor, SafetensorsWeights};

use crate::error::SurgeryError;

/// Prefixes of the tensors that make up a `BertModel`; anything else (MLM heads, buffers) is left out.
const BERT_PREFIXES: [&str; 3] = ["embeddings.", "encoder.layer.", "pooler."];

pub struct Checkpoint {
    pub config: BertConfig,
    pub tensors: Vec<NamedTensor>,
    /// Tensors of the source file that are not `BertModel` parameters and were not kept (e.g. the
    /// `embeddings.position_ids` buffer, `cls.*` pre-training heads).
    pub skipped: Vec<String>,
}

impl Checkpoint {
    /// Reads `config.json` and every BERT parameter of `dir` as f32.
    pub fn read(dir: &Path) -> Result<Self, SurgeryError> {
        let config = read_config(dir)?;
        let weights = SafetensorsWeights::open_dir(dir)?;
        let mut tensors = Vec::new();
        let mut skipped = Vec::new();
        for name in weights.names() {
            let is_param = BERT_PREFIXES.iter().any(|p| name.starts_with(p))
                && !name.ends_with("position_ids");
            if !is_param {
                skipped.push(name);
                continue;
            }
            let (shape, data) = weights.read_f32(&name)?;
            tensors.push(NamedTensor { name, shape, data });
        }
        if !skipped.is_empty() {
            tracing::info!(
                "not copied (not BertModel parameters): {}",
                skipped.join(", ")
            );
        }
        let ck = Self {
            config,
            tensors,
            skipped,
        };
        ck.check_shapes()?;
        Ok(ck)
    }

    /// Writes the checkpoint as a Hugging Face model directory, tokenizer files copied from `copy_from`.
    pub fn write(
        &self,
        out: &Path,
        copy_from: Option<&Path>,
        overwrite: bool,
    ) -> Result<(), SurgeryError> {
        write_model_dir(out, &self.config, &self.tensors, copy_from, overwrite)?;
        Ok(())
    }

    pub fn has(&self, name: &str) -> bool {
        self.tensors.iter().any(|t| t.name == name)
    }

    pub fn get(&self, name: &str) -> Result<&NamedTensor, SurgeryError> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| SurgeryError::Tensor {
                name: name.into(),
                msg: "missing from the checkpoint".into(),
            })
    }

    pub fn get_mut(&mut self, name: &str) -> Result<&mut NamedTensor, SurgeryError> {
        self.tensors
            .iter_mut()
            .find(|t| t.name == name)
            .ok_or_else(|| SurgeryError::Tensor {
                name: name.into(),
                msg: "missing from the checkpoint".into(),
            })
    }

    pub fn has_pooler(&self) -> bool {
        self.has("pooler.dense.weight")
    }

    /// Number of values over all tensors held.
    pub fn param_count(&self) -> usize {
        self.tensors.iter().map(|t| t.data.len()).sum()
    }

    /// Every per-layer matrix must have the shape config.json implies (heads kept x head_dim, FFN width),
    /// otherwise slicing by config indices would cut the wrong rows.
    pub fn check_shapes(&self) -> Result<(), SurgeryError> {
        let c = &self.config;
        let h = c.hidden_size;
        let hd = c.head_dim();
        for (l, &w) in c.ffn_sizes().iter().enumerate() {
            let inner = c.kept_heads(l).len() * hd;
            let a = format!("encoder.layer.{l}.attention");
            let f = format!("encoder.layer.{l}");
            let expect: [(String, Vec<usize>); 14] = [
                (format!("{a}.self.query.weight"), vec![inner, h]),
                (format!("{a}.self.query.bias"), vec![inner]),
                (format!("{a}.self.key.weight"), vec![inner, h]),
                (format!("{a}.self.key.bias"), vec![inner]),
                (format!("{a}.self.value.weight"), vec![inner, h]),
                (format!("{a}.self.value.bias"), vec![inner]),
                (format!("{a}.output.dense.weight"), vec![h, inner]),
                (format!("{f}.intermediate.dense.weight"), vec![w, h]),
                (format!("{f}.intermediate.dense.bias"), vec![w]),
                (format!("{f}.output.dense.weight"), vec![h, w]),
                (format!("{f}.output.dense.bias"), vec![h]),
                (format!("{a}.output.dense.bias"), vec![h]),
                (format!("{a}.output.LayerNorm.weight"), vec![h]),
                (format!("{f}.output.LayerNorm.weight"), vec![h]),
            ];
            for (name, shape) in expect {
                self.expect_shape(&name, &shape)?;
            }
        }
        let e = "embeddings";
        self.expect_shape(&format!("{e}.word_embeddings.weight"), &[c.vocab_size, h])?;
        self.expect_shape(
            &format!("{e}.position_embeddings.weight"),
            &[c.max_position_embeddings, h],
        )?;
        self.expect_shape(&format!("{e}.LayerNorm.weight"), &[h])?;
        if self.has_pooler() {
            self.expect_shape("pooler.dense.weight", &[h, h])?;
        }
        Ok(())
    }

    fn expect_shape(&self, name: &str, shape: &[usize]) -> Result<(), SurgeryError> {
        let t = self.get(name)?;
        if t.shape != shape {
            return Err(SurgeryError::Tensor {
                name: name.into(),
                msg: format!("has shape {:?}, config.json implies {shape:?}", t.shape),
            });
        }
        Ok(())
    }
}

/// Keeps the `rows` (indices along dim 0, in the order given) of a 1-D or 2-D tensor.
pub fn select_rows(t: &mut NamedTensor, rows: &[usize]) {
    let row_len: usize = t.shape[1..].iter().product();
    let mut data = Vec::with_capacity(rows.len() * row_len);
    for &r in rows {
        data.extend_from_slice(&t.data[r * row_len..(r + 1) * row_len]);
    }
    t.data = data;
    t.shape[0] = rows.len();
}

/// Keeps the `cols` (indices along dim 1) of a 2-D tensor.
pub fn select_cols(t: &mut NamedTensor, cols: &[usize]) {
    let (rows, n) = (t.shape[0], t.shape[1]);
    let mut data = Vec::with_capacity(rows * cols.len());
    for r in 0..rows {
        let row = &t.data[r * n..(r + 1) * n];
        data.extend(cols.iter().map(|&c| row[c]));
    }
    t.data = data;
    t.shape[1] = cols.len();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_columns_are_selected_in_order() {
        let mut t = NamedTensor {
            name: "w".into(),
            shape: vec![3, 4],
            data: (0..12).map(|v| v as f32).collect(),
        };
        select_cols(&mut t, &[1, 3]);
        assert_eq!(t.shape, vec![3, 2]);
        assert_eq!(t.data, vec![1.0, 3.0, 5.0, 7.0, 9.0, 11.0]);
        select_rows(&mut t, &[0, 2]);
        assert_eq!(t.shape, vec![2, 2]);
        assert_eq!(t.data, vec![1.0, 3.0, 9.0, 11.0]);
        let mut b = NamedTensor {
            name: "b".into(),
            shape: vec![4],
            data: vec![0.0, 1.0, 2.0, 3.0],
        };
        select_rows(&mut b, &[3]);
        assert_eq!((b.shape, b.data), (vec![1], vec![3.0]));
    }
}

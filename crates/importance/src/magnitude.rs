//! `--criterion magnitude`: every unit scored by the L2 norm of the weights that belong to it alone, read
//! straight from the checkpoint (no data, no forward pass), as the baseline the gradient criteria are
//! compared against.
//!
//! A head of layer `l` owns its `head_dim` rows of `attention.self.{query,key,value}.weight` and their bias
//! entries, and its `head_dim` columns of `attention.output.dense.weight`; an FFN neuron owns its row of
//! `intermediate.dense.weight`, its bias entry, and its column of `output.dense.weight`. The output biases
//! are shared by all units and count for none. Everything is in the checkpoint's current layout (a pruned
//! model has fewer rows), so the scores are in current unit order like [`crate::accumulate`]'s.

use std::ops::Range;
use std::path::Path;

use sekator_model::{BertConfig, ModelError, SafetensorsWeights};

/// A row-major matrix read from the checkpoint (a bias is one column).
struct Matrix {
    name: String,
    cols: usize,
    data: Vec<f32>,
}

impl Matrix {
    /// Reads `name`, checking it has `rows` rows (1-D tensors are read as columns).
    fn read(w: &SafetensorsWeights, name: &str, rows: usize) -> Result<Self, ModelError> {
        let (shape, data) = w.read_f32(name)?;
        let (r, c) = match shape[..] {
            [r] => (r, 1),
            [r, c] => (r, c),
            _ => (0, 0),
        };
        if r != rows || r * c != data.len() {
            return Err(ModelError::Other(format!(
                "`{name}` has shape {shape:?}, expected {rows} rows for the config's current layout"
            )));
        }
        Ok(Self {
            name: name.to_string(),
            cols: c,
            data,
        })
    }

    /// Sum of squares of rows `rows`.
    fn rows_sq(&self, rows: Range<usize>) -> f64 {
        self.data[rows.start * self.cols..rows.end * self.cols]
            .iter()
            .map(|&v| (v as f64) * (v as f64))
            .sum()
    }

    /// Sum of squares of columns `cols` (every row).
    fn cols_sq(&self, cols: Range<usize>) -> f64 {
        self.data
            .chunks_exact(self.cols)
            .flat_map(|row| &row[cols.clone()])
            .map(|&v| (v as f64) * (v as f64))
            .sum()
    }

    /// Checks there are `n` columns (the transposed side of a unit).
    fn expect_cols(self, n: usize) -> Result<Self, ModelError> {
        if self.cols != n {
            return Err(ModelError::Other(format!(
                "`{}` has {} columns, expected {n} for the config's current layout",
                self.name, self.cols
            )));
        }
        Ok(self)
    }
}

/// Raw scores of layer `l`'s present heads, in current order.
fn head_norms(w: &SafetensorsWeights, cfg: &BertConfig, l: usize) -> Result<Vec<f64>, ModelError> {
    let (hd, n) = (cfg.head_dim(), cfg.kept_heads(l).len());
    let a = format!("encoder.layer.{l}.attention");
    let mut own = Vec::new();
    for which in ["query", "key", "value"] {
        for kind in ["weight", "bias"] {
            own.push(Matrix::read(
                w,
                &format!("{a}.self.{which}.{kind}"),
                n * hd,
            )?);
        }
    }
    let out = Matrix::read(w, &format!("{a}.output.dense.weight"), cfg.hidden_size)?
        .expect_cols(n * hd)?;
    Ok((0..n)
        .map(|p| {
            let r = p * hd..(p + 1) * hd;
            let sq: f64 = own.iter().map(|m| m.rows_sq(r.clone())).sum();
            (sq + out.cols_sq(r)).sqrt()
        })
        .collect())
}

/// Raw scores of layer `l`'s FFN neurons, in current order.
fn ffn_norms(w: &SafetensorsWeights, cfg: &BertConfig, l: usize) -> Result<Vec<f64>, ModelError> {
    let n = cfg.ffn_sizes()[l];
    let p = format!("encoder.layer.{l}");
    let inter = Matrix::read(w, &format!("{p}.intermediate.dense.weight"), n)?;
    let bias = Matrix::read(w, &format!("{p}.intermediate.dense.bias"), n)?;
    let out =
        Matrix::read(w, &format!("{p}.output.dense.weight"), cfg.hidden_size)?.expect_cols(n)?;
    Ok((0..n)
        .map(|j| (inter.rows_sq(j..j + 1) + bias.rows_sq(j..j + 1) + out.cols_sq(j..j + 1)).sqrt())
        .collect())
}

/// Raw scores `[layer][current unit]`.
pub type PerLayer = Vec<Vec<f64>>;

/// Un-normalised magnitude scores `(heads, ffn)` of the checkpoint in `model_dir` with config `cfg`.
pub fn magnitudes(model_dir: &Path, cfg: &BertConfig) -> Result<(PerLayer, PerLayer), ModelError> {
    let w = SafetensorsWeights::open_dir(model_dir)?;
    let layers = 0..cfg.num_hidden_layers;
    let heads = layers
        .clone()
        .map(|l| head_norms(&w, cfg, l))
        .collect::<Result<_, _>>()?;
    let ffn = layers
        .map(|l| ffn_norms(&w, cfg, l))
        .collect::<Result<_, _>>()?;
    Ok((heads, ffn))
}

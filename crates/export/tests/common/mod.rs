//! Shared helpers: tiny uneven checkpoints, a padded batch, the burn reference, and tract runs.

use std::path::Path;

use burn::tensor::{Int, Tensor, TensorData};
use sekator_model::layers::to_vec;
use sekator_model::testing::{tiny_config, write_random_model_from};
use sekator_model::weights::RandomWeights;
use sekator_model::{read_config, BertConfig, BertModel, Cpu, SafetensorsWeights};
use tract_onnx::prelude::*;

/// A padded batch: `lens[i]` real tokens in row `i` (CLS first), zeros (PAD) after.
pub struct Batch {
    pub batch: usize,
    pub seq: usize,
    pub lens: Vec<usize>,
    pub ids: Vec<i64>,
    pub mask: Vec<i64>,
}

impl Batch {
    pub fn new(lens: &[usize], vocab: usize) -> Self {
        let seq = *lens.iter().max().unwrap();
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for (row, &len) in lens.iter().enumerate() {
            for t in 0..seq {
                let real = t < len;
                let id = if t == 0 {
                    2
                } else {
                    5 + (row * 31 + t * 17) % (vocab - 5)
                };
                ids.push(if real { id as i64 } else { 0 });
                mask.push(real as i64);
            }
        }
        Self {
            batch: lens.len(),
            seq,
            lens: lens.to_vec(),
            ids,
            mask,
        }
    }
}

/// A 3-layer tiny model with an uneven plan: heads [3, 1, 4], FFN widths [64, 16, 40].
pub fn uneven_config() -> BertConfig {
    let mut cfg = tiny_config(3);
    cfg.add_pruned_heads(0, &[1]);
    cfg.add_pruned_heads(1, &[0, 1, 3]);
    cfg.set_ffn_sizes(vec![64, 16, 40]);
    cfg
}

pub fn write_model(dir: &Path, cfg: &BertConfig, seed: u64, pooler: bool) {
    let mut src = RandomWeights::new(seed);
    src.with_pooler = pooler;
    write_random_model_from::<Cpu>(dir, cfg, src, &Default::default()).unwrap();
}

/// sekator's own outputs (token types all 0, as `BertModel::forward` uses): hidden state, pooler output.
pub fn burn_outputs(dir: &Path, b: &Batch) -> (Vec<f32>, Option<Vec<f32>>) {
    let dev = Default::default();
    let cfg = read_config(dir).unwrap();
    let mut weights = SafetensorsWeights::open_dir(dir).unwrap();
    let model = BertModel::<Cpu>::load(&cfg, &mut weights, &dev).unwrap();
    let ids =
        Tensor::<Cpu, 2, Int>::from_data(TensorData::new(b.ids.clone(), [b.batch, b.seq]), &dev);
    let mask: Vec<f32> = b.mask.iter().map(|&m| m as f32).collect();
    let mask = Tensor::<Cpu, 2>::from_data(TensorData::new(mask, [b.batch, b.seq]), &dev);
    let hidden = model.forward(ids, mask, None);
    let pooled = model.pool(&hidden).map(|p| to_vec(&p));
    (to_vec(&hidden), pooled)
}

/// Runs an exported model with tract; returns every output as flat f32 plus its shape.
pub fn tract_outputs(path: &Path, b: &Batch) -> Vec<(Vec<usize>, Vec<f32>)> {
    let model = tract_onnx::onnx()
        .model_for_path(path)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input = |data: &[i64]| -> TValue {
        tract_onnx::prelude::Tensor::from_shape(&[b.batch, b.seq], data)
            .unwrap()
            .into_tvalue()
    };
    let types = vec![0i64; b.ids.len()];
    let outs = model
        .run(tvec!(input(&b.ids), input(&b.mask), input(&types)))
        .unwrap();
    outs.iter()
        .map(|t| {
            let view = t.to_plain_array_view::<f32>().unwrap();
            (view.shape().to_vec(), view.iter().copied().collect())
        })
        .collect()
}

/// Max |a - b| over the real (unmasked) token rows of two `[batch, seq, hidden]` tensors.
pub fn max_diff_real(a: &[f32], b: &[f32], batch: &Batch, hidden: usize) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut max = 0.0f32;
    for (row, &len) in batch.lens.iter().enumerate() {
        let start = row * batch.seq * hidden;
        let end = start + len * hidden;
        for (x, y) in a[start..end].iter().zip(&b[start..end]) {
            max = max.max((x - y).abs());
        }
    }
    max
}

pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Smallest cosine similarity between matching rows of two `[rows, dim]` matrices.
pub fn min_row_cosine(a: &[f32], b: &[f32], dim: usize) -> f32 {
    a.chunks(dim)
        .zip(b.chunks(dim))
        .map(|(x, y)| {
            let dot: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            let nx: f32 = x.iter().map(|v| v * v).sum::<f32>().sqrt();
            let ny: f32 = y.iter().map(|v| v * v).sum::<f32>().sqrt();
            dot / (nx * ny)
        })
        .fold(1.0, f32::min)
}

/// Mean of the real tokens of each row: `[batch, hidden]`.
pub fn mean_pool(h: &[f32], b: &Batch, hidden: usize) -> Vec<f32> {
    let mut out = vec![0.0; b.batch * hidden];
    for (row, &len) in b.lens.iter().enumerate() {
        for t in 0..len {
            let src = &h[(row * b.seq + t) * hidden..][..hidden];
            for (o, v) in out[row * hidden..][..hidden].iter_mut().zip(src) {
                *o += v / len as f32;
            }
        }
    }
    out
}

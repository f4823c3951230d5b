//! The losses whose gradients with respect to the unit masks define importance, and the batches they see.
//!
//! - `ranking`: in-batch translation ranking. Cosine similarity matrix of the pooled English and Russian
//!   embeddings times `scale`, softmax cross-entropy against the diagonal in both directions, averaged.
//! - `teacher`: `MSE(student(en), teacher(en)) + MSE(student(ru), teacher(ru))` on pooled, un-normalised
//!   embeddings; the teacher's vectors are computed once, without gradients. Zero (with zero gradients) when
//!   the student *is* the teacher, so it is meant for re-scoring a pruned model.
//! - `contrastive`: the ranking loss between each side's student vectors and the teacher's vectors of the
//!   same side (the model itself unless `--teacher`), averaged over en and ru: each sentence against the
//!   batch's other sentences. Positive (with gradients) for the unmasked model, and monolingual.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use sekator_model::pooling::{self, Pooling};
use sekator_model::{BertModel, Encoder, TokenBatch, UnitMasks};
use sekator_pipeline::Pair;

use crate::{ImportanceError, LossKind};

/// Everything about the loss except the data.
#[derive(Debug, Clone, Copy)]
pub struct LossSpec {
    pub kind: LossKind,
    /// Multiplier of the cosine similarities (ranking loss); 20 as in sentence-transformers.
    pub scale: f32,
    pub pooling: Pooling,
}

/// The teacher's pooled vectors for one batch, row-major `[batch, dim]`.
#[derive(Debug, Clone)]
pub struct TeacherTargets {
    pub dim: usize,
    pub en: Vec<f32>,
    pub ru: Vec<f32>,
}

/// One batch of pairs, tokenised and padded per side.
#[derive(Debug, Clone)]
pub struct PreparedBatch {
    pub en: TokenBatch,
    pub ru: TokenBatch,
    pub teacher: Option<TeacherTargets>,
}

/// Tokenises `pairs` into consecutive batches of `batch_size` (the caller guarantees a multiple).
pub fn prepare_batches<B: Backend>(
    enc: &Encoder<B>,
    pairs: &[Pair],
    batch_size: usize,
    max_length: usize,
) -> Result<Vec<PreparedBatch>, ImportanceError> {
    pairs
        .chunks(batch_size)
        .map(|chunk| {
            let en: Vec<&str> = chunk.iter().map(|p| p.en.as_str()).collect();
            let ru: Vec<&str> = chunk.iter().map(|p| p.ru.as_str()).collect();
            let te = enc.tokenize(&en, max_length)?;
            let tr = enc.tokenize(&ru, max_length)?;
            Ok(PreparedBatch {
                en: TokenBatch::new(&te.iter().collect::<Vec<_>>(), enc.tokenizer.pad_id),
                ru: TokenBatch::new(&tr.iter().collect::<Vec<_>>(), enc.tokenizer.pad_id),
                teacher: None,
            })
        })
        .collect()
}

/// Fills `teacher` of every batch with `teacher`'s pooled vectors (forward only). The teacher must share the
/// student's tokenizer (a pruned copy of it does).
pub fn add_teacher_targets<B: Backend>(
    teacher: &Encoder<B>,
    batches: &mut [PreparedBatch],
    pooling: Pooling,
) {
    let embed = |tb: &TokenBatch| {
        let (hidden, mask) = teacher.forward(tb, None);
        let pooled = pooling::pool(&teacher.model, &hidden, &mask, pooling)
            .expect("teacher pooling checked");
        host(pooled)
    };
    for b in batches.iter_mut() {
        b.teacher = Some(TeacherTargets {
            dim: teacher.config.hidden_size,
            en: embed(&b.en),
            ru: embed(&b.ru),
        });
    }
}

/// A tensor's values on the host as f32.
pub fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("float tensor data")
}

/// The ranking loss (see the module docs), shared with distillation.
pub use sekator_model::losses::ranking_loss;

fn mse<B: Backend>(a: Tensor<B, 2>, target: &[f32]) -> Tensor<B, 1> {
    let [n, d] = a.dims();
    let t = Tensor::<B, 2>::from_data(TensorData::new(target.to_vec(), [n, d]), &a.device());
    (a - t).powf_scalar(2.0).mean()
}

/// The loss of one batch (a `[1]` tensor) under `masks` (`None`: the unmasked model).
pub fn batch_loss<B: Backend>(
    model: &BertModel<B>,
    batch: &PreparedBatch,
    spec: &LossSpec,
    masks: Option<&UnitMasks<B>>,
    device: &B::Device,
) -> Tensor<B, 1> {
    let embed = |tb: &TokenBatch| {
        let (ids, mask) = tb.tensors::<B>(device);
        let hidden = model.forward(ids, mask.clone(), masks);
        let pooled = pooling::pool(model, &hidden, &mask, spec.pooling)
            .expect("pooling checked when the model was loaded");
        // A cut dimension is gone from the sentence vector too (the pooler's outputs included).
        match masks.and_then(|m| m.hidden.as_ref()) {
            Some(m) => {
                let d = m.dims()[0];
                pooled * m.clone().reshape([1, d])
            }
            None => pooled,
        }
    };
    let en = embed(&batch.en);
    let ru = embed(&batch.ru);
    match spec.kind {
        LossKind::Ranking => ranking_loss(en, ru, spec.scale as f64),
        LossKind::Teacher => {
            let t = batch
                .teacher
                .as_ref()
                .expect("teacher targets prepared for the teacher loss");
            mse(en, &t.en) + mse(ru, &t.ru)
        }
        LossKind::Contrastive => {
            let t = batch
                .teacher
                .as_ref()
                .expect("teacher targets prepared for the contrastive loss");
            let target = |v: &[f32], like: &Tensor<B, 2>| {
                let [n, d] = like.dims();
                Tensor::<B, 2>::from_data(TensorData::new(v.to_vec(), [n, d]), device)
            };
            let (t_en, t_ru) = (target(&t.en, &en), target(&t.ru, &ru));
            let scale = spec.scale as f64;
            (ranking_loss(en, t_en, scale) + ranking_loss(ru, t_ru, scale)).div_scalar(2.0)
        }
    }
}

/// All-ones masks that require gradients, shaped like `model`; with `hidden`, a residual-stream mask too.
pub fn grad_masks<B: AutodiffBackend>(
    model: &BertModel<B>,
    hidden: bool,
    device: &B::Device,
) -> UnitMasks<B> {
    let m = UnitMasks::<B>::ones(&model.num_heads(), &model.ffn_sizes(), device);
    let rg =
        |v: Vec<Option<Tensor<B, 1>>>| v.into_iter().map(|t| t.map(|t| t.require_grad())).collect();
    let width = model.embeddings.word_embeddings.weight.dims()[1];
    UnitMasks {
        heads: rg(m.heads),
        ffn: rg(m.ffn),
        hidden: hidden.then(|| Tensor::ones([width], device).require_grad()),
    }
}

/// Gradients of one batch's loss with respect to every head and FFN mask entry (current unit order), and
/// the loss value. `model` should have had `no_grad()` applied so no parameter gradients are computed.
#[derive(Debug, Clone)]
pub struct MaskGradients {
    pub loss: f32,
    /// `[layer][current head]`.
    pub heads: Vec<Vec<f32>>,
    /// `[layer][current neuron]`.
    pub ffn: Vec<Vec<f32>>,
    /// `[current residual-stream dimension]`; empty unless asked for.
    pub hidden: Vec<f32>,
}

/// With `hidden`, the residual-stream mask's gradient too.
pub fn mask_gradients<B: AutodiffBackend>(
    model: &BertModel<B>,
    batch: &PreparedBatch,
    spec: &LossSpec,
    hidden: bool,
    device: &B::Device,
) -> MaskGradients {
    let masks = grad_masks(model, hidden, device);
    let loss = batch_loss(model, batch, spec, Some(&masks), device);
    let grads = loss.backward();
    let value = host(loss.inner())[0];
    let all: Vec<&Tensor<B, 1>> = masks
        .heads
        .iter()
        .chain(masks.ffn.iter())
        .chain(std::iter::once(&masks.hidden))
        .flatten()
        .collect();
    let sizes: Vec<usize> = all.iter().map(|t| t.dims()[0]).collect();
    let parts: Vec<Tensor<B::InnerBackend, 1>> = all
        .iter()
        .map(|t| {
            t.grad(&grads)
                .unwrap_or_else(|| Tensor::zeros([t.dims()[0]], device))
        })
        .collect();
    // one transfer for all gradients
    let flat = host(Tensor::cat(parts, 0));
    let mut off = 0;
    let mut split = sizes.iter().map(|&n| {
        let v = flat[off..off + n].to_vec();
        off += n;
        v
    });
    let layers = masks.heads.len();
    let heads: Vec<Vec<f32>> = (0..layers)
        .map(|_| split.next().unwrap_or_default())
        .collect();
    let ffn: Vec<Vec<f32>> = (0..layers)
        .map(|_| split.next().unwrap_or_default())
        .collect();
    MaskGradients {
        loss: value,
        heads,
        ffn,
        hidden: split.next().unwrap_or_default(),
    }
}

//! The symmetric in-batch translation-ranking loss, shared by importance (whose gradient it is) and
//! distillation (one of its terms): cosine similarities of every `a[i]` with every `b[j]` times `scale`,
//! softmax cross-entropy with the pair (the diagonal) as the target, averaged over rows and columns.

use burn::tensor::activation::log_softmax;
use burn::tensor::{backend::Backend, FloatDType, Tensor};

use crate::pooling::l2_normalize;

/// The loss of `[n, dim]` batches `a`, `b` whose rows `i` are pairs; computed in the dtype of `a`
/// (a reduced training precision included).
pub fn ranking_loss<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>, scale: f64) -> Tensor<B, 1> {
    let n = a.dims()[0];
    let sim = l2_normalize(a)
        .matmul(l2_normalize(b).transpose())
        .mul_scalar(scale);
    // in the similarities' dtype (the device default may be a reduced training precision)
    let eye = Tensor::<B, 2>::eye(n, &sim.device()).cast(FloatDType::from(sim.dtype()));
    let rows = (log_softmax(sim.clone(), 1) * eye.clone()).sum();
    let cols = (log_softmax(sim, 0) * eye).sum();
    (rows + cols).mul_scalar(-0.5 / n as f64)
}

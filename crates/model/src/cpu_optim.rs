//! AdamW's update of one parameter as a single in-place pass on the CPU backend (burn-flex), on all cores.
//!
//! Why: composed from burn's tensor ops the update is about a dozen element-wise passes over the parameter,
//! each allocating a fresh tensor of its size (MiniLM's word embeddings alone hold 11.7 M floats, and the
//! kernel zeroes every new page) and each on one thread. Here it is one pass over `(param, grad, m, v)`,
//! written in place and split across threads. It applies the same f32 operations in the same order as
//! that composition (`distill/src/optim.rs`; burn-flex rounds every scalar to f32 first), so the results
//! are bit-identical; the tests check it. The split cannot change them either: every element is
//! independent.

use std::any::{Any, TypeId};

use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_flex::FlexTensor;

use crate::cpu_kernels::contiguous_mut;

/// The scalars of one update, as f32. `coef`: the gradient-clipping factor (`None`: not clipped);
/// `keep`: `1 - lr * weight_decay` (`None`: this parameter is not decayed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWScalars {
    pub coef: Option<f32>,
    pub beta1: f32,
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    /// Bias corrections `1 - beta^t`.
    pub bc1: f32,
    pub bc2: f32,
    pub eps: f32,
    pub lr: f32,
    pub keep: Option<f32>,
}

/// Whether [`adamw`] takes this parameter: burn-flex, f32.
pub fn fused<B: Backend>(param: &Tensor<B, 1>) -> bool {
    TypeId::of::<B>() == TypeId::of::<Flex>() && param.dtype() == DType::F32
}

/// One AdamW update of `param` (flat) with `grad`; `moments` are `(m, v)`, `None` before the first update.
/// Returns the new `(param, m, v)`. Only for what [`fused`] accepts (panics otherwise).
pub fn adamw<B: Backend>(
    param: Tensor<B, 1>,
    grad: Tensor<B, 1>,
    moments: Option<(Tensor<B, 1>, Tensor<B, 1>)>,
    s: &AdamWScalars,
) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) {
    assert!(fused(&param), "adamw: burn-flex f32 parameters only");
    let n = param.dims()[0];
    let grad = flex(grad).to_contiguous();
    let g = &grad.storage::<f32>()[..n];
    let mut p = flex(param);
    let first = moments.is_none();
    let (mut m, mut v) = match moments {
        Some((m, v)) => (flex(m), flex(v)),
        None => (
            FlexTensor::zeros(p.layout().shape().clone(), DType::F32),
            FlexTensor::zeros(p.layout().shape().clone(), DType::F32),
        ),
    };
    let (ps, ms, vs) = (
        contiguous_mut(&mut p),
        contiguous_mut(&mut m),
        contiguous_mut(&mut v),
    );
    in_parallel(ps, g, ms, vs, |p, g, m, v| update(p, g, m, v, s, first));
    (tensor(p), tensor(m), tensor(v))
}

/// Elements per thread below which splitting costs more than it saves.
const MIN_PER_THREAD: usize = 1 << 15;

/// Runs `f` over matching chunks of the four slices, one chunk per core.
fn in_parallel(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    f: impl Fn(&mut [f32], &[f32], &mut [f32], &mut [f32]) + Sync,
) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(p.len() / MIN_PER_THREAD).max(1);
    if threads == 1 {
        return f(p, g, m, v);
    }
    let chunk = p.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts = p
            .chunks_mut(chunk)
            .zip(g.chunks(chunk))
            .zip(m.chunks_mut(chunk).zip(v.chunks_mut(chunk)));
        for ((p, g), (m, v)) in parts {
            let f = &f;
            scope.spawn(move || f(p, g, m, v));
        }
    });
}

/// The update of one chunk: burn's op sequence, element by element.
fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: &AdamWScalars, first: bool) {
    for i in 0..p.len() {
        let g = match s.coef {
            Some(c) => g[i] * c,
            None => g[i],
        };
        let (mi, vi) = if first {
            (g * s.one_minus_beta1, (g * g) * s.one_minus_beta2)
        } else {
            (
                m[i] * s.beta1 + g * s.one_minus_beta1,
                v[i] * s.beta2 + (g * g) * s.one_minus_beta2,
            )
        };
        m[i] = mi;
        v[i] = vi;
        let step = (mi / s.bc1) / ((vi / s.bc2).sqrt() + s.eps);
        let kept = match s.keep {
            Some(k) => p[i] * k,
            None => p[i],
        };
        p[i] = kept - step * s.lr;
    }
}

fn flex<B: Backend, const D: usize>(t: Tensor<B, D>) -> FlexTensor {
    let prim: Box<dyn Any> = Box::new(t.into_primitive().tensor());
    *prim.downcast::<FlexTensor>().expect("checked by `fused`")
}

fn tensor<B: Backend, const D: usize>(f: FlexTensor) -> Tensor<B, D> {
    let prim: Box<dyn Any> = Box::new(f);
    let prim = *prim
        .downcast::<B::FloatTensorPrimitive>()
        .expect("checked by `fused`");
    Tensor::from_primitive(TensorPrimitive::Float(prim))
}

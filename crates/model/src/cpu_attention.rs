//! Scaled dot-product attention under autodiff on the CPU backend as one graph node.
//!
//! Why: composed, the heads are strided views of Q/K/V (`reshape` + `swap_dims`) that burn-flex copies to
//! contiguous buffers before each batched matmul, forward and backward, and merging the heads back records
//! a `narrow` per head whose backward pads each head's gradient into a zeroed full-size tensor. Those copies
//! and zero-fills were the largest cost outside the matmul kernel in a training step (BENCHMARKS.md). Here
//! Q, K and V stay `[batch * seq, heads * head_dim]` as their Linear layers wrote them; per (sequence,
//! head) gemm reads them in place through strides, the softmax is the fused row kernel, and each head's
//! context goes straight into its columns of the merged output. The node keeps the probabilities for the
//! backward, which is four gemm calls and the softmax row backward per (sequence, head):
//! `dV = P^T dC`, `dP = dC V^T`, `dS = softmax'(dP)`, `dQ = dS K`, `dK = dS^T Q`.
//! The maths is the composed ops'; the tests compare the two, values and gradients.

use std::any::TypeId;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Shape, Tensor, TensorData};
use burn_flex::FlexTensor;

use crate::backend::CpuAutodiff;
use crate::cpu_gemm::{matmul, View};
use crate::cpu_kernels::{
    flex_values, from_autodiff, softmax_grad_row, softmax_row, to_autodiff, AutodiffFlex,
};

/// The shape of one attention call: `batch` sequences of `seq` tokens, `heads` heads of `head_dim`.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    seq: usize,
    heads: usize,
    head_dim: usize,
}

impl Dims {
    fn inner(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// `softmax(Q K^T / sqrt(head_dim) + bias) V` per head, heads merged: `[batch, seq, heads * head_dim]`.
///
/// `q`, `k`, `v`: `[batch, seq, heads * head_dim]`; `bias`: `[batch, 1, 1, seq]`, a constant (no gradient).
/// One node on `CpuAutodiff` (f32); `Err((q, k, v))` untouched elsewhere.
#[allow(clippy::type_complexity)]
pub fn attention<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    bias: &Tensor<B, 4>,
    heads: usize,
) -> Result<Tensor<B, 3>, (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>)> {
    let [batch, seq, inner] = q.dims();
    let fits = bias.dims() == [batch, 1, 1, seq] && heads > 0 && inner % heads == 0;
    if TypeId::of::<B>() != TypeId::of::<CpuAutodiff>() || q.dtype() != DType::F32 || !fits {
        return Err((q, k, v));
    }
    let bias = flex_values(bias).expect("CpuAutodiff f32 bias");
    let dims = Dims {
        batch,
        seq,
        heads,
        head_dim: inner / heads,
    };
    let y = attention_autodiff(to_autodiff(q), to_autodiff(k), to_autodiff(v), &bias, dims);
    Ok(from_autodiff(y))
}

fn values(t: &FlexTensor, n: usize) -> &[f32] {
    &t.storage::<f32>()[..n]
}

fn tensor(v: Vec<f32>, shape: [usize; 3]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(v, Shape::new(shape)))
}

/// The forward: the merged context `[batch * seq, inner]` and the probabilities `[batch, heads, seq, seq]`.
fn forward(q: &[f32], k: &[f32], v: &[f32], bias: &[f32], d: Dims) -> (Vec<f32>, Vec<f32>) {
    let (seq, hd, inner) = (d.seq, d.head_dim, d.inner());
    let scale = 1.0 / (hd as f32).sqrt();
    let mut context = vec![0.0f32; d.batch * seq * inner];
    let mut probs = vec![0.0f32; d.batch * d.heads * seq * seq];
    for b in 0..d.batch {
        for h in 0..d.heads {
            let at = b * seq * inner + h * hd;
            let p = &mut probs[(b * d.heads + h) * seq * seq..][..seq * seq];
            let (qv, kt) = (View::rows(&q[at..], inner), View::cols(&k[at..], inner));
            matmul(p, seq, qv, kt, [seq, hd, seq], false);
            for row in p.chunks_exact_mut(seq) {
                softmax_row(row, &bias[b * seq..(b + 1) * seq], scale);
            }
            let vv = View::rows(&v[at..], inner);
            matmul(
                &mut context[at..],
                inner,
                View::rows(p, seq),
                vv,
                [seq, seq, hd],
                false,
            );
        }
    }
    (context, probs)
}

/// `(dq, dk, dv)` from the saved inputs and probabilities and the context's gradient `dc`.
fn backward([q, k, v]: [&[f32]; 3], probs: &[f32], dc: &[f32], d: Dims) -> [Vec<f32>; 3] {
    let (seq, hd, inner) = (d.seq, d.head_dim, d.inner());
    let scale = 1.0 / (hd as f32).sqrt();
    let n = d.batch * seq * inner;
    let (mut dq, mut dk, mut dv) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
    let mut ds = vec![0.0f32; seq * seq];
    for b in 0..d.batch {
        for h in 0..d.heads {
            let at = b * seq * inner + h * hd;
            let p = &probs[(b * d.heads + h) * seq * seq..][..seq * seq];
            let dcv = View::rows(&dc[at..], inner);
            matmul(
                &mut dv[at..],
                inner,
                View::cols(p, seq),
                dcv,
                [seq, seq, hd],
                false,
            );
            let vt = View::cols(&v[at..], inner);
            matmul(&mut ds, seq, dcv, vt, [seq, hd, seq], false);
            for (g, y) in ds.chunks_exact_mut(seq).zip(p.chunks_exact(seq)) {
                softmax_grad_row(y, g, scale);
            }
            let kv = View::rows(&k[at..], inner);
            matmul(
                &mut dq[at..],
                inner,
                View::rows(&ds, seq),
                kv,
                [seq, seq, hd],
                false,
            );
            let qv = View::rows(&q[at..], inner);
            matmul(
                &mut dk[at..],
                inner,
                View::cols(&ds, seq),
                qv,
                [seq, seq, hd],
                false,
            );
        }
    }
    [dq, dk, dv]
}

#[derive(Debug)]
struct FusedAttention {
    dims: Dims,
}

impl Backward<Flex, 3> for FusedAttention {
    /// Q, K, V (contiguous) and the probabilities.
    type State = (FlexTensor, FlexTensor, FlexTensor, Vec<f32>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let d = self.dims;
        let n = d.batch * d.seq * d.inner();
        let (q, k, v, probs) = ops.state;
        let dc = grads.consume::<Flex>(&ops.node).to_contiguous();
        let inputs = [values(&q, n), values(&k, n), values(&v, n)];
        let grads_qkv = backward(inputs, &probs, values(&dc, n), d);
        let shape = [d.batch, d.seq, d.inner()];
        for (parent, g) in ops.parents.into_iter().zip(grads_qkv) {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, tensor(g, shape));
            }
        }
    }
}

fn attention_autodiff(
    q: AutodiffFlex,
    k: AutodiffFlex,
    v: AutodiffFlex,
    bias: &[f32],
    d: Dims,
) -> AutodiffFlex {
    let n = d.batch * d.seq * d.inner();
    let (qc, kc, vc) = (
        q.primitive.to_contiguous(),
        k.primitive.to_contiguous(),
        v.primitive.to_contiguous(),
    );
    let (context, probs) = forward(values(&qc, n), values(&kc, n), values(&vc, n), bias, d);
    let y = tensor(context, [d.batch, d.seq, d.inner()]);
    let prep = FusedAttention { dims: d }
        .prepare::<NoCheckpointing>([q.node.clone(), k.node.clone(), v.node.clone()])
        .compute_bound()
        .stateful();
    match prep {
        OpsKind::Tracked(prep) => prep.finish((qc, kc, vc, probs), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::softmax;

    use super::*;

    type Ad = CpuAutodiff;

    /// `[context, dq, dk, dv]` of `sum(attention(q, k, v) * g)` through the node or burn's composition.
    fn run(d: Dims, lens: &[usize], fused: bool) -> [Vec<f32>; 4] {
        let dev = Default::default();
        let (batch, seq, heads, inner) = (d.batch, d.seq, d.heads, d.inner());
        let n = batch * seq * inner;
        let input = |salt: usize| {
            let vals = (0..n)
                .map(|i| ((i * 7 + salt * 13) % 31) as f32 * 0.11 - 1.6)
                .collect::<Vec<f32>>();
            Tensor::<Ad, 3>::from_data(TensorData::new(vals, [batch, seq, inner]), &dev)
                .require_grad()
        };
        let (q, k, v) = (input(1), input(2), input(3));
        let mut bias = vec![0.0f32; batch * seq];
        for (b, &len) in lens.iter().enumerate() {
            bias[b * seq + len..(b + 1) * seq].fill(f32::MIN);
        }
        let bias = Tensor::<Ad, 4>::from_data(TensorData::new(bias, [batch, 1, 1, seq]), &dev);
        let y = if fused {
            attention(q.clone(), k.clone(), v.clone(), &bias, heads)
                .expect("CpuAutodiff takes the node")
        } else {
            let split =
                |t: Tensor<Ad, 3>| t.reshape([batch, seq, heads, d.head_dim]).swap_dims(1, 2);
            let scores = split(q.clone()).matmul(split(k.clone()).swap_dims(2, 3));
            let scores = scores.mul_scalar(1.0 / (d.head_dim as f32).sqrt());
            let probs = softmax(scores + bias.repeat_dim(1, heads).repeat_dim(2, seq), 3);
            probs
                .matmul(split(v.clone()))
                .swap_dims(1, 2)
                .reshape([batch, seq, inner])
        };
        let g = (0..n)
            .map(|i| ((i * 5 % 17) as f32 * 0.4).cos())
            .collect::<Vec<_>>();
        let gt = Tensor::<Ad, 3>::from_data(TensorData::new(g, [batch, seq, inner]), &dev);
        let out = y.clone().into_data().to_vec::<f32>().unwrap();
        let grads = (y * gt).sum().backward();
        let grad = |t: Tensor<Ad, 3>| t.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
        [out, grad(q), grad(k), grad(v)]
    }

    #[test]
    fn fused_attention_equals_burns_composition() {
        let d = Dims {
            batch: 3,
            seq: 9,
            heads: 3,
            head_dim: 4,
        };
        let fused = run(d, &[9, 4, 6], true);
        let composed = run(d, &[9, 4, 6], false);
        for (what, (a, b)) in ["context", "dq", "dk", "dv"]
            .iter()
            .zip(fused.iter().zip(&composed))
        {
            let scale = b.iter().fold(1e-6f32, |m, x| m.max(x.abs()));
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(
                diff / scale < 1e-5,
                "{what} differs by {} (relative)",
                diff / scale
            );
            assert!(b.iter().any(|x| x.abs() > 1e-2), "{what} must not vanish");
        }
    }

    #[test]
    fn fused_attention_gradient_matches_finite_differences() {
        let d = Dims {
            batch: 2,
            seq: 5,
            heads: 2,
            head_dim: 3,
        };
        let lens = [5, 3];
        let [_, dq, ..] = run(d, &lens, true);
        // The loss as a function of one entry of q, through the node's own forward.
        let loss = |i: usize, delta: f32| -> f64 {
            let n = d.batch * d.seq * d.inner();
            let input = |salt: usize| {
                (0..n)
                    .map(|j| ((j * 7 + salt * 13) % 31) as f32 * 0.11 - 1.6)
                    .collect::<Vec<f32>>()
            };
            let mut q = input(1);
            q[i] += delta;
            let mut bias = vec![0.0f32; d.batch * d.seq];
            bias[d.seq + 3..].fill(f32::MIN);
            let (c, _) = forward(&q, &input(2), &input(3), &bias, d);
            c.iter()
                .enumerate()
                .map(|(j, x)| *x as f64 * ((j * 5 % 17) as f64 * 0.4).cos())
                .sum()
        };
        let h = 1e-2f32;
        for i in [0, 4, 11, 17, 26] {
            let want = (loss(i, h) - loss(i, -h)) / (2.0 * h as f64);
            assert!(
                (dq[i] as f64 - want).abs() < 2e-3,
                "dq[{i}]: {} vs {want}",
                dq[i]
            );
        }
    }
}

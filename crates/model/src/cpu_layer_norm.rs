//! LayerNorm under autodiff on the CPU backend as one graph node with a fused backward.
//!
//! Why: burn-autodiff has no LayerNorm op of its own, so over burn-flex it composes one from the backend's
//! default decomposition (mean, subtract, square, mean, add, sqrt, divide, scale, shift), each recorded with
//! its own backward step: about twenty passes over the activations per LayerNorm and training step, with
//! broadcasts walked element by element, on one thread. Here the forward is burn-flex's fused `layer_norm`
//! (the very kernel inference runs, so training and inference agree), and the backward is two passes per
//! row for `dx`, `dgamma` and `dbeta` together, in row order. It runs on the calling thread: the CPU
//! stages keep one batch in flight per core already, and splitting it across threads as well was measured
//! slower (29 vs 34.7 distillation pairs/s on 2 cores).
//!
//! Maths, per row with `xhat = (x - mean) * rstd`, `rstd = 1 / sqrt(var + eps)` (population variance):
//! `dgamma += dy * xhat`, `dbeta += dy`, `g = dy * gamma`,
//! `dx = rstd * (g - mean(g) - xhat * mean(g * xhat))`.

use std::any::TypeId;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Flex;
use burn::nn::LayerNorm;
use burn::tensor::backend::Backend;
use burn::tensor::ops::ModuleOps;
use burn::tensor::{DType, Shape, Tensor};
use burn_flex::FlexTensor;

use crate::backend::CpuAutodiff;
use crate::cpu_kernels::{from_autodiff, to_autodiff, AutodiffFlex};

/// `ln(x)` over the last dimension; one fused node on the CPU backend under autodiff (f32, with a bias),
/// burn's LayerNorm everywhere else (on plain burn-flex that already is the fused forward kernel).
pub fn layer_norm<B: Backend>(ln: &LayerNorm<B>, x: Tensor<B, 3>, eps: f64) -> Tensor<B, 3> {
    let Some(beta) = &ln.beta else {
        return ln.forward(x);
    };
    if TypeId::of::<B>() != TypeId::of::<CpuAutodiff>() || x.dtype() != DType::F32 {
        return ln.forward(x);
    }
    let y = layer_norm_autodiff(
        to_autodiff(x),
        to_autodiff(ln.gamma.val()),
        to_autodiff(beta.val()),
        eps,
    );
    from_autodiff(y)
}

#[derive(Debug)]
struct FusedLayerNorm {
    eps: f64,
}

impl Backward<Flex, 3> for FusedLayerNorm {
    /// The input and gamma (the statistics are recomputed from the input: one cheap pass per row).
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, gamma) = ops.state;
        let dy = grads.consume::<Flex>(&ops.node);
        let [px, pg, pb] = ops.parents;
        let (dx, dgamma, dbeta) = backward_flex(&x, &gamma, &dy, self.eps as f32);
        for (parent, grad) in [(px, dx), (pg, dgamma), (pb, dbeta)] {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

fn layer_norm_autodiff(
    x: AutodiffFlex,
    gamma: AutodiffFlex,
    beta: AutodiffFlex,
    eps: f64,
) -> AutodiffFlex {
    let y = Flex::layer_norm(
        x.primitive.clone(),
        gamma.primitive.clone(),
        Some(beta.primitive.clone()),
        eps,
    );
    let prep = FusedLayerNorm { eps }
        .prepare::<NoCheckpointing>([x.node.clone(), gamma.node.clone(), beta.node.clone()])
        .compute_bound()
        .stateful();
    match prep {
        OpsKind::Tracked(prep) => prep.finish((x.primitive, gamma.primitive), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// `(dx, dgamma, dbeta)` from the input `x` `[.., d]`, `gamma` `[d]` and the output gradient `dy`.
fn backward_flex(
    x: &FlexTensor,
    gamma: &FlexTensor,
    dy: &FlexTensor,
    eps: f32,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let shape = x.layout().shape().clone();
    let d = *shape.last().expect("LayerNorm input has a last dimension");
    let n = shape.num_elements();
    let (x, gamma, dy) = (x.to_contiguous(), gamma.to_contiguous(), dy.to_contiguous());
    let (xs, gs, dys) = (
        &x.storage::<f32>()[..n],
        &gamma.storage::<f32>()[..d],
        &dy.storage::<f32>()[..n],
    );
    let (mut dx, mut dgamma, mut dbeta) = (vec![0.0f32; n], vec![0.0f32; d], vec![0.0f32; d]);
    rows(xs, dys, gs, eps, &mut dx, &mut dgamma, &mut dbeta);
    let flex = |v: Vec<f32>, s: Shape| FlexTensor::from_data(burn::tensor::TensorData::new(v, s));
    (
        flex(dx, shape),
        flex(dgamma, Shape::new([d])),
        flex(dbeta, Shape::new([d])),
    )
}

/// Every row: `dx` written, the rows' `dgamma`/`dbeta` terms added to `dg`/`db` in row order.
fn rows(
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    eps: f32,
    dx: &mut [f32],
    dg: &mut [f32],
    db: &mut [f32],
) {
    let d = gamma.len();
    for ((x, dy), dx) in x
        .chunks_exact(d)
        .zip(dy.chunks_exact(d))
        .zip(dx.chunks_exact_mut(d))
    {
        let mean = x.iter().sum::<f32>() / d as f32;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let rstd = 1.0 / (var + eps).sqrt();
        let (mut a, mut b) = (0.0f32, 0.0f32);
        for j in 0..d {
            let xhat = (x[j] - mean) * rstd;
            let g = dy[j] * gamma[j];
            a += g;
            b += g * xhat;
            dg[j] += dy[j] * xhat;
            db[j] += dy[j];
        }
        let (a, b) = (a / d as f32, b / d as f32);
        for j in 0..d {
            let xhat = (x[j] - mean) * rstd;
            dx[j] = rstd * (dy[j] * gamma[j] - a - xhat * b);
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::LayerNormConfig;
    use burn::tensor::TensorData;

    use super::*;

    type Ad = CpuAutodiff;

    /// Output and the gradients of x, gamma, beta of `sum(ln(x) * w)`, through the fused node or (with
    /// `fused` false) burn's own composition of the same LayerNorm.
    fn run(x: &[f32], w: &[f32], shape: [usize; 3], fused: bool) -> [Vec<f32>; 4] {
        let dev = Default::default();
        let d = shape[2];
        let mut ln = LayerNormConfig::new(d).with_epsilon(1e-12).init::<Ad>(&dev);
        let vals = |f: fn(usize) -> f32| {
            Tensor::<Ad, 1>::from_data(
                TensorData::new((0..d).map(f).collect::<Vec<_>>(), [d]),
                &dev,
            )
            .require_grad()
        };
        ln.gamma = burn::module::Param::from_tensor(vals(|j| 1.0 + 0.1 * (j as f32).sin()));
        ln.beta = Some(burn::module::Param::from_tensor(vals(|j| {
            0.05 * (j as f32).cos()
        })));
        let xt =
            Tensor::<Ad, 3>::from_data(TensorData::new(x.to_vec(), shape), &dev).require_grad();
        let wt = Tensor::<Ad, 3>::from_data(TensorData::new(w.to_vec(), shape), &dev);
        let y = if fused {
            layer_norm(&ln, xt.clone(), 1e-12)
        } else {
            ln.forward(xt.clone())
        };
        let out = y.clone().into_data().to_vec::<f32>().unwrap();
        let g = (y * wt).sum().backward();
        let grad = |t: Tensor<Ad, 3>| t.grad(&g).unwrap().into_data().to_vec::<f32>().unwrap();
        let grad1 = |t: Tensor<Ad, 1>| t.grad(&g).unwrap().into_data().to_vec::<f32>().unwrap();
        [
            out,
            grad(xt),
            grad1(ln.gamma.val()),
            grad1(ln.beta.as_ref().unwrap().val()),
        ]
    }

    fn inputs(shape: [usize; 3]) -> (Vec<f32>, Vec<f32>) {
        let n = shape.iter().product();
        let x = (0..n)
            .map(|i| 3.0 * ((i * 7 % 23) as f32 * 0.41).sin() + 0.5)
            .collect();
        let w = (0..n).map(|i| ((i * 5 % 17) as f32 * 0.77).cos()).collect();
        (x, w)
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn fused_layer_norm_equals_burns_composition() {
        let shape = [3, 50, 24];
        let (x, w) = inputs(shape);
        let fused = run(&x, &w, shape, true);
        let composed = run(&x, &w, shape, false);
        for (what, (a, b)) in ["y", "dx", "dgamma", "dbeta"]
            .iter()
            .zip(fused.iter().zip(&composed))
        {
            let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            let d = max_diff(a, b) / scale;
            assert!(d < 2e-5, "{what} differs by {d} (relative)");
        }
        assert!(
            fused[1].iter().any(|v| v.abs() > 0.05),
            "gradients must not vanish"
        );
    }

    #[test]
    fn fused_layer_norm_gradient_matches_finite_differences() {
        let shape = [2, 3, 16];
        let (x, w) = inputs(shape);
        let [_, dx, _, _] = run(&x, &w, shape, true);
        let loss = |x: &[f32]| -> f64 {
            let [y, ..] = run(x, &w, shape, true);
            y.iter()
                .zip(&w)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum()
        };
        let h = 1e-2f32;
        for i in [0, 5, 17, 40, 95] {
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i] += h;
            down[i] -= h;
            let want = (loss(&up) - loss(&down)) / (2.0 * h as f64);
            assert!(
                (dx[i] as f64 - want).abs() < 2e-3,
                "dx[{i}]: {} vs {want}",
                dx[i]
            );
        }
    }
}

//! Linear under autodiff on the CPU backend as one graph node whose backward is two direct gemm calls.
//!
//! Why: composed, burn-autodiff records a matmul and a broadcast bias add per Linear. Its matmul backward
//! multiplies by `W^T` and `x^T` taken as transposed views, which burn-flex copies to contiguous buffers
//! first (the strided copies of a training step's profile, BENCHMARKS.md), and the bias gradient is a
//! reduction of its own. Here the forward is one gemm plus one bias pass, and the backward reads the
//! transposes in place: `dx = dy W^T`, `dW = x^T dy`, `db` the column sums of `dy` in row order (so a run is
//! repeatable bit for bit). Each gradient is computed only when its input is tracked (importance freezes
//! the weights and only needs `dx`). The maths is the composed ops'; the tests compare the two and check
//! the gradients against finite differences. On CPUs with AMX the forward and `dx` products run on its
//! tiles ([`crate::cpu_amx`], f32-accurate; the weight packed once per step for both, cached while the
//! weight tensor lives); `dW` stays on gemm, which reads `x^T` in place.

use std::any::TypeId;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Flex;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Shape, Tensor, TensorData};
use burn_flex::FlexTensor;

use crate::backend::CpuAutodiff;
use crate::cpu_amx::{self, Lhs};
use crate::cpu_gemm::{matmul, View};
use crate::cpu_kernels::{from_autodiff, to_autodiff, AutodiffFlex};

/// `x @ W + b` for `x` `[rows, in]`: one fused node on `CpuAutodiff` (f32, with a bias), `Err(x)` elsewhere.
pub fn linear<B: Backend>(lin: &Linear<B>, x: Tensor<B, 2>) -> Result<Tensor<B, 2>, Tensor<B, 2>> {
    let Some(bias) = &lin.bias else {
        return Err(x);
    };
    if TypeId::of::<B>() != TypeId::of::<CpuAutodiff>()
        || x.dtype() != DType::F32
        || lin.weight.val().dtype() != DType::F32
    {
        return Err(x);
    }
    let y = linear_autodiff(
        to_autodiff(x),
        to_autodiff(lin.weight.val()),
        to_autodiff(bias.val()),
    );
    Ok(from_autodiff(y))
}

#[derive(Debug)]
struct FusedLinear;

impl Backward<Flex, 3> for FusedLinear {
    /// The input and the weight, both contiguous.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w) = ops.state;
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let [px, pw, pb] = ops.parents;
        let [d_in, d_out] = dims2(&w);
        let rows = dims2(&x)[0];
        let (xs, ws) = (
            &x.storage::<f32>()[..rows * d_in],
            &w.storage::<f32>()[..d_in * d_out],
        );
        let dys = &dy.storage::<f32>()[..rows * d_out];
        let amx = cpu_amx::available();
        if let Some(node) = px {
            let mut dx = vec![0.0f32; rows * d_in];
            if amx {
                let wt = cpu_amx::packed_tensor(&w, true);
                cpu_amx::matmul(&mut dx, d_in, Lhs(dys, d_out), &wt, rows, true);
            } else {
                let (dy_v, wt) = (View::rows(dys, d_out), View::cols(ws, d_out));
                matmul(&mut dx, d_in, dy_v, wt, [rows, d_out, d_in], true);
            }
            grads.register::<Flex>(node.id, tensor(dx, [rows, d_in]));
        }
        if let Some(node) = pw {
            let mut dw = vec![0.0f32; d_in * d_out];
            // gemm reads x^T in place; on AMX both operands would need packing for one use (measured:
            // no faster).
            let (xt, dy_v) = (View::cols(xs, d_in), View::rows(dys, d_out));
            matmul(&mut dw, d_out, xt, dy_v, [d_in, rows, d_out], true);
            grads.register::<Flex>(node.id, tensor(dw, [d_in, d_out]));
        }
        if let Some(node) = pb {
            let mut db = vec![0.0f32; d_out];
            for row in dys.chunks_exact(d_out) {
                db.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
            grads.register::<Flex>(node.id, tensor(db, [d_out]));
        }
    }
}

fn dims2(t: &FlexTensor) -> [usize; 2] {
    let s = t.layout().shape();
    [s[0], s[1]]
}

fn tensor<const D: usize>(v: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(v, Shape::new(shape)))
}

/// The forward: `y = x @ W` by gemm, then `+ b` row by row (the composed ops' order).
fn forward_flex(x: &FlexTensor, w: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    let [d_in, d_out] = dims2(w);
    let rows = dims2(x)[0];
    let mut y = vec![0.0f32; rows * d_out];
    let (xs, ws) = (
        &x.storage::<f32>()[..rows * d_in],
        &w.storage::<f32>()[..d_in * d_out],
    );
    if cpu_amx::available() {
        let wp = cpu_amx::packed_tensor(w, false);
        cpu_amx::matmul(&mut y, d_out, Lhs(xs, d_in), &wp, rows, true);
    } else {
        let (xs, ws) = (View::rows(xs, d_in), View::rows(ws, d_out));
        matmul(&mut y, d_out, xs, ws, [rows, d_in, d_out], true);
    }
    let bias = &b.storage::<f32>()[..d_out];
    for row in y.chunks_exact_mut(d_out) {
        row.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
    }
    tensor(y, [rows, d_out])
}

fn linear_autodiff(x: AutodiffFlex, w: AutodiffFlex, b: AutodiffFlex) -> AutodiffFlex {
    let (xc, wc, bc) = (
        x.primitive.to_contiguous(),
        w.primitive.to_contiguous(),
        b.primitive.to_contiguous(),
    );
    let y = forward_flex(&xc, &wc, &bc);
    let prep = FusedLinear
        .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone(), b.node.clone()])
        .compute_bound()
        .stateful();
    match prep {
        OpsKind::Tracked(prep) => prep.finish((xc, wc), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;

    use super::*;

    type Ad = CpuAutodiff;

    /// `[y, dx, dW, db]` of `sum(linear(x) * g)`, through the fused node or burn's composition.
    fn run(x: &[f32], [rows, d_in, d_out]: [usize; 3], fused: bool) -> [Vec<f32>; 4] {
        let dev = Default::default();
        let vals = |n: usize, f: &dyn Fn(usize) -> f32| (0..n).map(f).collect::<Vec<f32>>();
        let w = vals(d_in * d_out, &|i| ((i * 7 % 19) as f32 * 0.37).sin() * 0.5);
        let b = vals(d_out, &|i| 0.1 * (i as f32).cos());
        let g = vals(rows * d_out, &|i| ((i * 5 % 13) as f32 * 0.61).cos());
        let lin = Linear::<Ad> {
            weight: Param::from_tensor(
                Tensor::from_data(TensorData::new(w, [d_in, d_out]), &dev).require_grad(),
            ),
            bias: Some(Param::from_tensor(
                Tensor::from_data(TensorData::new(b, [d_out]), &dev).require_grad(),
            )),
        };
        let xt = Tensor::<Ad, 2>::from_data(TensorData::new(x.to_vec(), [rows, d_in]), &dev)
            .require_grad();
        let y = if fused {
            linear(&lin, xt.clone()).expect("CpuAutodiff takes the fused node")
        } else {
            lin.forward(xt.clone())
        };
        let out = y.clone().into_data().to_vec::<f32>().unwrap();
        let gt = Tensor::<Ad, 2>::from_data(TensorData::new(g, [rows, d_out]), &dev);
        let grads = (y * gt).sum().backward();
        let grad = |t: Tensor<Ad, 2>| t.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
        let db = lin.bias.as_ref().unwrap().val().grad(&grads).unwrap();
        [
            out,
            grad(xt),
            grad(lin.weight.val()),
            db.into_data().to_vec::<f32>().unwrap(),
        ]
    }

    fn input(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| 2.0 * ((i * 11 % 29) as f32 * 0.23).sin())
            .collect()
    }

    #[test]
    fn fused_linear_equals_burns_composition() {
        // 70 x 40 x 90 is above the size where gemm splits the work across threads.
        for shape in [[5, 3, 4], [70, 40, 90], [300, 64, 128]] {
            let x = input(shape[0] * shape[1]);
            let fused = run(&x, shape, true);
            let composed = run(&x, shape, false);
            for (what, (a, b)) in ["y", "dx", "dW", "db"]
                .iter()
                .zip(fused.iter().zip(&composed))
            {
                let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
                let d = a
                    .iter()
                    .zip(b)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0, f32::max)
                    / scale;
                assert!(d < 1e-5, "{shape:?} {what} differs by {d} (relative)");
            }
        }
    }

    #[test]
    fn fused_linear_gradient_matches_finite_differences() {
        let shape = [4, 6, 5];
        let x = input(24);
        let [_, dx, ..] = run(&x, shape, true);
        let loss = |x: &[f32]| -> f64 {
            let [y, ..] = run(x, shape, true);
            let g = (0..y.len()).map(|i| ((i * 5 % 13) as f32 * 0.61).cos());
            y.iter().zip(g).map(|(a, b)| *a as f64 * b as f64).sum()
        };
        let h = 1e-2f32;
        for i in [0, 7, 13, 23] {
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i] += h;
            down[i] -= h;
            let want = (loss(&up) - loss(&down)) / (2.0 * h as f64);
            assert!(
                (dx[i] as f64 - want).abs() < 1e-3,
                "dx[{i}]: {} vs {want}",
                dx[i]
            );
        }
    }
}

//! Fused kernels for the CPU backend (burn-flex): exact-erf GELU and the attention softmax, forward and
//! backward.
//!
//! burn-flex evaluates GELU with a scalar libm `erff` per element (about a sixth of MiniLM's CPU time) and
//! builds the attention softmax from five passes (scale, bias add, max, exp, normalise), its broadcast ones
//! walking elements one by one; under autodiff each of those passes also records a backward step. Here each
//! is one in-place pass whose maths LLVM vectorises, compiled for AVX-512 or AVX2 when the CPU has them
//! (checked at run time), and under autodiff one graph node with a fused backward. Only `Cpu` and
//! `CpuAutodiff` take these paths; every other backend keeps burn's ops.
//!
//! Accuracy: GELU's normal CDF uses Abramowitz & Stegun 7.1.26 for erfc (absolute error <= 1.5e-7) and `exp`
//! is a degree-7 polynomial after range reduction (relative error ~1e-7); both sit far below the 1e-4
//! tolerance of the transformers parity tests and are checked against f64 references in the tests below.

use std::any::{Any, TypeId};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::Flex;
use burn::tensor::backend::{Backend, BackendTypes};
use burn::tensor::ops::ActivationOps;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_flex::FlexTensor;

use crate::backend::{Cpu, CpuAutodiff};

/// burn-autodiff's tensor over burn-flex (its type is not exported under a path, only as the primitive).
pub(crate) type AutodiffFlex = <CpuAutodiff as BackendTypes>::FloatTensorPrimitive;

/// `t`'s primitive as burn-autodiff's tensor over burn-flex; `B` must be `CpuAutodiff` (panics otherwise).
pub(crate) fn to_autodiff<B: Backend, const D: usize>(t: Tensor<B, D>) -> AutodiffFlex {
    let prim: Box<dyn Any> = Box::new(t.into_primitive().tensor());
    *prim.downcast::<AutodiffFlex>().expect("B is CpuAutodiff")
}

/// The inverse of [`to_autodiff`]: a node's output back as a `Tensor<B, D>`.
pub(crate) fn from_autodiff<B: Backend, const D: usize>(y: AutodiffFlex) -> Tensor<B, D> {
    let out: Box<dyn Any> = Box::new(y);
    let out = *out
        .downcast::<B::FloatTensorPrimitive>()
        .expect("B is CpuAutodiff");
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// Whether `B` takes the fused kernels (the CPU backend, with or without autodiff).
pub fn fused<B: Backend>() -> bool {
    let id = TypeId::of::<B>();
    id == TypeId::of::<Cpu>() || id == TypeId::of::<CpuAutodiff>()
}

/// Exact (erf) GELU: fused on the CPU backends, burn's op elsewhere.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let x = match map_primitive::<B, FlexTensor, D>(x, gelu_flex) {
        Ok(y) => return y,
        Err(x) => x,
    };
    match map_primitive::<B, AutodiffFlex, D>(x, gelu_autodiff) {
        Ok(y) => y,
        Err(x) => burn::tensor::activation::gelu(x),
    }
}

/// `softmax(scores * scale + bias)` over the last dimension on the CPU backends.
///
/// `scores`: `[batch, heads, q, k]`; `bias`: `[batch, 1, 1 or q, k]`, an additive padding mask treated as a
/// constant (no gradient flows to it). Returns `Err(scores)` untouched on other backends, where the caller
/// composes burn's ops.
pub fn masked_softmax<B: Backend>(
    scores: Tensor<B, 4>,
    scale: f32,
    bias: &Tensor<B, 4>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let Some(bias_flex) = flex_values(bias) else {
        return Err(scores);
    };
    let [batch, heads, q, k] = scores.dims();
    let [bb, bh, bq, bk] = bias.dims();
    assert!(
        bb == batch && bh == 1 && (bq == 1 || bq == q) && bk == k,
        "masked_softmax: bias {:?} does not broadcast to scores {:?}",
        bias.dims(),
        scores.dims()
    );
    let rows = RowBias {
        heads,
        q,
        bias_rows: bq,
        bias: &bias_flex,
    };
    let scores = match map_primitive::<B, FlexTensor, 4>(scores, |s| softmax_flex(s, scale, &rows))
    {
        Ok(y) => return Ok(y),
        Err(s) => s,
    };
    map_primitive::<B, AutodiffFlex, 4>(scores, |s| softmax_autodiff(s, scale, &rows))
}

/// Where each score row finds its bias row.
struct RowBias<'a> {
    heads: usize,
    q: usize,
    bias_rows: usize,
    bias: &'a [f32],
}

impl RowBias<'_> {
    fn row(&self, r: usize, k: usize) -> &[f32] {
        let (b, i) = (r / (self.heads * self.q), r % self.q);
        let br = b * self.bias_rows + if self.bias_rows == 1 { 0 } else { i };
        &self.bias[br * k..(br + 1) * k]
    }
}

/// Applies `f` to the primitive of `t` when `B`'s float primitive is `P`; `Err(t)` unchanged otherwise.
pub(crate) fn map_primitive<B: Backend, P: 'static, const D: usize>(
    t: Tensor<B, D>,
    f: impl FnOnce(P) -> P,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    if TypeId::of::<B::FloatTensorPrimitive>() != TypeId::of::<P>() || t.dtype() != DType::F32 {
        return Err(t);
    }
    let prim: Box<dyn Any> = Box::new(t.into_primitive().tensor());
    let out: Box<dyn Any> = Box::new(f(*prim.downcast::<P>().expect("type checked above")));
    let out = *out
        .downcast::<B::FloatTensorPrimitive>()
        .expect("type checked above");
    Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
}

/// The values of an f32 tensor of either CPU backend in row-major order (read only).
pub(crate) fn flex_values<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Option<Vec<f32>> {
    if !fused::<B>() || t.dtype() != DType::F32 {
        return None;
    }
    let n = t.shape().num_elements();
    let prim: Box<dyn Any> = Box::new(t.clone().into_primitive().tensor());
    let flex = match prim.downcast_ref::<FlexTensor>() {
        Some(f) => f.to_contiguous(),
        None => prim
            .downcast_ref::<AutodiffFlex>()?
            .primitive
            .to_contiguous(),
    };
    Some(flex.storage::<f32>()[..n].to_vec())
}

/// Contiguous, uniquely owned f32 storage of `t` (copied only when `t` is a strided view or shared).
pub(crate) fn contiguous_mut(t: &mut FlexTensor) -> &mut [f32] {
    let n = t.layout().num_elements();
    *t = t.to_contiguous();
    &mut t.storage_mut::<f32>()[..n]
}

fn gelu_flex(mut x: FlexTensor) -> FlexTensor {
    if x.dtype() != DType::F32 {
        return Flex::gelu(x);
    }
    gelu_slice(contiguous_mut(&mut x));
    x
}

/// `grad * GELU'(x)`, in place on `grad`.
fn gelu_grad_flex(x: &FlexTensor, mut grad: FlexTensor) -> FlexTensor {
    let x = x.to_contiguous();
    let n = x.layout().num_elements();
    gelu_grad_slice(&x.storage::<f32>()[..n], contiguous_mut(&mut grad));
    grad
}

fn softmax_flex(mut scores: FlexTensor, scale: f32, rows: &RowBias) -> FlexTensor {
    let k = *scores.layout().shape().last().expect("4-D scores");
    for (r, row) in contiguous_mut(&mut scores).chunks_exact_mut(k).enumerate() {
        softmax_row(row, rows.row(r, k), scale);
    }
    scores
}

/// Gradient of `softmax(s * scale + bias)` w.r.t. `s` from the output `y`:
/// `scale * y * (g - sum(g * y))` per row, in place on `grad`.
fn softmax_grad_flex(y: &FlexTensor, mut grad: FlexTensor, scale: f32) -> FlexTensor {
    let y = y.to_contiguous();
    let k = *y.layout().shape().last().expect("4-D probabilities");
    let n = y.layout().num_elements();
    let ys = &y.storage::<f32>()[..n];
    for (g, yr) in contiguous_mut(&mut grad)
        .chunks_exact_mut(k)
        .zip(ys.chunks_exact(k))
    {
        softmax_grad_row(yr, g, scale);
    }
    grad
}

/// GELU as one autodiff node: the input is kept for the fused backward.
#[derive(Debug)]
struct FusedGelu;

impl Backward<Flex, 1> for FusedGelu {
    type State = FlexTensor;

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            gelu_grad_flex(&x, grad)
        });
    }
}

fn gelu_autodiff(x: AutodiffFlex) -> AutodiffFlex {
    match FusedGelu
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let input = x.primitive.clone();
            prep.finish(input, gelu_flex(x.primitive))
        }
        OpsKind::UnTracked(prep) => prep.finish(gelu_flex(x.primitive)),
    }
}

/// The masked softmax as one autodiff node: its output is kept for the fused backward.
#[derive(Debug)]
struct FusedSoftmax {
    scale: f32,
}

impl Backward<Flex, 1> for FusedSoftmax {
    type State = FlexTensor;

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let y = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            softmax_grad_flex(&y, grad, self.scale)
        });
    }
}

fn softmax_autodiff(s: AutodiffFlex, scale: f32, rows: &RowBias) -> AutodiffFlex {
    let prep = FusedSoftmax { scale }
        .prepare::<NoCheckpointing>([s.node.clone()])
        .compute_bound()
        .stateful();
    match prep {
        OpsKind::Tracked(prep) => {
            let y = softmax_flex(s.primitive, scale, rows);
            prep.finish(y.clone(), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(softmax_flex(s.primitive, scale, rows)),
    }
}

/// Compiles `$body` (an `#[inline(always)]` fn over a slice) three times: AVX-512, AVX2+FMA, and portable,
/// and picks the best the CPU supports at run time.
macro_rules! dispatch {
    ($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) => $body:ident) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the features this copy was compiled for were detected on this CPU.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

dispatch!(
    /// `x * Phi(x)` in place (exact GELU up to ~1e-7).
    gelu_slice(xs: &mut [f32]) => gelu_body
);

dispatch!(
    /// `grad * GELU'(x)` in place on `grad`.
    gelu_grad_slice(xs: &[f32], grad: &mut [f32]) => gelu_grad_body
);

dispatch!(
    /// `softmax(row * scale + bias)` in place.
    softmax_row(row: &mut [f32], bias: &[f32], scale: f32) => softmax_body
);

dispatch!(
    /// `scale * y * (g - sum(g * y))` in place on `g` (one softmax row's backward).
    softmax_grad_row(y: &[f32], g: &mut [f32], scale: f32) => softmax_grad_body
);

dispatch!(
    /// `x = GELU(x + bias)` in place, `xs` being rows of `bias.len()` (the FFN's bias add and activation
    /// in one pass, for [`crate::cpu_encoder`]).
    bias_gelu_rows(xs: &mut [f32], bias: &[f32]) => bias_gelu_body
);

dispatch!(
    /// `out[r, j] += bias[j]` in place for the first `bias.len()` columns of rows `row_stride` apart (a
    /// Linear's bias added to its block of a wider buffer, for [`crate::cpu_encoder`]).
    bias_rows(out: &mut [f32], row_stride: usize, bias: &[f32]) => bias_rows_body
);

dispatch!(
    /// `out = (out + bias) + residual` in place, rows of `bias.len()` (a Linear's bias and the residual
    /// connection in one pass, in the order the composed ops add them).
    bias_residual_rows(out: &mut [f32], bias: &[f32], residual: &[f32]) => bias_residual_body
);

#[inline(always)]
fn bias_gelu_body(xs: &mut [f32], bias: &[f32]) {
    for row in xs.chunks_exact_mut(bias.len()) {
        let mut chunks = row.chunks_exact_mut(LANES);
        let mut bias_chunks = bias.chunks_exact(LANES);
        for (c, bc) in (&mut chunks).zip(&mut bias_chunks) {
            for j in 0..LANES {
                c[j] = gelu_scalar(c[j] + bc[j]);
            }
        }
        // A pruned FFN's width need not be a multiple of the lanes: its tail through a full-width buffer.
        let tail = chunks.into_remainder();
        let mut buf = [0.0f32; LANES];
        for ((v, x), b) in buf.iter_mut().zip(tail.iter()).zip(bias_chunks.remainder()) {
            *v = *x + b;
        }
        for v in buf.iter_mut() {
            *v = gelu_scalar(*v);
        }
        tail.iter_mut().zip(buf).for_each(|(x, v)| *x = v);
    }
}

#[inline(always)]
fn bias_rows_body(out: &mut [f32], row_stride: usize, bias: &[f32]) {
    for row in out.chunks_mut(row_stride) {
        for (o, b) in row.iter_mut().zip(bias) {
            *o += b;
        }
    }
}

#[inline(always)]
fn bias_residual_body(out: &mut [f32], bias: &[f32], residual: &[f32]) {
    let d = bias.len();
    for (row, res) in out.chunks_exact_mut(d).zip(residual.chunks_exact(d)) {
        for ((o, b), r) in row.iter_mut().zip(bias).zip(res) {
            *o = (*o + b) + r;
        }
    }
}

#[inline(always)]
fn gelu_body(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = gelu_scalar(*x);
    }
}

#[inline(always)]
fn gelu_grad_body(xs: &[f32], grad: &mut [f32]) {
    for (g, x) in grad.iter_mut().zip(xs) {
        let (phi, pdf) = normal_cdf_pdf(*x);
        *g *= phi + *x * pdf;
    }
}

#[inline(always)]
fn softmax_grad_body(y: &[f32], g: &mut [f32], scale: f32) {
    let y = &y[..g.len()];
    let mut dot = [0.0f32; LANES];
    let mut gc = g.chunks_exact(LANES);
    let mut yc = y.chunks_exact(LANES);
    for (a, b) in (&mut gc).zip(&mut yc) {
        for j in 0..LANES {
            dot[j] += a[j] * b[j];
        }
    }
    let mut d: f32 = dot.iter().sum();
    for (a, b) in gc.remainder().iter().zip(yc.remainder()) {
        d += a * b;
    }
    for (gi, yi) in g.iter_mut().zip(y) {
        *gi = scale * *yi * (*gi - d);
    }
}

/// Lanes of the max/sum reductions: independent accumulators let LLVM keep them in vector registers
/// (a single float accumulator would force the strict sequential order).
pub(crate) const LANES: usize = 16;

#[inline(always)]
fn softmax_body(row: &mut [f32], bias: &[f32], scale: f32) {
    let bias = &bias[..row.len()];
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    let mut bias_chunks = bias.chunks_exact(LANES);
    for (c, bc) in (&mut chunks).zip(&mut bias_chunks) {
        for j in 0..LANES {
            c[j] = c[j] * scale + bc[j];
            max[j] = max[j].max(c[j]);
        }
    }
    // The tail through a full-width buffer (-inf past its end), so it stays in vector registers too.
    let tail = chunks.into_remainder();
    let mut buf = [f32::NEG_INFINITY; LANES];
    for ((v, x), b) in buf.iter_mut().zip(tail.iter()).zip(bias_chunks.remainder()) {
        *v = *x * scale + b;
    }
    for j in 0..LANES {
        max[j] = max[j].max(buf[j]);
    }
    tail.iter_mut().zip(buf).for_each(|(x, v)| *x = v);
    let m = max.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for j in 0..LANES {
            c[j] = exp_nonpositive(c[j] - m);
            sum[j] += c[j];
        }
    }
    let mut s: f32 = sum.iter().sum();
    // The tail's exps in a full-width buffer, so they too run in vector registers (as scalar code they
    // cost as much as the rest of a short row); each value and the order of the sum stay as before.
    let tail = chunks.into_remainder();
    let mut buf = [0.0f32; LANES];
    for (b, x) in buf.iter_mut().zip(tail.iter()) {
        *b = *x - m;
    }
    for b in buf.iter_mut() {
        *b = exp_nonpositive(*b);
    }
    for (x, b) in tail.iter_mut().zip(buf) {
        *x = b;
        s += b;
    }
    let inv = 1.0 / s;
    for x in row.iter_mut() {
        *x *= inv;
    }
}

/// `x * Phi(x)`.
#[inline(always)]
fn gelu_scalar(x: f32) -> f32 {
    x * normal_cdf_pdf(x).0
}

/// The standard normal CDF `Phi(x)` and density `phi(x)`. `Phi(-|x|) = erfc(|x| / sqrt 2) / 2` comes from
/// Abramowitz & Stegun 7.1.26; computing this small tail directly (and `1 - tail` for positive x) avoids
/// cancellation for negative inputs. Its `exp(-x^2 / 2)` is the density's too.
#[inline(always)]
fn normal_cdf_pdf(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152,
        1.061_405_4,
    ];
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let e = exp_nonpositive(-z * z);
    let tail = 0.5 * poly * e;
    let phi = if x < 0.0 { tail } else { 1.0 - tail };
    (phi, INV_SQRT_2PI * e)
}

/// `e^y` for `y <= 0` (NaN stays NaN): `2^n * e^r` with `|r| <= ln2 / 2` and a degree-7 Taylor
/// polynomial (truncation error < 1e-8 relative); 0 below -87, where f32 would go subnormal.
#[inline(always)]
pub(crate) fn exp_nonpositive(y: f32) -> f32 {
    // Cody-Waite split of ln 2: the high part has few mantissa bits, so n * LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer in the default rounding mode.
    const ROUND: f32 = 12_582_912.0;
    // A comparison, not `max`: NaN must pass through (a diverged run has to show up as NaN, not as 0).
    let yc = if y < -87.0 { -87.0 } else { y };
    let t = yc * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = (yc - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // 2^n from the integer `t` holds in its low mantissa bits: integer ops only, so the loop stays in
    // vector registers (an `as i32` cast saturates, which LLVM does lane by lane with scalar code).
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    if y < -87.0 {
        0.0
    } else {
        p * scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn gelu_reference(x: f64) -> f64 {
        0.5 * x * (1.0 + erf_f64(x / std::f64::consts::SQRT_2))
    }

    /// erf in f64, independent of any f32 approximation: its Taylor series for |x| <= 3 and erfc's
    /// continued fraction beyond (both accurate far below 1e-12 there).
    fn erf_f64(x: f64) -> f64 {
        if x.abs() <= 3.0 {
            let mut term = x;
            let mut sum = x;
            let x2 = x * x;
            for n in 1..200 {
                term *= -x2 / n as f64;
                let add = term / (2 * n + 1) as f64;
                sum += add;
                if add.abs() < 1e-17 {
                    break;
                }
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let a = x.abs();
            let mut f = 0.0;
            for k in (1..120).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f);
            (1.0 - erfc) * x.signum()
        }
    }

    #[test]
    fn reference_erf_is_right() {
        // Known values of erf.
        assert!((erf_f64(0.5) - 0.520_499_877_813_046_5).abs() < 1e-13);
        assert!((erf_f64(-1.0) + 0.842_700_792_949_714_9).abs() < 1e-13);
        assert!((erf_f64(3.5) - 0.999_999_256_901_627_7).abs() < 1e-13);
    }

    #[test]
    fn exp_matches_std_within_2e_7_relative() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let y = -90.0 * i as f32 / 200_000.0;
            let got = exp_nonpositive(y) as f64;
            let want = (y as f64).exp();
            if y >= -87.0 {
                worst = worst.max(((got - want) / want).abs());
            } else {
                assert_eq!(got, 0.0);
            }
        }
        assert!(worst < 2e-7, "worst relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
        let mut row = [0.5, f32::NAN, 1.0];
        softmax_row(&mut row, &[0.0; 3], 1.0);
        assert!(
            row.iter().all(|v| v.is_nan()),
            "NaN scores must not turn into probabilities"
        );
        let mut g = [f32::NAN];
        gelu_slice(&mut g);
        assert!(g[0].is_nan());
    }

    #[test]
    fn gelu_matches_exact_erf_gelu() {
        let xs: Vec<f32> = (0..=40_000).map(|i| -20.0 + i as f32 * 1e-3).collect();
        let mut got = xs.clone();
        gelu_slice(&mut got);
        let mut worst = 0.0f64;
        for (x, g) in xs.iter().zip(&got) {
            let want = gelu_reference(*x as f64);
            worst = worst.max((*g as f64 - want).abs() / (1.0 + x.abs() as f64));
        }
        assert!(worst < 2e-7, "worst scaled error {worst}");
        // Also through the tensor path, which must equal the slice kernel.
        let dev = Default::default();
        let t = Tensor::<Cpu, 1>::from_data(TensorData::new(xs.clone(), [xs.len()]), &dev);
        let via_tensor = gelu(t).into_data().into_vec::<f32>().unwrap();
        assert_eq!(via_tensor, got);
    }

    #[test]
    fn masked_softmax_equals_burns_composition() {
        let dev = Default::default();
        let (b, h, q, k) = (2, 3, 5, 37);
        let vals: Vec<f32> = (0..b * h * q * k)
            .map(|i| ((i * 7919 % 1000) as f32 / 100.0) - 5.0)
            .collect();
        let scores = Tensor::<Cpu, 4>::from_data(TensorData::new(vals, [b, h, q, k]), &dev);
        // Second sequence padded after 20 tokens, as bert.rs builds the bias.
        let mut bias = vec![0.0f32; b * k];
        for x in &mut bias[k + 20..] {
            *x = f32::MIN;
        }
        let bias = Tensor::<Cpu, 4>::from_data(TensorData::new(bias, [b, 1, 1, k]), &dev);
        let scale = 0.125;
        let want =
            burn::tensor::activation::softmax(scores.clone().mul_scalar(scale) + bias.clone(), 3);
        // Full-shape bias (what the non-fused CPU path used) must give the same.
        let full = bias.clone().repeat_dim(2, q);
        for bias in [bias.clone(), full] {
            let got = masked_softmax(scores.clone(), scale, &bias).unwrap();
            let diff = (got.clone() - want.clone()).abs().max().into_scalar();
            assert!(diff < 1e-6, "max difference {diff}");
            let padded = got.narrow(0, 1, 1).narrow(3, 20, k - 20).abs().max();
            assert_eq!(padded.into_scalar(), 0.0);
        }
        // A strided view (transposed storage) is made contiguous first and gives the same.
        let transposed = scores.clone().swap_dims(2, 3).into_data();
        let view = Tensor::<Cpu, 4>::from_data(transposed, &dev).swap_dims(2, 3);
        let got = masked_softmax(view, scale, &bias).unwrap();
        assert!((got - want).abs().max().into_scalar() < 1e-6);
    }

    /// The row's tail (past the last full 16 lanes) runs through a vector buffer: its values and the
    /// order of the sum must stay those of plain scalar code, bit for bit, at every tail length.
    #[test]
    fn softmax_tail_is_bit_identical_to_scalar_code() {
        for len in 1..=40 {
            let row: Vec<f32> = sample(len, len).iter().map(|x| x * 3.0).collect();
            let mut bias = vec![0.0f32; len];
            bias[len - 1] = if len > 2 { f32::MIN } else { 0.0 };
            let scale = 0.176_776_7;
            let mut want: Vec<f32> = row.iter().zip(&bias).map(|(x, b)| x * scale + b).collect();
            let m = want.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let full = len / LANES * LANES;
            let mut lanes = [0.0f32; LANES];
            for (i, x) in want.iter_mut().enumerate() {
                *x = exp_nonpositive(*x - m);
                if i < full {
                    lanes[i % LANES] += *x;
                }
            }
            let mut sum: f32 = lanes.iter().sum();
            want[full..].iter().for_each(|x| sum += x);
            want.iter_mut().for_each(|x| *x *= 1.0 / sum);
            let mut got = row.clone();
            softmax_row(&mut got, &bias, scale);
            assert_eq!(got, want, "row length {len}");
            assert!(got.iter().all(|x| x.is_finite()) && got[0] > 0.0);
        }
    }

    /// Rows of any width (a pruned FFN's) get GELU(x + bias) of their own column's bias, the tail too.
    #[test]
    fn bias_gelu_rows_equal_the_scalar_formula_at_every_width() {
        for width in 1..=40 {
            let xs = sample(3 * width, width);
            let bias: Vec<f32> = (0..width).map(|j| j as f32 * 0.1 - 1.0).collect();
            let want: Vec<f32> = xs
                .iter()
                .enumerate()
                .map(|(i, x)| gelu_scalar(x + bias[i % width]))
                .collect();
            let mut got = xs.clone();
            bias_gelu_rows(&mut got, &bias);
            assert_eq!(got, want, "width {width}");
        }
    }

    #[test]
    fn other_backends_are_left_to_burn() {
        type Nd = burn::backend::NdArray;
        let dev = Default::default();
        let s = Tensor::<Nd, 4>::zeros([1, 1, 2, 2], &dev);
        assert!(masked_softmax(s, 1.0, &Tensor::zeros([1, 1, 1, 2], &dev)).is_err());
        let g = gelu(Tensor::<Nd, 1>::from_floats([-1.0, 0.0, 2.0], &dev));
        let want = [-0.158_655_25f32, 0.0, 1.954_499_7];
        for (a, b) in g.into_data().into_vec::<f32>().unwrap().iter().zip(want) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    /// Inputs for the gradient checks: scores with a padded tail, values away from GELU's flat regions.
    fn sample(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 7919 % 2003) as f32 / 2003.0 - 0.5) * 8.0)
            .collect()
    }

    /// Gradients of `sum(w * f(x))` through the fused CPU autodiff node and through burn's own ops on
    /// autodiff ndarray (the composition the fused node replaces).
    #[test]
    fn fused_backward_passes_equal_burns_composition() {
        type Ad = CpuAutodiff;
        type Nd = burn::backend::Autodiff<burn::backend::NdArray>;
        let (b, h, q, k) = (2, 2, 3, 21);
        let n = b * h * q * k;
        let (x, w) = (sample(n, 1), sample(n, 5));
        let mut bias = vec![0.0f32; b * k];
        for v in &mut bias[k + 15..] {
            *v = f32::MIN;
        }
        fn grads<B: burn::tensor::backend::AutodiffBackend>(
            x: &[f32],
            w: &[f32],
            bias: &[f32],
            shape: [usize; 4],
            softmax_op: bool,
        ) -> (Vec<f32>, Vec<f32>) {
            let dev = Default::default();
            let [b, _, _, k] = shape;
            let xt =
                Tensor::<B, 4>::from_data(TensorData::new(x.to_vec(), shape), &dev).require_grad();
            let wt = Tensor::<B, 4>::from_data(TensorData::new(w.to_vec(), shape), &dev);
            let bt = Tensor::<B, 4>::from_data(TensorData::new(bias.to_vec(), [b, 1, 1, k]), &dev);
            let y = if softmax_op {
                match masked_softmax(xt.clone(), 0.25, &bt) {
                    Ok(y) => y,
                    Err(s) => burn::tensor::activation::softmax(s.mul_scalar(0.25) + bt, 3),
                }
            } else {
                gelu(xt.clone())
            };
            let out = y.clone().into_data().into_vec::<f32>().unwrap();
            let g = (y * wt).sum().backward();
            let gx = xt.grad(&g).unwrap().into_data().into_vec::<f32>().unwrap();
            (out, gx)
        }
        for softmax_op in [false, true] {
            let (ya, ga) = grads::<Ad>(&x, &w, &bias, [b, h, q, k], softmax_op);
            let (yn, gn) = grads::<Nd>(&x, &w, &bias, [b, h, q, k], softmax_op);
            let close = |a: &[f32], b: &[f32]| {
                a.iter()
                    .zip(b)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0f32, f32::max)
            };
            assert!(close(&ya, &yn) < 2e-6, "forward, softmax {softmax_op}");
            // burn-ndarray's GELU backward is the tanh approximation's derivative; burn-flex's own
            // backward op is the exact one, so the GELU gradient is checked against that instead.
            let want = if softmax_op {
                gn
            } else {
                let prim = |v: &[f32]| FlexTensor::from_data(TensorData::new(v.to_vec(), [n]));
                Flex::gelu_backward(prim(&x), prim(&w))
                    .into_data()
                    .into_vec::<f32>()
                    .unwrap()
            };
            let d = close(&ga, &want);
            assert!(d < 2e-6, "backward differs by {d}, softmax {softmax_op}");
            assert!(
                ga.iter().any(|v| v.abs() > 0.05),
                "gradients must not vanish"
            );
        }
    }

    #[test]
    fn gelu_gradient_matches_finite_differences() {
        let xs: Vec<f32> = (0..=800).map(|i| -8.0 + i as f32 * 0.02).collect();
        let mut g = vec![1.0f32; xs.len()];
        gelu_grad_slice(&xs, &mut g);
        for (x, got) in xs.iter().zip(&g) {
            let x = *x as f64;
            let h = 1e-5;
            let want = (gelu_reference(x + h) - gelu_reference(x - h)) / (2.0 * h);
            assert!((*got as f64 - want).abs() < 5e-7, "x {x}: {got} vs {want}");
        }
    }
}

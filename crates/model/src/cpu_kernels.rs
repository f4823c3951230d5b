//! Fused inference kernels for the CPU backend (burn-flex): exact-erf GELU and the attention softmax.
//!
//! burn-flex evaluates GELU with a scalar libm `erff` per element (about a sixth of MiniLM's CPU time) and
//! builds the attention softmax from five passes (scale, bias add, max, exp, normalise), its broadcast ones
//! walking elements one by one. Here each is one in-place pass whose maths LLVM vectorises, compiled for
//! AVX-512 or AVX2 when the CPU has them (checked at run time). Only the plain `Cpu` backend takes these
//! paths; autodiff and every other backend keep burn's ops, so gradients are untouched.
//!
//! Accuracy: GELU's normal CDF uses Abramowitz & Stegun 7.1.26 for erfc (absolute error <= 1.5e-7) and `exp`
//! is a degree-7 polynomial after range reduction (relative error ~1e-7); both sit far below the 1e-4
//! tolerance of the transformers parity tests and are checked against libm in the tests below.

use std::any::{Any, TypeId};

use burn::tensor::{backend::Backend, DType, Tensor, TensorPrimitive};
use burn_flex::FlexTensor;

use crate::backend::Cpu;

/// Whether `B` takes the fused kernels (the plain CPU backend, no autodiff).
pub fn fused<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<Cpu>()
}

/// Exact (erf) GELU: fused on the CPU backend, burn's op elsewhere.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    match with_f32_storage(x, |data, _| gelu_slice(data)) {
        Ok(y) => y,
        Err(x) => burn::tensor::activation::gelu(x),
    }
}

/// `softmax(scores * scale + bias)` over the last dimension, in place, on the CPU backend.
///
/// `scores`: `[batch, heads, q, k]`; `bias`: `[batch, 1, 1 or q, k]` (additive padding mask). Returns
/// `Err(scores)` untouched on other backends, where the caller composes burn's ops.
pub fn masked_softmax<B: Backend>(
    scores: Tensor<B, 4>,
    scale: f32,
    bias: &Tensor<B, 4>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    if !fused::<B>() {
        return Err(scores);
    }
    let [batch, heads, q, k] = scores.dims();
    let [bb, bh, bq, bk] = bias.dims();
    assert!(
        bb == batch && bh == 1 && (bq == 1 || bq == q) && bk == k,
        "masked_softmax: bias {:?} does not broadcast to scores {:?}",
        bias.dims(),
        scores.dims()
    );
    let Some(bias) = flex_f32_values(bias.clone()) else {
        return Err(scores);
    };
    with_f32_storage(scores, |data, _| {
        for (r, row) in data.chunks_exact_mut(k).enumerate() {
            let (b, i) = (r / (heads * q), r % q);
            let br = b * bq + if bq == 1 { 0 } else { i };
            softmax_row(row, &bias[br * k..(br + 1) * k], scale);
        }
    })
}

/// Runs `f` on the contiguous f32 storage of `t` when `B` is the CPU backend (copying first only when
/// `t` is a strided view or shared) and hands the tensor back; `Err(t)` unchanged otherwise.
fn with_f32_storage<B: Backend, const D: usize>(
    t: Tensor<B, D>,
    f: impl FnOnce(&mut [f32], &[usize]),
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    if !fused::<B>() || t.dtype() != DType::F32 {
        return Err(t);
    }
    let dims = t.dims();
    let n: usize = dims.iter().product();
    let mut prim: Box<dyn Any> = Box::new(t.into_primitive().tensor());
    let flex = prim
        .downcast_mut::<FlexTensor>()
        .expect("the CPU backend's float primitive is FlexTensor");
    *flex = flex.to_contiguous();
    f(&mut flex.storage_mut::<f32>()[..n], &dims);
    let prim = *prim
        .downcast::<B::FloatTensorPrimitive>()
        .expect("boxed above from B's primitive");
    Ok(Tensor::from_primitive(TensorPrimitive::Float(prim)))
}

/// The values of a CPU-backend f32 tensor in row-major order (read only: a shared tensor is not copied
/// on write).
fn flex_f32_values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Option<Vec<f32>> {
    if !fused::<B>() || t.dtype() != DType::F32 {
        return None;
    }
    let n = t.shape().num_elements();
    let prim: Box<dyn Any> = Box::new(t.into_primitive().tensor());
    let flex = prim.downcast_ref::<FlexTensor>()?.to_contiguous();
    Some(flex.storage::<f32>()[..n].to_vec())
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
    /// `softmax(row * scale + bias)` in place.
    softmax_row(row: &mut [f32], bias: &[f32], scale: f32) => softmax_body
);

#[inline(always)]
fn gelu_body(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = gelu_scalar(*x);
    }
}

/// Lanes of the max/sum reductions: independent accumulators let LLVM keep them in vector registers
/// (a single float accumulator would force the strict sequential order).
const LANES: usize = 16;

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
    let mut m = max.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for (x, b) in chunks
        .into_remainder()
        .iter_mut()
        .zip(bias_chunks.remainder())
    {
        *x = *x * scale + b;
        m = m.max(*x);
    }
    let mut sum = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for j in 0..LANES {
            c[j] = exp_nonpositive(c[j] - m);
            sum[j] += c[j];
        }
    }
    let mut s: f32 = sum.iter().sum();
    for x in chunks.into_remainder() {
        *x = exp_nonpositive(*x - m);
        s += *x;
    }
    let inv = 1.0 / s;
    for x in row.iter_mut() {
        *x *= inv;
    }
}

/// `x * Phi(x)` with `Phi(-|x|) = erfc(|x| / sqrt 2) / 2` from Abramowitz & Stegun 7.1.26; computing the
/// small tail directly (and `1 - tail` for positive x) avoids cancellation for negative inputs.
#[inline(always)]
fn gelu_scalar(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152,
        1.061_405_4,
    ];
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let tail = 0.5 * poly * exp_nonpositive(-z * z);
    let phi = if x < 0.0 { tail } else { 1.0 - tail };
    x * phi
}

/// `e^y` for `y <= 0` (NaN-free inputs): `2^n * e^r` with `|r| <= ln2 / 2` and a degree-7 Taylor
/// polynomial (truncation error < 1e-8 relative); 0 below -87, where f32 would go subnormal.
#[inline(always)]
fn exp_nonpositive(y: f32) -> f32 {
    // Cody-Waite split of ln 2: the high part has few mantissa bits, so n * LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer in the default rounding mode.
    const ROUND: f32 = 12_582_912.0;
    let yc = y.max(-87.0);
    let n = (yc * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = (yc - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
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

    #[test]
    fn other_backends_are_left_to_burn() {
        type Ad = crate::backend::CpuAutodiff;
        let dev = Default::default();
        let s = Tensor::<Ad, 4>::zeros([1, 1, 2, 2], &dev);
        assert!(masked_softmax(s.clone(), 1.0, &Tensor::zeros([1, 1, 1, 2], &dev)).is_err());
        let g = gelu(Tensor::<Ad, 1>::from_floats([-1.0, 0.0, 2.0], &dev));
        let want = [-0.158_655_25f32, 0.0, 1.954_5];
        for (a, b) in g.into_data().into_vec::<f32>().unwrap().iter().zip(want) {
            assert!((a - b).abs() < 1e-4);
        }
    }
}

//! Mixed precision: Linear layers multiply in bf16, every tensor stays f32, gradients reach the f32 weights.
//! Its own test binary: the setting is process-wide and would change the products of other tests.

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{DType, FloatDType, Tensor, TensorData};
use sekator_model::layers::linear_rows;
use sekator_model::mixed_precision::{matmul_dtype, set_matmul_dtype};
use sekator_model::{Cpu, CpuAutodiff};

fn values(n: usize, seed: u32) -> Vec<f32> {
    // deterministic, not round in bf16
    (0..n)
        .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 997.0 - 0.5)
        .collect()
}

fn linear<B: burn::tensor::backend::Backend>(
    d_in: usize,
    d_out: usize,
    dev: &B::Device,
) -> Linear<B> {
    Linear {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(values(d_in * d_out, 7), [d_in, d_out]),
            dev,
        )),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(values(d_out, 11), [d_out]),
            dev,
        ))),
    }
}

fn vec<B: burn::tensor::backend::Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec::<f32>().unwrap()
}

#[test]
fn bf16_products_stay_close_to_f32_and_train_the_f32_weights() {
    let dev = Default::default();
    let (b, s, d_in, d_out) = (2, 5, 48, 24);
    let x = || {
        Tensor::<Cpu, 3>::from_data(TensorData::new(values(b * s * d_in, 3), [b, s, d_in]), &dev)
    };
    let lin = linear::<Cpu>(d_in, d_out, &dev);

    set_matmul_dtype(None);
    assert_eq!(matmul_dtype(), None);
    let exact = vec(linear_rows(&lin, x()));
    set_matmul_dtype(Some(FloatDType::BF16));
    assert_eq!(matmul_dtype(), Some(FloatDType::BF16));
    let y = linear_rows(&lin, x());
    assert_eq!(y.dtype(), DType::F32, "the product comes back in f32");
    let mixed = vec(y);
    let scale = exact.iter().fold(0f32, |m, v| m.max(v.abs()));
    let max_err = exact
        .iter()
        .zip(&mixed)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    // bf16 keeps 8 significant bits: per-product errors of ~2^-9 relative, summed over 48 terms
    assert!(max_err > 0.0, "the product was not taken in bf16");
    assert!(max_err < 1e-2 * scale, "max err {max_err} vs scale {scale}");

    // gradients flow through the casts to the f32 weight, close to the f32 gradient
    let grad_of = |mixed: bool| {
        set_matmul_dtype(mixed.then_some(FloatDType::BF16));
        let dev = Default::default();
        let lin = linear::<CpuAutodiff>(d_in, d_out, &dev);
        let x = Tensor::<CpuAutodiff, 3>::from_data(
            TensorData::new(values(b * s * d_in, 3), [b, s, d_in]),
            &dev,
        );
        let loss = linear_rows(&lin, x).square().sum();
        let grads = loss.backward();
        let g = lin.weight.val().grad(&grads).expect("weight gradient");
        assert_eq!(g.dtype(), DType::F32);
        vec(g)
    };
    let (g32, g16) = (grad_of(false), grad_of(true));
    set_matmul_dtype(None);
    let gscale = g32.iter().fold(0f32, |m, v| m.max(v.abs()));
    let gerr = g32
        .iter()
        .zip(&g16)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        gerr > 0.0 && gerr < 2e-2 * gscale,
        "grad err {gerr} vs scale {gscale}"
    );
}

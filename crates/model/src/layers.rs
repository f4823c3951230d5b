//! Construction of burn's stock layers from HF-named weights, and their export back to HF layout.

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{backend::Backend, FloatDType, Tensor, TensorData};

use crate::error::ModelError;
use crate::weights::WeightSource;

/// One tensor in Hugging Face layout, ready to be written to safetensors.
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

pub fn tensor1<B: Backend>(data: Vec<f32>, device: &B::Device) -> Tensor<B, 1> {
    let n = data.len();
    Tensor::from_data(TensorData::new(data, [n]), device)
}

pub fn tensor2<B: Backend>(data: Vec<f32>, shape: [usize; 2], device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// Row-major `[rows, cols]` -> `[cols, rows]`.
pub fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// `lin` applied to `[batch, seq, in]` as one `[batch * seq, in]` matmul.
///
/// burn's `Linear` on a 3-D input broadcasts the weight over the batch and runs one small gemm per row
/// (burn-flex repacks the weight each time and stays on one thread below ~7M multiply-adds): measured
/// about 2x slower for MiniLM on 2 cores than a single 2-D gemm. The result is identical. Under autodiff on
/// the CPU backend the product is one fused node ([`crate::cpu_linear`]).
///
/// Under mixed precision ([`crate::mixed_precision`]) the product is taken in the reduced dtype and cast back.
pub fn linear_rows<B: Backend>(lin: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [batch, seq, d_in] = x.dims();
    let x = x.reshape([batch * seq, d_in]);
    let y = match crate::mixed_precision::matmul_dtype() {
        Some(low) if x.dtype() != low.into() => {
            let own = FloatDType::from(x.dtype());
            let y = x.cast(low).matmul(lin.weight.val().cast(low)).cast(own);
            match &lin.bias {
                Some(b) => y + b.val().unsqueeze_dim(0),
                None => y,
            }
        }
        _ => crate::cpu_linear::linear(lin, x).unwrap_or_else(|x| lin.forward(x)),
    };
    let d_out = y.dims()[1];
    y.reshape([batch, seq, d_out])
}

pub fn to_vec<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Vec<f32> {
    t.to_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 tensor data")
}

/// `prefix.weight` `[out, in]` (HF) and `prefix.bias` `[out]` -> burn `Linear` (weight stored `[in, out]`).
pub fn load_linear<B: Backend>(
    src: &mut dyn WeightSource,
    prefix: &str,
    d_in: usize,
    d_out: usize,
    device: &B::Device,
) -> Result<Linear<B>, ModelError> {
    let w = src.get(&format!("{prefix}.weight"), &[d_out, d_in])?;
    let b = src.get(&format!("{prefix}.bias"), &[d_out])?;
    Ok(Linear {
        weight: Param::from_tensor(tensor2(transpose(&w, d_out, d_in), [d_in, d_out], device)),
        bias: Some(Param::from_tensor(tensor1(b, device))),
    })
}

pub fn export_linear<B: Backend>(lin: &Linear<B>, prefix: &str, out: &mut Vec<NamedTensor>) {
    let [d_in, d_out] = lin.weight.dims();
    let w = to_vec(&lin.weight.val());
    out.push(NamedTensor {
        name: format!("{prefix}.weight"),
        shape: vec![d_out, d_in],
        data: transpose(&w, d_in, d_out),
    });
    if let Some(b) = &lin.bias {
        out.push(NamedTensor {
            name: format!("{prefix}.bias"),
            shape: vec![d_out],
            data: to_vec(&b.val()),
        });
    }
}

pub fn load_layer_norm<B: Backend>(
    src: &mut dyn WeightSource,
    prefix: &str,
    dim: usize,
    eps: f64,
    device: &B::Device,
) -> Result<LayerNorm<B>, ModelError> {
    let mut ln = LayerNormConfig::new(dim).with_epsilon(eps).init(device);
    ln.gamma = Param::from_tensor(tensor1(
        src.get(&format!("{prefix}.weight"), &[dim])?,
        device,
    ));
    ln.beta = Some(Param::from_tensor(tensor1(
        src.get(&format!("{prefix}.bias"), &[dim])?,
        device,
    )));
    Ok(ln)
}

pub fn export_layer_norm<B: Backend>(ln: &LayerNorm<B>, prefix: &str, out: &mut Vec<NamedTensor>) {
    let g = to_vec(&ln.gamma.val());
    out.push(NamedTensor {
        name: format!("{prefix}.weight"),
        shape: vec![g.len()],
        data: g,
    });
    if let Some(b) = &ln.beta {
        let b = to_vec(&b.val());
        out.push(NamedTensor {
            name: format!("{prefix}.bias"),
            shape: vec![b.len()],
            data: b,
        });
    }
}

pub fn load_embedding<B: Backend>(
    src: &mut dyn WeightSource,
    name: &str,
    n: usize,
    dim: usize,
    device: &B::Device,
) -> Result<Embedding<B>, ModelError> {
    let w = src.get(name, &[n, dim])?;
    Ok(Embedding {
        weight: Param::from_tensor(tensor2(w, [n, dim], device)),
    })
}

pub fn export_embedding<B: Backend>(e: &Embedding<B>, name: &str, out: &mut Vec<NamedTensor>) {
    let [n, d] = e.weight.dims();
    out.push(NamedTensor {
        name: name.to_string(),
        shape: vec![n, d],
        data: to_vec(&e.weight.val()),
    });
}

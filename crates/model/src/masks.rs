//! Multiplicative masks on attention heads and FFN neurons, one vector per layer, and on the residual
//! stream's dimensions (one vector shared by all layers).
//!
//! All ones leaves the model unchanged; the importance stage differentiates the loss with respect to them
//! (Michel et al. 2019), and a zero entry equals removing that unit. When no masks are given the model
//! skips the multiplication entirely, so inference pays nothing for this hook.
//!
//! The hidden (width) mask needs more than a product to equal a cut: every LayerNorm sees the residual
//! stream, and a model with dimension `i` cut out takes its mean and variance over the other dimensions
//! only. So under a hidden mask each LayerNorm becomes the masked form in [`norm`]: statistics weighted by the
//! mask, output times the mask. With a 0/1 mask that is exactly the cut model (every matrix reading the
//! stream then sees zeros where the cut removed columns); at all ones it is the plain LayerNorm.

use burn::nn::LayerNorm;
use burn::tensor::{backend::Backend, Tensor};

#[derive(Debug, Clone)]
pub struct UnitMasks<B: Backend> {
    /// `heads[l]`: `[heads in layer l]`, or `None` to leave the layer unmasked.
    pub heads: Vec<Option<Tensor<B, 1>>>,
    /// `ffn[l]`: `[FFN width of layer l]`, or `None`.
    pub ffn: Vec<Option<Tensor<B, 1>>>,
    /// `[hidden_size]`: one mask on the residual stream, applied at the embedding LayerNorm and every
    /// layer's two LayerNorms; `None` leaves the width alone.
    pub hidden: Option<Tensor<B, 1>>,
}

/// How each LayerNorm of a forward pass runs: the model's `layer_norm_eps` and the hidden mask, if any.
#[derive(Debug)]
pub struct Norm<'a, B: Backend> {
    pub hidden: Option<&'a Tensor<B, 1>>,
    pub eps: f64,
}

// By hand: a derive would require `B: Copy`, and only the reference is copied.
impl<B: Backend> Clone for Norm<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for Norm<'_, B> {}

/// `LayerNorm(x)` over the dimensions `mask` keeps (mean and variance weighted by it), times the mask.
fn masked_norm<B: Backend>(
    ln: &LayerNorm<B>,
    x: Tensor<B, 3>,
    mask: &Tensor<B, 1>,
    eps: f64,
) -> Tensor<B, 3> {
    let d = mask.dims()[0];
    let m = mask.clone().reshape([1, 1, d]);
    let kept = mask.clone().sum().reshape([1, 1, 1]);
    let mean = (x.clone() * m.clone()).sum_dim(2) / kept.clone();
    let centred = x - mean;
    let var = (centred.clone().powi_scalar(2) * m.clone()).sum_dim(2) / kept;
    let mut y = centred / var.add_scalar(eps).sqrt();
    y = y * ln.gamma.val().reshape([1, 1, d]);
    if let Some(b) = &ln.beta {
        y = y + b.val().reshape([1, 1, d]);
    }
    y * m
}

/// `ln(x)` (fused on the CPU backends, see [`crate::cpu_layer_norm`]), or its masked form under a hidden
/// mask.
pub fn norm<B: Backend>(ln: &LayerNorm<B>, x: Tensor<B, 3>, norm: Norm<'_, B>) -> Tensor<B, 3> {
    match norm.hidden {
        Some(mask) => masked_norm(ln, x, mask, norm.eps),
        None => crate::cpu_layer_norm::layer_norm(ln, x, norm.eps),
    }
}

impl<B: Backend> UnitMasks<B> {
    /// All-ones masks shaped like a model with these per-layer head counts and FFN widths.
    pub fn ones(heads: &[usize], ffn: &[usize], device: &B::Device) -> Self {
        Self {
            heads: heads
                .iter()
                .map(|&n| Some(Tensor::ones([n], device)))
                .collect(),
            ffn: ffn
                .iter()
                .map(|&n| Some(Tensor::ones([n], device)))
                .collect(),
            hidden: None,
        }
    }

    /// The same masks with `hidden` (`[hidden_size]`) on the residual stream.
    pub fn with_hidden(self, hidden: Tensor<B, 1>) -> Self {
        Self {
            hidden: Some(hidden),
            ..self
        }
    }

    /// Masks from 0/1 (or any) values given as plain vectors; an empty vector means "no mask" for that layer.
    pub fn from_values(heads: &[Vec<f32>], ffn: &[Vec<f32>], device: &B::Device) -> Self {
        let conv =
            |v: &Vec<f32>| (!v.is_empty()).then(|| crate::layers::tensor1::<B>(v.clone(), device));
        Self {
            heads: heads.iter().map(conv).collect(),
            ffn: ffn.iter().map(conv).collect(),
            hidden: None,
        }
    }
}

//! Multiplicative masks on attention heads and FFN neurons, one vector per layer.
//!
//! All ones leaves the model unchanged; the importance stage differentiates the loss with respect to them
//! (Michel et al. 2019), and a zero entry equals removing that unit. When no masks are given the model
//! skips the multiplication entirely, so inference pays nothing for this hook.

use burn::tensor::{backend::Backend, Tensor};

#[derive(Debug, Clone)]
pub struct UnitMasks<B: Backend> {
    /// `heads[l]`: `[heads in layer l]`, or `None` to leave the layer unmasked.
    pub heads: Vec<Option<Tensor<B, 1>>>,
    /// `ffn[l]`: `[FFN width of layer l]`, or `None`.
    pub ffn: Vec<Option<Tensor<B, 1>>>,
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
        }
    }

    /// Masks from 0/1 (or any) values given as plain vectors; an empty vector means "no mask" for that layer.
    pub fn from_values(heads: &[Vec<f32>], ffn: &[Vec<f32>], device: &B::Device) -> Self {
        let conv =
            |v: &Vec<f32>| (!v.is_empty()).then(|| crate::layers::tensor1::<B>(v.clone(), device));
        Self {
            heads: heads.iter().map(conv).collect(),
            ffn: ffn.iter().map(conv).collect(),
        }
    }
}

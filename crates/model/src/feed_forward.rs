//! The FFN block (HF `intermediate` + `output`), whose width is a property of each layer.

use burn::module::Module;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::activation::{gelu_approximate, relu};
use burn::tensor::{backend::Backend, Tensor};

use crate::config::BertConfig;
use crate::cpu_kernels;
use crate::error::ModelError;
use crate::layers::{self, NamedTensor};
use crate::masks::{self, Norm};
use crate::weights::WeightSource;

/// Exact (erf) GELU, BERT's `gelu`.
pub const ACT_GELU: usize = 0;
/// Tanh-approximated GELU (`gelu_new`, `gelu_pytorch_tanh`).
pub const ACT_GELU_TANH: usize = 1;
pub const ACT_RELU: usize = 2;

#[derive(Module, Debug)]
pub struct BertFeedForward<B: Backend> {
    /// HF `intermediate.dense`: `hidden -> width`.
    pub intermediate: Linear<B>,
    /// HF `output.dense`: `width -> hidden`.
    pub output: Linear<B>,
    /// HF `output.LayerNorm`.
    pub layer_norm: LayerNorm<B>,
    /// Activation code, see [`ACT_GELU`], [`ACT_GELU_TANH`], [`ACT_RELU`] (a plain integer keeps the
    /// module derivable).
    pub act: usize,
}

impl<B: Backend> BertFeedForward<B> {
    pub fn load(
        cfg: &BertConfig,
        layer: usize,
        src: &mut dyn WeightSource,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let h = cfg.hidden_size;
        let w = cfg.ffn_sizes()[layer];
        let p = format!("encoder.layer.{layer}");
        Ok(Self {
            intermediate: layers::load_linear(
                src,
                &format!("{p}.intermediate.dense"),
                h,
                w,
                device,
            )?,
            output: layers::load_linear(src, &format!("{p}.output.dense"), w, h, device)?,
            layer_norm: layers::load_layer_norm(
                src,
                &format!("{p}.output.LayerNorm"),
                h,
                cfg.layer_norm_eps,
                device,
            )?,
            act: match cfg.hidden_act.as_str() {
                "relu" => ACT_RELU,
                "gelu_new" | "gelu_pytorch_tanh" => ACT_GELU_TANH,
                _ => ACT_GELU,
            },
        })
    }

    pub fn export(&self, layer: usize, out: &mut Vec<NamedTensor>) {
        let p = format!("encoder.layer.{layer}");
        layers::export_linear(&self.intermediate, &format!("{p}.intermediate.dense"), out);
        layers::export_linear(&self.output, &format!("{p}.output.dense"), out);
        layers::export_layer_norm(&self.layer_norm, &format!("{p}.output.LayerNorm"), out);
    }

    /// `ffn_mask`: optional `[width]` multiplied into the activation output (importance scoring);
    /// `norm`: the LayerNorm epsilon and residual-stream mask, if any (see [`crate::masks`]).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        ffn_mask: Option<&Tensor<B, 1>>,
        norm: Norm<'_, B>,
    ) -> Tensor<B, 3> {
        let a = layers::linear_rows(&self.intermediate, x.clone());
        let mut a = match self.act {
            ACT_RELU => relu(a),
            ACT_GELU_TANH => gelu_approximate(a),
            _ => cpu_kernels::gelu(a),
        };
        if let Some(m) = ffn_mask {
            let w = m.dims()[0];
            a = a * m.clone().reshape([1, 1, w]);
        }
        masks::norm(
            &self.layer_norm,
            layers::linear_rows(&self.output, a) + x,
            norm,
        )
    }
}

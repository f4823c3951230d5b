//! Self-attention whose head count is a property of each layer, so pruned checkpoints load as they are.
//!
//! burn's stock `MultiHeadAttention` fixes `d_model = heads * head_dim`; after pruning a layer keeps
//! `heads_kept * head_dim` rows of Q/K/V while the hidden size stays the same, hence this module.

use burn::module::Module;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::activation::softmax;
use burn::tensor::{backend::Backend, Tensor};

use crate::backend::is_cpu;
use crate::config::BertConfig;
use crate::cpu_attention;
use crate::cpu_kernels;
use crate::error::ModelError;
use crate::layers::{self, NamedTensor};
use crate::masks::{self, Norm};
use crate::weights::WeightSource;

/// HF `attention.self`: Q/K/V projections of `hidden -> heads * head_dim`.
#[derive(Module, Debug)]
pub struct BertSelfAttention<B: Backend> {
    pub query: Linear<B>,
    pub key: Linear<B>,
    pub value: Linear<B>,
    pub num_heads: usize,
    pub head_dim: usize,
}

/// HF `attention.output`: projection back to `hidden`, residual, LayerNorm.
#[derive(Module, Debug)]
pub struct BertSelfOutput<B: Backend> {
    pub dense: Linear<B>,
    pub layer_norm: LayerNorm<B>,
}

/// HF `attention`: self-attention plus its output block.
#[derive(Module, Debug)]
pub struct BertAttention<B: Backend> {
    pub self_attention: BertSelfAttention<B>,
    pub output: BertSelfOutput<B>,
}

impl<B: Backend> BertAttention<B> {
    pub fn load(
        cfg: &BertConfig,
        layer: usize,
        src: &mut dyn WeightSource,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let h = cfg.hidden_size;
        let head_dim = cfg.head_dim();
        let num_heads = cfg.kept_heads(layer).len();
        let inner = num_heads * head_dim;
        let p = format!("encoder.layer.{layer}.attention");
        Ok(Self {
            self_attention: BertSelfAttention {
                query: layers::load_linear(src, &format!("{p}.self.query"), h, inner, device)?,
                key: layers::load_linear(src, &format!("{p}.self.key"), h, inner, device)?,
                value: layers::load_linear(src, &format!("{p}.self.value"), h, inner, device)?,
                num_heads,
                head_dim,
            },
            output: BertSelfOutput {
                dense: layers::load_linear(src, &format!("{p}.output.dense"), inner, h, device)?,
                layer_norm: layers::load_layer_norm(
                    src,
                    &format!("{p}.output.LayerNorm"),
                    h,
                    cfg.layer_norm_eps,
                    device,
                )?,
            },
        })
    }

    pub fn export(&self, layer: usize, out: &mut Vec<NamedTensor>) {
        let p = format!("encoder.layer.{layer}.attention");
        layers::export_linear(&self.self_attention.query, &format!("{p}.self.query"), out);
        layers::export_linear(&self.self_attention.key, &format!("{p}.self.key"), out);
        layers::export_linear(&self.self_attention.value, &format!("{p}.self.value"), out);
        layers::export_linear(&self.output.dense, &format!("{p}.output.dense"), out);
        layers::export_layer_norm(
            &self.output.layer_norm,
            &format!("{p}.output.LayerNorm"),
            out,
        );
    }

    /// `x`: `[batch, seq, hidden]`; `mask_bias`: `[batch, 1, 1, seq]` (0 for tokens, very negative for padding);
    /// `head_mask`: optional `[heads]` multiplied into each head's attention output (importance scoring);
    /// `norm`: the LayerNorm epsilon and residual-stream mask, if any (see [`crate::masks`]).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        mask_bias: Tensor<B, 4>,
        head_mask: Option<&Tensor<B, 1>>,
        norm: Norm<'_, B>,
    ) -> Tensor<B, 3> {
        let sa = &self.self_attention;
        let (nh, hd) = (sa.num_heads, sa.head_dim);
        let q = layers::linear_rows(&sa.query, x.clone());
        let k = layers::linear_rows(&sa.key, x.clone());
        let v = layers::linear_rows(&sa.value, x.clone());
        let context = match cpu_attention::attention(q, k, v, &mask_bias, nh) {
            Ok(context) => match head_mask {
                // [heads] -> each head's mask over its columns of the merged context
                Some(m) => {
                    let cols = m.clone().reshape([nh, 1]).repeat_dim(1, hd);
                    context * cols.reshape([1, 1, nh * hd])
                }
                None => context,
            },
            Err((q, k, v)) => composed_attention(q, k, v, mask_bias, head_mask, [nh, hd]),
        };
        let out = layers::linear_rows(&self.output.dense, context);
        masks::norm(&self.output.layer_norm, out + x, norm)
    }
}

/// Attention from burn's ops: heads split as strided views, the fused CPU softmax where the backend has
/// it, heads merged back. `q`, `k`, `v`: `[batch, seq, heads * head_dim]`; returns the same shape.
fn composed_attention<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    mask_bias: Tensor<B, 4>,
    head_mask: Option<&Tensor<B, 1>>,
    [nh, hd]: [usize; 2],
) -> Tensor<B, 3> {
    let [batch, seq, _] = q.dims();
    let split = |t: Tensor<B, 3>| t.reshape([batch, seq, nh, hd]).swap_dims(1, 2);
    let (q, k, v) = (split(q), split(k), split(v));
    // Q/K/V stay strided views (the matmuls read them in place).
    let scale = 1.0 / (hd as f32).sqrt();
    let scores = q.matmul(k.swap_dims(2, 3));
    let probs = match cpu_kernels::masked_softmax(scores, scale, &mask_bias) {
        Ok(probs) => probs,
        Err(scores) => {
            // On unfused CPU backends a broadcast add walks elements one by one, so the padding
            // bias is first repeated to the scores' full shape (two memcpy passes), which turns
            // the add into a contiguous SIMD pass.
            let bias = if is_cpu::<B>() {
                mask_bias.repeat_dim(1, nh)
            } else {
                mask_bias
            };
            softmax(scores.mul_scalar(scale) + bias, 3)
        }
    };
    let mut context = probs.matmul(v); // [batch, heads, seq, head_dim]
    if let Some(m) = head_mask {
        context = context * m.clone().reshape([1, nh, 1, 1]);
    }
    merge_heads(context)
}

/// `[batch, heads, seq, head_dim]` -> `[batch, seq, heads * head_dim]`.
///
/// burn-flex copies a 4-D permutation element by element through a generic strided iterator (about a
/// tenth of MiniLM's CPU time); on CPU backends the heads are cut out as 2-D blocks and concatenated
/// with row copies instead. Other backends permute in one kernel.
fn merge_heads<B: Backend>(context: Tensor<B, 4>) -> Tensor<B, 3> {
    let [batch, nh, seq, hd] = context.dims();
    if !is_cpu::<B>() || nh == 1 {
        return context.swap_dims(1, 2).reshape([batch, seq, nh * hd]);
    }
    let heads = (0..nh)
        .map(|h| context.clone().narrow(1, h, 1).reshape([batch, seq, hd]))
        .collect();
    Tensor::cat(heads, 2)
}

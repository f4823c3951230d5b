//! `BertModel`: embeddings, a stack of post-LayerNorm encoder layers, optional pooler.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{backend::Backend, Int, Tensor};

use crate::attention::BertAttention;
use crate::backend::is_cpu;
use crate::config::BertConfig;
use crate::cpu_kernels;
use crate::embeddings::BertEmbeddings;
use crate::error::ModelError;
use crate::feed_forward::BertFeedForward;
use crate::layers::{self, NamedTensor};
use crate::masks::{Norm, UnitMasks};
use crate::weights::WeightSource;

/// HF `encoder.layer.{i}`.
#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    pub attention: BertAttention<B>,
    pub feed_forward: BertFeedForward<B>,
}

/// HF `pooler`: dense + tanh on the first token (LaBSE's sentence embedding).
#[derive(Module, Debug)]
pub struct BertPooler<B: Backend> {
    pub dense: Linear<B>,
}

#[derive(Module, Debug)]
pub struct BertModel<B: Backend> {
    pub embeddings: BertEmbeddings<B>,
    pub layers: Vec<BertLayer<B>>,
    pub pooler: Option<BertPooler<B>>,
    /// The config's `layer_norm_eps`, for every LayerNorm ([`Norm`]).
    pub layer_norm_eps: f64,
}

impl<B: Backend> BertModel<B> {
    /// Builds the model from named weights; shapes follow `cfg` (per-layer heads and FFN widths).
    pub fn load(
        cfg: &BertConfig,
        src: &mut dyn WeightSource,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let embeddings = BertEmbeddings::load(cfg, src, device)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|l| {
                Ok(BertLayer {
                    attention: BertAttention::load(cfg, l, src, device)?,
                    feed_forward: BertFeedForward::load(cfg, l, src, device)?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let pooler = if src.has("pooler.dense.weight") {
            let h = cfg.hidden_size;
            Some(BertPooler {
                dense: layers::load_linear(src, "pooler.dense", h, h, device)?,
            })
        } else {
            None
        };
        Ok(Self {
            embeddings,
            layers,
            pooler,
            layer_norm_eps: cfg.layer_norm_eps,
        })
    }

    /// All parameters as HF-named tensors, in a stable order.
    pub fn export(&self) -> Vec<NamedTensor> {
        let mut out = Vec::new();
        self.embeddings.export(&mut out);
        for (l, layer) in self.layers.iter().enumerate() {
            layer.attention.export(l, &mut out);
            layer.feed_forward.export(l, &mut out);
        }
        if let Some(p) = &self.pooler {
            layers::export_linear(&p.dense, "pooler.dense", &mut out);
        }
        out
    }

    /// `input_ids`: `[batch, seq]`; `attention_mask`: `[batch, seq]` with 1 for tokens, 0 for padding.
    /// Returns the last hidden state `[batch, seq, hidden]`. Token types are all 0 (single sentences).
    ///
    /// Inference on the CPU backend without masks runs the layers as direct gemm calls
    /// ([`crate::cpu_encoder`]); everything else composes burn's ops ([`Self::forward_composed`]).
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2>,
        masks: Option<&UnitMasks<B>>,
    ) -> Tensor<B, 3> {
        self.forward_with(input_ids, attention_mask, masks, true)
    }

    /// [`Self::forward`] composed from burn's ops on every backend: the reference the CPU fast path is
    /// tested against.
    pub fn forward_composed(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2>,
        masks: Option<&UnitMasks<B>>,
    ) -> Tensor<B, 3> {
        self.forward_with(input_ids, attention_mask, masks, false)
    }

    fn forward_with(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2>,
        masks: Option<&UnitMasks<B>>,
        fast: bool,
    ) -> Tensor<B, 3> {
        let [batch, seq] = input_ids.dims();
        let token_types = Tensor::<B, 2, Int>::zeros([batch, seq], &input_ids.device());
        let norm = Norm {
            hidden: masks.and_then(|m| m.hidden.as_ref()),
            eps: self.layer_norm_eps,
        };
        let mut x = self.embeddings.forward(input_ids, token_types, norm);
        if fast && masks.is_none() {
            match crate::cpu_encoder::encode(self, x, &attention_mask) {
                Ok(hidden) => return hidden,
                Err(unchanged) => x = unchanged,
            }
        }
        // Additive bias: 0 where attended, the dtype's float min where padded (as transformers does;
        // f32::MIN would round to -inf in bf16/f16 and 0 * -inf is NaN).
        let min = burn::tensor::FloatDType::from(attention_mask.dtype())
            .finfo()
            .min;
        let bias = (attention_mask.neg() + 1.0)
            .mul_scalar(min)
            .reshape([batch, 1, 1, seq]);
        // Unfused CPU backends add it in full shape (see `BertAttention::forward`): repeat over queries
        // once here. The fused CPU softmax reads it per row as it is.
        let bias = if is_cpu::<B>() && !cpu_kernels::fused::<B>() {
            bias.repeat_dim(2, seq)
        } else {
            bias
        };
        for (l, layer) in self.layers.iter().enumerate() {
            let hm = masks.and_then(|m| m.heads.get(l)).and_then(|t| t.as_ref());
            let fm = masks.and_then(|m| m.ffn.get(l)).and_then(|t| t.as_ref());
            x = layer.attention.forward(x, bias.clone(), hm, norm);
            x = layer.feed_forward.forward(x, fm, norm);
        }
        x
    }

    /// Pooler output `tanh(W h_0 + b)` `[batch, hidden]`, or `None` when the checkpoint has no pooler.
    pub fn pool(&self, hidden: &Tensor<B, 3>) -> Option<Tensor<B, 2>> {
        let p = self.pooler.as_ref()?;
        let [batch, _, h] = hidden.dims();
        let first = hidden
            .clone()
            .slice([0..batch, 0..1, 0..h])
            .reshape([batch, h]);
        Some(p.dense.forward(first).tanh())
    }

    pub fn num_heads(&self) -> Vec<usize> {
        self.layers
            .iter()
            .map(|l| l.attention.self_attention.num_heads)
            .collect()
    }

    pub fn ffn_sizes(&self) -> Vec<usize> {
        self.layers
            .iter()
            .map(|l| l.feed_forward.intermediate.weight.dims()[1])
            .collect()
    }
}

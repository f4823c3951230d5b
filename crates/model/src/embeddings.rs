//! `BertEmbeddings`: word + position + token-type embeddings, then LayerNorm (dropout is identity at inference).

use burn::module::Module;
use burn::nn::{Embedding, LayerNorm};
use burn::tensor::{backend::Backend, Int, Tensor};

use crate::config::BertConfig;
use crate::error::ModelError;
use crate::layers::{self, NamedTensor};
use crate::masks::{self, Norm};
use crate::weights::WeightSource;

#[derive(Module, Debug)]
pub struct BertEmbeddings<B: Backend> {
    pub word_embeddings: Embedding<B>,
    pub position_embeddings: Embedding<B>,
    pub token_type_embeddings: Embedding<B>,
    pub layer_norm: LayerNorm<B>,
}

impl<B: Backend> BertEmbeddings<B> {
    pub fn load(
        cfg: &BertConfig,
        src: &mut dyn WeightSource,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let h = cfg.hidden_size;
        Ok(Self {
            word_embeddings: layers::load_embedding(
                src,
                "embeddings.word_embeddings.weight",
                cfg.vocab_size,
                h,
                device,
            )?,
            position_embeddings: layers::load_embedding(
                src,
                "embeddings.position_embeddings.weight",
                cfg.max_position_embeddings,
                h,
                device,
            )?,
            token_type_embeddings: layers::load_embedding(
                src,
                "embeddings.token_type_embeddings.weight",
                cfg.type_vocab_size,
                h,
                device,
            )?,
            layer_norm: layers::load_layer_norm(
                src,
                "embeddings.LayerNorm",
                h,
                cfg.layer_norm_eps,
                device,
            )?,
        })
    }

    pub fn export(&self, out: &mut Vec<NamedTensor>) {
        layers::export_embedding(
            &self.word_embeddings,
            "embeddings.word_embeddings.weight",
            out,
        );
        layers::export_embedding(
            &self.position_embeddings,
            "embeddings.position_embeddings.weight",
            out,
        );
        layers::export_embedding(
            &self.token_type_embeddings,
            "embeddings.token_type_embeddings.weight",
            out,
        );
        layers::export_layer_norm(&self.layer_norm, "embeddings.LayerNorm", out);
    }

    /// `input_ids`, `token_type_ids`: `[batch, seq]` -> `[batch, seq, hidden]`. Positions are `0..seq`.
    /// `norm`: the LayerNorm epsilon and residual-stream mask, if any (see [`crate::masks`]).
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        token_type_ids: Tensor<B, 2, Int>,
        norm: Norm<'_, B>,
    ) -> Tensor<B, 3> {
        let [batch, seq] = input_ids.dims();
        let device = input_ids.device();
        let positions = Tensor::<B, 1, Int>::arange(0..seq as i64, &device)
            .reshape([1, seq])
            .expand([batch, seq]);
        let x = self.word_embeddings.forward(input_ids)
            + self.position_embeddings.forward(positions)
            + self.token_type_embeddings.forward(token_type_ids);
        masks::norm(&self.layer_norm, x, norm)
    }
}

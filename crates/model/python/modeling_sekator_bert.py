"""A BERT encoder whose layers each have their own attention-head count and FFN width (sekator pruning).

Why this exists: transformers' BertModel gives every layer the same shape, and transformers 5 dropped
`prune_heads`, so a pruned checkpoint would not load there. This file is a plain-torch BERT with
exactly BertModel's parameter names, sized per layer from the config, so model.safetensors loads
unchanged under transformers 4.x and 5.x (`AutoModel.from_pretrained(dir, trust_remote_code=True)`).
The arithmetic is BERT's eager path: post-LayerNorm blocks, additive large-negative padding bias,
softmax in the activations' dtype.
"""

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

from .configuration_sekator_bert import SekatorBertConfig


class SekatorBertEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        # No position_ids/token_type_ids buffers: transformers 5 builds models on the meta device and
        # would have to re-initialise them; arange/zeros per call cost nothing and load in any version.

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        batch, seq = inputs_embeds.shape[:2]
        device = inputs_embeds.device
        if position_ids is None:
            position_ids = torch.arange(seq, device=device).unsqueeze(0)
        if token_type_ids is None:
            token_type_ids = torch.zeros((batch, seq), dtype=torch.long, device=device)
        x = inputs_embeds + self.token_type_embeddings(token_type_ids) + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))


class SekatorBertSelfAttention(nn.Module):
    """Q/K/V of the heads this layer kept: [heads * head_dim, hidden] each, head_dim never changes."""

    def __init__(self, config, num_heads):
        super().__init__()
        self.num_attention_heads = num_heads
        self.attention_head_size = config.head_size()
        self.all_head_size = num_heads * self.attention_head_size
        self.query = nn.Linear(config.hidden_size, self.all_head_size)
        self.key = nn.Linear(config.hidden_size, self.all_head_size)
        self.value = nn.Linear(config.hidden_size, self.all_head_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def forward(self, hidden_states, attention_bias=None):
        batch, seq, _ = hidden_states.shape
        split = (batch, seq, self.num_attention_heads, self.attention_head_size)
        q = self.query(hidden_states).view(split).transpose(1, 2)
        k = self.key(hidden_states).view(split).transpose(1, 2)
        v = self.value(hidden_states).view(split).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) / (self.attention_head_size ** 0.5)
        if attention_bias is not None:
            scores = scores + attention_bias
        probs = self.dropout(nn.functional.softmax(scores, dim=-1))
        context = torch.matmul(probs, v).transpose(1, 2).reshape(batch, seq, self.all_head_size)
        return context, probs


class SekatorBertSelfOutput(nn.Module):
    def __init__(self, config, in_features):
        super().__init__()
        self.dense = nn.Linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class SekatorBertAttention(nn.Module):
    def __init__(self, config, num_heads):
        super().__init__()
        self.self = SekatorBertSelfAttention(config, num_heads)
        self.output = SekatorBertSelfOutput(config, self.self.all_head_size)

    def forward(self, hidden_states, attention_bias=None):
        context, probs = self.self(hidden_states, attention_bias)
        return self.output(context, hidden_states), probs


class SekatorBertIntermediate(nn.Module):
    def __init__(self, config, width):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, width)
        act = config.hidden_act
        self.intermediate_act_fn = ACT2FN[act] if isinstance(act, str) else act

    def forward(self, hidden_states):
        return self.intermediate_act_fn(self.dense(hidden_states))


class SekatorBertLayer(nn.Module):
    def __init__(self, config, index):
        super().__init__()
        width = config.ffn_in_layer(index)
        self.attention = SekatorBertAttention(config, config.heads_in_layer(index))
        self.intermediate = SekatorBertIntermediate(config, width)
        self.output = SekatorBertSelfOutput(config, width)  # BertOutput has the same shape as BertSelfOutput

    def forward(self, hidden_states, attention_bias=None):
        attended, probs = self.attention(hidden_states, attention_bias)
        return self.output(self.intermediate(attended), attended), probs


class SekatorBertEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(SekatorBertLayer(config, i) for i in range(config.num_hidden_layers))


class SekatorBertPooler(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states):
        return self.activation(self.dense(hidden_states[:, 0]))


class SekatorBertPreTrainedModel(PreTrainedModel):
    config_class = SekatorBertConfig
    base_model_prefix = "bert"
    _no_split_modules = ["SekatorBertEmbeddings", "SekatorBertLayer"]
    _keys_to_ignore_on_load_unexpected = [r"position_ids"]  # older BERT files stored this buffer
    # No _init_weights override: PreTrainedModel's generic one (4.x and 5.x) is BERT's init (normal(0,
    # initializer_range) Linear/Embedding, zero bias and padding row, unit LayerNorm), and each version's
    # loader applies it only to weights the checkpoint lacks.

    def _prune_heads(self, heads_to_prune):
        """transformers 4.x calls this from init_weights() with config.pruned_heads, which the weights
        already reflect: nothing to do. Pruning more heads of a loaded model is not supported."""
        for i, layer in enumerate(self.encoder.layer):
            if layer.attention.self.num_attention_heads != self.config.heads_in_layer(i):
                raise NotImplementedError("sekator_bert weights are pruned already; prune with sekator instead")


class SekatorBertModel(SekatorBertPreTrainedModel):
    def __init__(self, config, add_pooling_layer=None):
        super().__init__(config)
        if add_pooling_layer is None:
            add_pooling_layer = config.add_pooling_layer
        self.embeddings = SekatorBertEmbeddings(config)
        self.encoder = SekatorBertEncoder(config)
        self.pooler = SekatorBertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,  # e.g. head_mask/cache flags some callers pass; an encoder has no use for them
    ):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        cfg = self.config
        output_attentions = output_attentions if output_attentions is not None else cfg.output_attentions
        output_hidden_states = output_hidden_states if output_hidden_states is not None else cfg.output_hidden_states
        return_dict = return_dict if return_dict is not None else cfg.return_dict

        hidden = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
        bias = None
        if attention_mask is not None:
            # [batch, seq] 1/0 -> [batch, 1, 1, seq] additive bias, as BertModel's eager path builds it.
            keep = attention_mask[:, None, None, :].to(hidden.dtype)
            bias = (1.0 - keep) * torch.finfo(hidden.dtype).min

        all_hidden = (hidden,) if output_hidden_states else None
        all_attn = () if output_attentions else None
        for layer in self.encoder.layer:
            hidden, probs = layer(hidden, bias)
            if output_hidden_states:
                all_hidden += (hidden,)
            if output_attentions:
                all_attn += (probs,)
        pooled = self.pooler(hidden) if self.pooler is not None else None

        if not return_dict:
            return tuple(v for v in (hidden, pooled, all_hidden, all_attn) if v is not None)
        return BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=hidden, pooler_output=pooled, hidden_states=all_hidden, attentions=all_attn
        )


__all__ = ["SekatorBertModel", "SekatorBertPreTrainedModel"]

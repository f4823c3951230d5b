"""Config of a BERT encoder pruned by sekator: each layer has its own head count and FFN width.

Why this exists: pruning removes attention heads and FFN neurons per layer (and residual-stream
dimensions from all of them), so layers differ in shape.
Plain `BertConfig` has one head count and one FFN width for all layers, and transformers 5 no longer
applies `pruned_heads`, so the checkpoint ships this config and `modeling_sekator_bert.py`
(load with `trust_remote_code=True`).

Shape rules, read by the model:
* `num_attention_heads` is the ORIGINAL head count; head size = `head_dim` when set (width pruning
  narrows hidden_size but not the heads), else hidden_size // num_attention_heads.
* `pruned_heads` maps a layer to the ORIGINAL indices of its removed heads (keys int or str).
* `intermediate_sizes` (optional) is each layer's FFN width; without it every layer has `intermediate_size`.
"""

try:
    from transformers import PreTrainedConfig  # the 5.x name
except ImportError:
    from transformers import PretrainedConfig as PreTrainedConfig  # 4.x (5.x keeps this alias for now)


class SekatorBertConfig(PreTrainedConfig):
    model_type = "sekator_bert"

    # A classic __init__ rather than dataclass fields: transformers 4.x needs it, and 5.x keeps a
    # subclass's own __init__ (attributes are set after super().__init__, which in 4.x resets pruned_heads).
    def __init__(
        self,
        vocab_size=30522,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        intermediate_sizes=None,
        pruned_heads=None,
        pruned_ffn=None,
        head_dim=None,
        pruned_hidden=None,
        add_pooling_layer=True,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=512,
        type_vocab_size=2,
        initializer_range=0.02,
        layer_norm_eps=1e-12,
        pad_token_id=0,
        position_embedding_type="absolute",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.intermediate_sizes = list(intermediate_sizes) if intermediate_sizes is not None else None
        # JSON keys are strings; 4.x's PretrainedConfig turns them into ints. Keep ints, drop empty lists.
        self.pruned_heads = {int(k): sorted(int(h) for h in v) for k, v in (pruned_heads or {}).items() if v}
        self.pruned_ffn = pruned_ffn  # informational only: original FFN neuron indices removed
        self.head_dim = head_dim
        self.pruned_hidden = pruned_hidden  # informational only: original residual dimensions removed
        self.add_pooling_layer = add_pooling_layer
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.pad_token_id = pad_token_id
        if position_embedding_type != "absolute":
            raise ValueError(f"sekator_bert supports only absolute position embeddings, not {position_embedding_type!r}")
        self.position_embedding_type = position_embedding_type
        if intermediate_sizes is not None and len(self.intermediate_sizes) != num_hidden_layers:
            raise ValueError(f"intermediate_sizes has {len(self.intermediate_sizes)} entries for {num_hidden_layers} layers")

    def head_size(self):
        return self.head_dim if self.head_dim else self.hidden_size // self.num_attention_heads

    def heads_in_layer(self, i):
        """Heads that layer i still has (the weights hold them in original order)."""
        return self.num_attention_heads - len(self.pruned_heads.get(i, ()))

    def ffn_in_layer(self, i):
        return self.intermediate_sizes[i] if self.intermediate_sizes is not None else self.intermediate_size

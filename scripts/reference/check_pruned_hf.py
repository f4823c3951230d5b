#!/usr/bin/env python3
"""Load a pruned checkpoint written by our surgery tool with transformers 4.x.

Why: a pruned model is only useful to others if stock Hugging Face code loads
it. This script tries exactly that (AutoModel.from_pretrained, which applies
config.pruned_heads) and fails loudly on missing/unexpected weights, which
transformers would otherwise just warn about and fill with random values.

HF's BertConfig has one intermediate_size for all layers. If the checkpoint's
FFN widths differ per layer, from_pretrained cannot load it; the script then
says so and, unless --strict-hf, loads it anyway by resizing each layer's
FFN Linear modules to the stored shapes, so the outputs can still be compared.

Prints one JSON object: parameter count, heads and FFN width per layer, how it
was loaded, and the CLS vectors (last_hidden_state[:, 0]) of 3 sentences.

    /root/venvs/sekator-ref/bin/python scripts/reference/check_pruned_hf.py DIR
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModel, AutoTokenizer

REPO = Path(__file__).resolve().parents[2]
SENTENCES = [
    "A man is playing a guitar on the street.",
    "Мужчина играет на гитаре на улице.",
    "Pruned encoders should still embed sentences well.",
]


def stored_shapes(d):
    with safe_open(str(Path(d) / "model.safetensors"), "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def load_with_ffn_resize(d, shapes):
    """Build the model from config (pruned_heads applied), give every layer
    the FFN width found in the file, then load all weights strictly."""
    config = AutoConfig.from_pretrained(d)
    model = AutoModel.from_config(config)
    for i, layer in enumerate(model.encoder.layer):
        width = shapes[f"encoder.layer.{i}.intermediate.dense.weight"][0]
        layer.intermediate.dense = torch.nn.Linear(config.hidden_size, width)
        layer.output.dense = torch.nn.Linear(width, config.hidden_size)
    state = {}
    with safe_open(str(Path(d) / "model.safetensors"), "pt") as f:
        for k in f.keys():
            state[k.removeprefix("bert.")] = f.get_tensor(k)
    state.pop("embeddings.position_ids", None)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"check_pruned_hf: missing={missing} unexpected={unexpected}")
    return model


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", help="HF model dir (config.json + model.safetensors)")
    p.add_argument("--tokenizer", help="tokenizer dir (default: DIR if it has tokenizer.json, else MiniLM)")
    p.add_argument("--strict-hf", action="store_true", help="fail if AutoModel.from_pretrained cannot load it")
    args = p.parse_args()

    torch.set_num_threads(2)
    d = Path(args.dir)
    if not (d / "config.json").is_file() or not (d / "model.safetensors").is_file():
        sys.exit(f"check_pruned_hf: {d} needs config.json and model.safetensors")
    tok_dir = args.tokenizer or (d if (d / "tokenizer.json").is_file() else REPO / "data/models/all-MiniLM-L6-v2")
    shapes = stored_shapes(d)

    how, note = "AutoModel.from_pretrained", None
    try:
        model, info = AutoModel.from_pretrained(d, output_loading_info=True)
        bad = {k: v for k, v in info.items() if v and k != "unexpected_keys"}
        unexpected = [k for k in info.get("unexpected_keys", []) if not k.endswith("position_ids")]
        if bad or unexpected:
            sys.exit(f"check_pruned_hf: HF loaded {d} incompletely: {bad} unexpected={unexpected}")
    except (RuntimeError, ValueError) as e:  # size mismatch: per-layer FFN widths
        lines = [l.strip() for l in str(e).splitlines() if l.strip()]
        note = next((l for l in lines if "size mismatch" in l), lines[0] if lines else repr(e))[:300]
        if args.strict_hf:
            sys.exit(f"check_pruned_hf: AutoModel cannot load {d}: {note}")
        model, how = load_with_ffn_resize(d, shapes), "from_config + per-layer FFN resize"
    model = model.float().eval()

    tok = AutoTokenizer.from_pretrained(tok_dir)
    enc = tok(SENTENCES, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        cls = model(**enc).last_hidden_state[:, 0]
    layers = model.encoder.layer
    print(json.dumps({
        "dir": str(d),
        "loaded_via": how,
        "hf_error": note,
        "params": sum(p.numel() for p in model.parameters()),
        "pruned_heads": {str(k): sorted(v) for k, v in model.config.pruned_heads.items()},
        "heads_per_layer": [l.attention.self.num_attention_heads for l in layers],
        "ffn_per_layer": [l.intermediate.dense.out_features for l in layers],
        "sentences": SENTENCES,
        "cls": [[round(x, 6) for x in row] for row in cls.tolist()],
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()

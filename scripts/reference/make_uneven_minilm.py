#!/usr/bin/env python3
"""Write an unevenly pruned MiniLM the way sekator does, and check the remote code against a masked original.

Why: the Hub-style remote code in crates/model/python/ (copied into every pruned model dir) must load such
a directory and compute what the unpruned model computes with the same heads and FFN neurons switched off.
This builds that directory without the Rust side: each layer loses a different number of heads (original
indices, remaining heads kept in original order) and of FFN neurons, by slicing model.safetensors; config.json
carries auto_map / pruned_heads / intermediate_sizes / add_pooling_layer as sekator writes them; the two .py
files, the tokenizer and the sentence-transformers files are copied.

The check (skip with --no-check) runs the ORIGINAL stock BertModel with those heads masked (head_mask where
transformers still has it, 4.x; else the removed heads' columns of attention.output.dense zeroed, which is
the same product) and those FFN neurons zeroed (their columns of output.dense), layers dropped with
--keep-layers, and compares against AutoModel.from_pretrained(out, trust_remote_code=True):
last_hidden_state (real tokens) and pooler_output <= 1e-5 in f32, <= 1e-10 in float64, no missing/unexpected/mismatched keys; then
SentenceTransformer(out, trust_remote_code=True).encode against the masked model mean-pooled and
L2-normalised. Prints one JSON line; exits 1 on a failure.

    python3 scripts/fetch_model.py minilm
    /root/venvs/portable-tf5/bin/python scripts/reference/make_uneven_minilm.py [--out DIR]
"""

import argparse
import inspect
import json
import random
import shutil
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoTokenizer

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "data/models/all-MiniLM-L6-v2"
CODE = REPO / "crates/model/python"
PROBE = REPO / "data/en-ru/pairs_dev.tsv"
# Heads / FFN neurons removed per layer of MiniLM (12 heads, 1536 neurons): every layer different,
# one layer untouched, one with a single head left.
HEADS_REMOVED = [2, 5, 0, 7, 3, 11]
FFN_REMOVED = [1327, 616, 0, 900, 100, 1500]
COPY = ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "modules.json",
        "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling", "2_Normalize"]
FALLBACK_TEXTS = ["A man is playing a guitar on the street.", "Мужчина играет на гитаре на улице.",
                  "Pruned encoders should still embed sentences well.", "short", "x " * 300]


def choose(src_cfg, keep_layers, seed):
    """Removed heads and FFN neurons (original indices) of each kept layer, renumbered 0..n-1."""
    rng = random.Random(seed)
    heads, ffn = {}, {}
    for new, old in enumerate(keep_layers):
        heads[new] = sorted(rng.sample(range(src_cfg["num_attention_heads"]), HEADS_REMOVED[old]))
        ffn[new] = sorted(rng.sample(range(src_cfg["intermediate_size"]), FFN_REMOVED[old]))
    return heads, ffn


def slice_weights(w, cfg, keep_layers, heads, ffn, pooler):
    d = cfg["hidden_size"] // cfg["num_attention_heads"]
    out = {k: v for k, v in w.items() if k.startswith("embeddings.") and not k.endswith("position_ids")}
    if pooler:
        out.update({k: v for k, v in w.items() if k.startswith("pooler.")})
    for new, old in enumerate(keep_layers):
        src, dst = f"encoder.layer.{old}.", f"encoder.layer.{new}."
        kept_heads = [h for h in range(cfg["num_attention_heads"]) if h not in heads[new]]
        rows = torch.tensor([h * d + j for h in kept_heads for j in range(d)], dtype=torch.long)
        neurons = torch.tensor([n for n in range(cfg["intermediate_size"]) if n not in set(ffn[new])], dtype=torch.long)
        for k, v in w.items():
            if not k.startswith(src):
                continue
            name = k[len(src):]
            if name.startswith("attention.self."):
                v = v.index_select(0, rows)
            elif name == "attention.output.dense.weight":
                v = v.index_select(1, rows)
            elif name.startswith("intermediate.dense."):
                v = v.index_select(0, neurons)
            elif name == "output.dense.weight":
                v = v.index_select(1, neurons)
            out[dst + name] = v.contiguous()
    return out


def write_dir(args, keep_layers, heads, ffn):
    src, out = Path(args.src), Path(args.out)
    cfg = json.loads((src / "config.json").read_text())
    w = load_file(str(src / "model.safetensors"))
    pooler = "pooler.dense.weight" in w and not args.no_pooler
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    save_file(slice_weights(w, cfg, keep_layers, heads, ffn, pooler), str(out / "model.safetensors"),
              metadata={"format": "pt"})
    new = dict(cfg)  # teacher keys kept, as sekator does; the owned keys below rewritten
    new.update(
        architectures=["SekatorBertModel"], model_type="sekator_bert",
        auto_map={"AutoConfig": "configuration_sekator_bert.SekatorBertConfig",
                  "AutoModel": "modeling_sekator_bert.SekatorBertModel"},
        num_hidden_layers=len(keep_layers),
        intermediate_sizes=[cfg["intermediate_size"] - len(ffn[i]) for i in range(len(keep_layers))],
        pruned_heads={str(i): h for i, h in heads.items() if h},
        pruned_ffn={str(i): n for i, n in ffn.items() if n},
        add_pooling_layer=pooler,
    )
    (out / "config.json").write_text(json.dumps(new, indent=2) + "\n")
    for f in ("configuration_sekator_bert.py", "modeling_sekator_bert.py"):
        shutil.copy(CODE / f, out / f)
    for f in COPY:
        p = src / f
        if p.is_dir():
            shutil.copytree(p, out / f)
        elif p.is_file():
            shutil.copy(p, out / f)
    return pooler


def masked_reference(src, keep_layers, heads, ffn):
    """The stock unpruned BertModel with the removed heads and FFN neurons switched off."""
    model = AutoModel.from_pretrained(src, attn_implementation="eager").float().eval()
    d = model.config.hidden_size // model.config.num_attention_heads
    layers = model.encoder.layer
    use_head_mask = "head_mask" in inspect.signature(model.forward).parameters
    head_mask = torch.ones(len(keep_layers), model.config.num_attention_heads)
    with torch.no_grad():
        for new, old in enumerate(keep_layers):
            layer = layers[old]
            layer.output.dense.weight[:, ffn[new]] = 0.0
            for h in heads[new]:
                if use_head_mask:
                    head_mask[new, h] = 0.0
                else:
                    layer.attention.output.dense.weight[:, h * d:(h + 1) * d] = 0.0
    model.encoder.layer = torch.nn.ModuleList(layers[i] for i in keep_layers)
    model.config.num_hidden_layers = len(keep_layers)
    kwargs = {"head_mask": head_mask} if use_head_mask else {}
    return model, kwargs, "head_mask" if use_head_mask else "zeroed attention.output.dense columns"


def probe_texts(n):
    if not PROBE.is_file():
        return FALLBACK_TEXTS
    rows = [l.rstrip("\n").split("\t") for l in PROBE.open(encoding="utf-8")][1:n + 1]
    return [r[0] for r in rows] + [r[1] for r in rows] + FALLBACK_TEXTS[-2:]


def check(args, keep_layers, heads, ffn, pooler):
    from sentence_transformers import SentenceTransformer

    texts = probe_texts(16)
    # trust_remote_code here too: transformers 5's AutoTokenizer reads config.json (auto_map) and would prompt.
    tok = AutoTokenizer.from_pretrained(args.out, trust_remote_code=True)
    enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    ref, kwargs, how = masked_reference(args.src, keep_layers, heads, ffn)
    model, info = AutoModel.from_pretrained(args.out, trust_remote_code=True, output_loading_info=True)
    bad = {k: list(v) for k, v in info.items() if k != "error_msgs" and v}
    bad.update({"error_msgs": list(info["error_msgs"])} if info.get("error_msgs") else {})
    model.eval()
    with torch.no_grad():
        r = ref(**enc, **kwargs)
        o = model(**enc)
    # Real tokens only: padding rows are never pooled, and there the f32 noise of a different summation
    # order (sliced vs zeroed matrices) grows to ~5e-5. The float64 run pins the identity exactly.
    mask = enc["attention_mask"].unsqueeze(-1).float()
    diff_hidden = ((r.last_hidden_state - o.last_hidden_state) * mask).abs().max().item()
    with torch.no_grad():
        diff_f64 = (ref.double()(**enc, **{k: v.double() for k, v in kwargs.items()}).last_hidden_state
                    - model.double()(**enc).last_hidden_state).abs().max().item()
    ref.float(), model.float()
    diff_pool = (r.pooler_output - o.pooler_output).abs().max().item() if pooler else None
    if not pooler and o.pooler_output is not None:
        bad["pooler"] = "pooler_output present without pooler weights"

    mean = (r.last_hidden_state * mask).sum(1) / mask.sum(1)
    want = torch.nn.functional.normalize(mean, dim=-1)
    st = SentenceTransformer(args.out, trust_remote_code=True, device="cpu")
    st.max_seq_length = 128
    got = torch.from_numpy(st.encode(texts, batch_size=8, convert_to_numpy=True))
    diff_st = (got - want).abs().max().item()

    import sentence_transformers
    result = {
        "out": str(args.out), "transformers": transformers.__version__, "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__, "texts": len(texts),
        "reference_masking": how, "dtype_loaded": str(next(model.parameters()).dtype),
        "heads_per_layer": [l.attention.self.num_attention_heads for l in model.encoder.layer],
        "ffn_per_layer": [l.intermediate.dense.out_features for l in model.encoder.layer],
        "max_diff_last_hidden_state": diff_hidden, "max_diff_last_hidden_state_f64_all_positions": diff_f64, "max_diff_pooler_output": diff_pool,
        "max_diff_st_encode": diff_st, "loading_problems": bad,
    }
    ok = (not bad and diff_hidden <= 1e-5 and diff_f64 <= 1e-10 and (diff_pool is None or diff_pool <= 1e-5) and diff_st <= 1e-5
          and next(model.parameters()).dtype == torch.float32)
    result["ok"] = ok
    print(json.dumps(result))
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", default=str(SRC), help="unpruned MiniLM dir (scripts/fetch_model.py minilm)")
    p.add_argument("--out", default=str(REPO / "data/models/minilm-uneven"))
    p.add_argument("--keep-layers", default="0,1,2,3,4,5", help="original layers to keep, in order (e.g. 0,2,4,5)")
    p.add_argument("--no-pooler", action="store_true", help="drop pooler.dense.* (add_pooling_layer false)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-check", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(2)
    if not (Path(args.src) / "config.json").is_file():
        sys.exit(f"make_uneven_minilm: {args.src} missing; run python3 scripts/fetch_model.py minilm")

    keep = [int(x) for x in args.keep_layers.split(",")]
    src_cfg = json.loads((Path(args.src) / "config.json").read_text())
    heads, ffn = choose(src_cfg, keep, args.seed)
    pooler = write_dir(args, keep, heads, ffn)
    if not args.no_check and not check(args, keep, heads, ffn, pooler):
        sys.exit(1)


if __name__ == "__main__":
    main()

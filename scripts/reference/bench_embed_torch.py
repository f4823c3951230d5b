#!/usr/bin/env python3
"""PyTorch baseline for embedding throughput (sentences/s), for BENCHMARKS.md.

Why: the Rust encoder's speed is reported as a ratio to this number, so the
setup mirrors the Rust benchmark: MiniLM f32 on CPU with 2 threads,
max_length 128, CLS and mean pooling both computed. By default the texts are
tokenized once, sorted by token count and batched in that order, each batch
padded to its own longest row: what sentence-transformers' `encode` and
sekator's encoder do (less padding). `--order file` keeps file order (the
unfair baseline of BENCHMARKS.md before 2026-12-02). Tokenization is inside
the timed region (the Rust side tokenizes too). One untimed warm-up pass,
then one timed pass over all texts for each batch size.

    /root/venvs/sekator-ref/bin/python scripts/reference/bench_embed_torch.py \
        /work/shared/data/encodechka/sentences_sample.txt
"""

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

REPO = Path(__file__).resolve().parents[2]


def batches(tok, texts, batch, max_length, order):
    if order == "file":
        for i in range(0, len(texts), batch):
            yield tok(texts[i:i + batch], padding=True, truncation=True,
                      max_length=max_length, return_tensors="pt")
        return
    ids = tok(texts, truncation=True, max_length=max_length)["input_ids"]
    ids.sort(key=len)
    for i in range(0, len(ids), batch):
        yield tok.pad({"input_ids": ids[i:i + batch]}, padding=True, return_tensors="pt")


def embed_all(tok, model, texts, batch, max_length, order):
    for enc in batches(tok, texts, batch, max_length, order):
        hidden = model(**enc).last_hidden_state
        cls = hidden[:, 0]
        m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * m).sum(1) / m.sum(1)
        del cls, mean


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("texts", help="one sentence per line")
    p.add_argument("--model", default=str(REPO / "data/models/all-MiniLM-L6-v2"))
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--order", choices=["length", "file"], default="length",
                   help="batch texts sorted by token count (default, as sentence-transformers) or in file order")
    p.add_argument("--batches", default="1,32", help="batch sizes to time, comma-separated")
    p.add_argument("--fp32-precision", choices=["ieee", "bf16"], default="ieee",
                   help="bf16 lets oneDNN round f32 matmul inputs to bf16 (AMX where the CPU has it): "
                        "faster, not f32-accurate; a labelled extra row of bench.sh")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    if args.fp32_precision == "bf16":
        torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    texts = [l.strip() for l in open(args.texts, encoding="utf-8") if l.strip()]
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model).float().eval()

    result = {"impl": "pytorch", "order": args.order, "texts": len(texts), "max_length": args.max_length,
              "fp32_precision": args.fp32_precision}
    with torch.inference_mode():
        for batch in [int(b) for b in args.batches.split(",")]:
            embed_all(tok, model, texts[:64], batch, args.max_length, args.order)  # warm-up
            t0 = time.perf_counter()
            embed_all(tok, model, texts, batch, args.max_length, args.order)
            result[f"batch{batch}_sent_per_s"] = round(len(texts) / (time.perf_counter() - t0), 2)
    result.update(torch=torch.__version__, threads=torch.get_num_threads(),
                  attn=model.config._attn_implementation)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

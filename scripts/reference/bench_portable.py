#!/usr/bin/env python3
"""Texts/s of one model dir under PyTorch (remote code), ONNX Runtime f32 / int8, and optionally sekator's embed.

Why: a pruned checkpoint is shipped for stock runtimes, so its speed there (not only in sekator) is what a
user gets. Setup for all runtimes: 2 threads, max length 128, texts sorted by token length and cut into
batches of 1 and 32 (each padded to its own longest row), tokenization and pooling inside the timed
region. PyTorch: AutoModel(trust_remote_code=True), eval, no_grad. ORT: intra_op_num_threads=2,
sequential execution, CPU provider. Models/sessions are loaded before timing; `--embed BIN` is timed as
a whole process (`embed --batch-size B`: model load, tokenizer and file I/O included; it sorts by length
itself). Runtimes alternate within each of --rounds rounds (so drift hits all alike) after one untimed
warm-up; the table gives the median texts/s and the min..max over rounds.

    /root/venvs/portable-tf5/bin/python scripts/reference/bench_portable.py MODEL_DIR \
        [--texts data/en-ru/pairs_dev.tsv] [--limit 512] [--embed target/release/embed]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_portable import pool, pooling_of  # noqa: E402  (same pooling as the parity check)


def read_texts(path, limit):
    """A TSV with header en<TAB>ru gives both sides (English first); any other file one text per line."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if path.endswith(".tsv") and lines and lines[0].split("\t")[:2] == ["en", "ru"]:
        rows = [l.split("\t") for l in lines[1:] if l.strip()]
        texts = [r[0] for r in rows] + [r[1] for r in rows]
    else:
        texts = [l for l in lines if l.strip()]
    return [t.strip() for t in texts][:limit]


def batches(tok, texts, size, max_length):
    """Length-sorted batches (longest first), computed once outside the timing."""
    lengths = [len(ids) for ids in tok(texts, truncation=True, max_length=max_length)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    return [[texts[i] for i in order[j:j + size]] for j in range(0, len(order), size)]


def torch_runner(d, tok, pooling, normalize, max_length):
    import torch
    from transformers import AutoModel
    model = AutoModel.from_pretrained(d, trust_remote_code=True).eval()

    def run(batch_list):
        with torch.no_grad():
            for b in batch_list:
                enc = tok(b, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
                o = model(**enc)
                po = o.pooler_output.numpy() if o.pooler_output is not None else None
                pool(o.last_hidden_state.numpy(), enc["attention_mask"].numpy(), po, pooling, normalize)
    return run


def ort_runner(path, tok, pooling, normalize, max_length, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    inputs = [i.name for i in sess.get_inputs()]
    names = [o.name for o in sess.get_outputs()]

    def run(batch_list):
        for b in batch_list:
            enc = tok(b, padding=True, truncation=True, max_length=max_length, return_tensors="np")
            outs = dict(zip(names, sess.run(None, {k: enc[k].astype(np.int64) for k in inputs})))
            hidden = outs.get("last_hidden_state", outs[names[0]])
            pool(hidden, enc["attention_mask"], outs.get("pooler_output"), pooling, normalize)
    return run


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", help="model dir (config.json, model.safetensors, tokenizer, optional onnx/)")
    p.add_argument("--texts", default=str(REPO / "data/en-ru/pairs_dev.tsv"), help="probe TSV (en, ru) or one text per line")
    p.add_argument("--limit", type=int, default=512, help="texts to embed per timed pass")
    p.add_argument("--embed", help="sekator's embed binary, timed as a whole process")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batches", default="1,32")
    args = p.parse_args()

    import torch
    from transformers import AutoTokenizer
    torch.set_num_threads(args.threads)
    d = Path(args.dir)
    texts = read_texts(args.texts, args.limit)
    sizes = [int(b) for b in args.batches.split(",")]
    tok = AutoTokenizer.from_pretrained(d, trust_remote_code=True)
    pooling, normalize = pooling_of(d)
    split = {b: batches(tok, texts, b, args.max_length) for b in sizes}

    runners = {("PyTorch (AutoModel, remote code)", f"torch {torch.__version__}, transformers {version('transformers')}"):
               torch_runner(d, tok, pooling, normalize, args.max_length)}
    absent = []
    for label, f in (("ORT f32", "onnx/model.onnx"), ("ORT int8", "onnx/model_qint8.onnx")):
        key = (f"{label} ({f})", f"onnxruntime {version('onnxruntime')}")
        if (d / f).is_file():
            runners[key] = ort_runner(d / f, tok, pooling, normalize, args.max_length, args.threads)
        else:
            absent.append(key)

    tmp = tempfile.TemporaryDirectory()
    if args.embed:
        texts_file = Path(tmp.name) / "texts.txt"
        texts_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
        ver = subprocess.run([args.embed, "--version"], capture_output=True, text=True).stdout.strip()

        def embed_runner(b):
            cmd = [args.embed, "--model", str(d), "--input", str(texts_file), "--output",
                   str(Path(tmp.name) / "out.npy"), "--max-length", str(args.max_length), "--batch-size", str(b)]
            subprocess.run(cmd, check=True, capture_output=True)
        runners[("sekator embed (whole process)", ver or args.embed)] = embed_runner

    def timed(key, run, b):
        t0 = time.perf_counter()
        if key[0].startswith("sekator"):
            run(b)
        else:
            run(split[b])
        return len(texts) / (time.perf_counter() - t0)

    for key, run in runners.items():  # warm-up: a short untimed pass each
        run(max(sizes)) if key[0].startswith("sekator") else run(split[max(sizes)][:2])
    load_before = os.getloadavg()[0]
    rates = {(key, b): [] for key in runners for b in sizes}
    for r in range(args.rounds):
        for b in sizes:
            for key, run in runners.items():
                rates[(key, b)].append(timed(key, run, b))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    tmp.cleanup()

    # The load average shows whether other work competed for the cores (torch's 2 OpenMP threads slow
    # down many times over when they do; such numbers are not worth keeping).
    print(f"{len(texts)} texts from {args.texts}, max length {args.max_length}, {args.threads} threads, "
          f"{args.rounds} rounds, pooling {pooling}{' + L2' if normalize else ''}; model {d}; "
          f"load average before/after {load_before:.2f}/{os.getloadavg()[0]:.2f}\n")
    print("| runtime | version | batch | texts/s (median) | min..max |\n| --- | --- | --- | --- | --- |")
    for (key, b), rs in rates.items():
        print(f"| {key[0]} | {key[1]} | {b} | {statistics.median(rs):.1f} | {min(rs):.1f}..{max(rs):.1f} |")
    for key in absent:
        print(f"| {key[0]} | {key[1]} | - | absent | - |")


if __name__ == "__main__":
    main()

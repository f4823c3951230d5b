#!/usr/bin/env python3
"""Check that a model dir written by sekator embeds the same under every runtime a user may pick.

Why: sekator ships pruned checkpoints for stock tooling (transformers with the dir's remote code,
sentence-transformers, ONNX Runtime). Each must reproduce what sekator's own `embed` computes. For each
MODEL_DIR the probe texts (first --n pairs of the TSV, English then Russian side: 2n texts) are embedded by

  reference   `embed --model DIR --input texts.txt --output out.npy --max-length 128` (the checkpoint's
              pooling and normalisation, from modules.json / 1_Pooling); without --embed the AutoModel
              row below becomes the reference instead
  AutoModel   AutoModel.from_pretrained(DIR, trust_remote_code=True), pooled the way embed pools
  ST          SentenceTransformer(DIR, trust_remote_code=True).encode
  ORT f32     onnxruntime on DIR/onnx/model.onnx (inputs input_ids, attention_mask, token_type_ids int64;
              output last_hidden_state [+ pooler_output]), pooled the same way
  ORT int8    DIR/onnx/model_qint8.onnx: min/mean cosine to the ORT f32 vectors (quantisation error is
              no bug, so this row has its own threshold, --int8-min-cos)

and a markdown table is printed (model, runtime + version, max |diff|, pass/fail at --tol). A runtime
whose file or package is missing gets an "absent" row, which does not fail. Exits 1 on any failure.

    python scripts/reference/check_portable.py --embed target/release/embed \
        --probe data/en-ru/pairs_dev.tsv --n 32 MODEL_DIR [MODEL_DIR...]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]

HEADER = "| model | runtime | version | max abs diff | result |\n| --- | --- | --- | --- | --- |"


def probe_texts(tsv, n):
    """First n data rows of a TSV with header `en<TAB>ru`; English side first, then Russian."""
    lines = Path(tsv).read_text(encoding="utf-8").splitlines()
    cols = lines[0].split("\t")
    en, ru = cols.index("en"), cols.index("ru")
    rows = [l.split("\t") for l in lines[1:] if l.strip()][:n]
    return [r[en].strip() for r in rows] + [r[ru].strip() for r in rows]


def pooling_of(d):
    """(pooling, normalize) exactly as sekator's embed decides: the sentence-transformers Pooling config
    (mean or cls), else the pooler when the weights have one, else CLS; Normalize if modules.json has it."""
    d = Path(d)
    modules = json.loads((d / "modules.json").read_text()) if (d / "modules.json").is_file() else []
    normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
    pool_dir = next((m["path"] for m in modules if m.get("type", "").endswith("Pooling")), "1_Pooling")
    cfg_path = d / pool_dir / "config.json"
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        mode = cfg.get("pooling_mode")  # sentence-transformers >= 6 writes one key instead of booleans
        if cfg.get("pooling_mode_mean_tokens") or mode == "mean":
            return "mean", normalize
        if cfg.get("pooling_mode_cls_token") or mode == "cls":
            return "cls", normalize
    cfg = json.loads((d / "config.json").read_text())
    has_pooler = cfg.get("add_pooling_layer", True) and _has_pooler_weights(d)
    return ("pooler" if has_pooler else "cls"), normalize


def _has_pooler_weights(d):
    from safetensors import safe_open
    with safe_open(str(Path(d) / "model.safetensors"), "np") as f:
        return any(k.endswith("pooler.dense.weight") for k in f.keys())


def pool(hidden, mask, pooler_output, pooling, normalize):
    """numpy [b, s, h] -> [b, h], masked mean / CLS / pooler, then optional L2 normalisation."""
    if pooling == "mean":
        m = mask[..., None].astype(np.float32)
        v = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
    elif pooling == "cls":
        v = hidden[:, 0]
    else:
        if pooler_output is None:
            raise RuntimeError("pooling is 'pooler' but the runtime gave no pooler_output")
        v = pooler_output
    if normalize:
        v = v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)
    return v.astype(np.float32)


def tokenize(d, texts, max_length):
    from transformers import AutoTokenizer
    # trust_remote_code: transformers 5's AutoTokenizer reads config.json and would prompt on auto_map.
    tok = AutoTokenizer.from_pretrained(d, trust_remote_code=True)
    return tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="np")


def run_embed(binary, d, texts_file, max_length, tmp):
    out = Path(tmp) / "embed.npy"
    cmd = [binary, "--model", str(d), "--input", str(texts_file), "--output", str(out), "--max-length", str(max_length)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"embed exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return np.load(out)


def run_automodel(d, enc, pooling, normalize):
    import torch
    from transformers import AutoModel
    model, info = AutoModel.from_pretrained(d, trust_remote_code=True, output_loading_info=True)
    bad = {k: list(v) for k, v in info.items() if v}
    if bad:
        raise RuntimeError(f"loading problems: {bad}")
    model.eval()  # no .float(): a config dtype that transformers 5 honours must show up as a diff
    with torch.no_grad():
        o = model(**{k: torch.from_numpy(v) for k, v in enc.items()})
    pooled = o.pooler_output.numpy() if o.pooler_output is not None else None
    return pool(o.last_hidden_state.numpy(), enc["attention_mask"], pooled, pooling, normalize)


def run_st(d, texts, max_length):
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(str(d), trust_remote_code=True, device="cpu")
    st.max_seq_length = max_length
    return st.encode(texts, batch_size=32, convert_to_numpy=True).astype(np.float32)


def run_ort(path, enc, pooling, normalize, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = {i.name: enc[i.name].astype(np.int64) for i in sess.get_inputs()}
    names = [o.name for o in sess.get_outputs()]
    outs = dict(zip(names, sess.run(None, feed)))
    hidden = outs.get("last_hidden_state", outs[names[0]])
    return pool(hidden, enc["attention_mask"], outs.get("pooler_output"), pooling, normalize)


def version(pkg):
    try:
        from importlib.metadata import version as v
        return v(pkg)
    except Exception:
        return "-"


def embed_version(binary):
    proc = subprocess.run([binary, "--version"], capture_output=True, text=True)
    return proc.stdout.strip() or "-"


def check_dir(d, args, texts, texts_file, tmp):
    """Rows (runtime, version, diff text, result) for one model dir; result is pass/FAIL/absent."""
    rows = []
    pooling, normalize = pooling_of(d)
    enc = tokenize(d, texts, args.max_length)
    tv = f"transformers {version('transformers')}, torch {version('torch')}"

    def attempt(fn):
        try:
            return fn(), None
        except Exception as e:  # a runtime that cannot load the dir is a failure, shown in the table
            return None, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"

    ref, ref_name = None, None
    if args.embed:
        if Path(args.embed).is_file():
            ref, err = attempt(lambda: run_embed(args.embed, d, texts_file, args.max_length, tmp))
            rows.append(("sekator embed (reference)", embed_version(args.embed), err or f"{pooling}{' + L2' if normalize else ''}",
                         "FAIL" if err else "ref"))
            ref_name = "embed"
        else:
            rows.append(("sekator embed", "-", f"absent ({args.embed} not built)", "absent"))

    results = {}
    results["AutoModel (trust_remote_code)"] = (tv, attempt(lambda: run_automodel(d, enc, pooling, normalize)))
    results["SentenceTransformer.encode"] = (f"sentence-transformers {version('sentence-transformers')}",
                                             attempt(lambda: run_st(d, texts, args.max_length)))
    onnx_f32, onnx_q = Path(d) / "onnx/model.onnx", Path(d) / "onnx/model_qint8.onnx"
    ortv = f"onnxruntime {version('onnxruntime')}"
    try:
        import onnxruntime  # noqa: F401
        have_ort = True
    except ImportError:
        have_ort = False
    if onnx_f32.is_file() and have_ort:
        results["ORT f32 onnx/model.onnx"] = (ortv, attempt(lambda: run_ort(onnx_f32, enc, pooling, normalize, args.threads)))
    else:
        rows_absent = "onnxruntime not installed" if not have_ort else "no onnx/model.onnx"
        results["ORT f32 onnx/model.onnx"] = (ortv, (None, f"absent ({rows_absent})"))

    if ref is None:  # no embed binary: AutoModel stands in as the reference
        got, err = results["AutoModel (trust_remote_code)"][1]
        if got is not None:
            ref, ref_name = got, "AutoModel"
    for name, (ver, (got, err)) in results.items():
        if err:
            rows.append((name, ver, err, "absent" if err.startswith("absent") else "FAIL"))
        elif ref is None:
            rows.append((name, ver, "no reference", "FAIL"))
        elif name.startswith("AutoModel") and ref_name == "AutoModel":
            rows.append((name + " (reference)", ver, "-", "ref"))
        elif got.shape != ref.shape:
            rows.append((name, ver, f"shape {got.shape} vs {ref.shape}", "FAIL"))
        else:
            diff = float(np.abs(got - ref).max())
            rows.append((name, ver, f"{diff:.2e}", "pass" if diff <= args.tol else "FAIL"))

    f32 = results["ORT f32 onnx/model.onnx"][1][0]
    if not onnx_q.is_file() or not have_ort:
        rows.append(("ORT int8 onnx/model_qint8.onnx", ortv, "absent (no onnx/model_qint8.onnx)", "absent"))
    else:
        q, err = attempt(lambda: run_ort(onnx_q, enc, pooling, normalize, args.threads))
        base = f32 if f32 is not None else ref
        if err or base is None:
            rows.append(("ORT int8 onnx/model_qint8.onnx", ortv, err or "no f32 vectors to compare", "FAIL"))
        else:
            cos = (q * base).sum(1) / (np.linalg.norm(q, axis=1) * np.linalg.norm(base, axis=1) + 1e-12)
            text = f"cos to f32: min {cos.min():.4f}, mean {cos.mean():.4f}"
            rows.append(("ORT int8 onnx/model_qint8.onnx", ortv, text, "pass" if cos.min() >= args.int8_min_cos else "FAIL"))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+", metavar="MODEL_DIR")
    p.add_argument("--embed", help="sekator's embed binary (target/release/embed); absent: AutoModel is the reference")
    p.add_argument("--probe", default=str(REPO / "data/en-ru/pairs_dev.tsv"), help="TSV with header en<TAB>ru")
    p.add_argument("--n", type=int, default=32, help="pairs to take (2n texts)")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tol", type=float, default=1e-4, help="max abs diff to the reference that passes")
    p.add_argument("--int8-min-cos", type=float, default=0.95, help="lowest int8-vs-f32 cosine that passes")
    p.add_argument("--rows-only", action="store_true", help="no table header (check_portable.sh joins tables)")
    args = p.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    texts = probe_texts(args.probe, args.n)
    failed = False
    out = [] if args.rows_only else [HEADER]
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = Path(tmp) / "texts.txt"
        texts_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
        for d in args.dirs:
            if not (Path(d) / "config.json").is_file():
                out.append(f"| {d} | - | - | not a model dir (no config.json) | FAIL |")
                failed = True
                continue
            for runtime, ver, diff, result in check_dir(d, args, texts, texts_file, tmp):
                failed |= result == "FAIL"
                out.append(f"| {d} | {runtime} | {ver} | {diff.replace('|', '/')} | {result} |")
    print("\n".join(out), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

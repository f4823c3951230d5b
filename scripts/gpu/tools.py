#!/usr/bin/env python3
"""Small helpers of scripts/gpu-check.sh: probe sentences, parity, reading the binaries' rates, the table.

Every subcommand prints what it found and appends JSON records to --results (one object per line); the
final `summarize` turns those records into gpu_results.md. numpy is needed for `parity` only.

    tools.py probes   --fixture-json F --out probes.txt
    tools.py parity   --results R --fixture F.safetensors --tol 1e-3 --cls A.jsonl --mean B.jsonl [--cpu-cls C --cpu-mean D]
    tools.py distill  --results R --dir OUT_OF_DISTILL --warmup 20 [--log LOG]
    tools.py importance --results R --dir OUT_OF_IMPORTANCE [--log LOG]
    tools.py record   --results R key=value key:=number ...
    tools.py cubecl-profile --log cubecl.log [--top 40]
    tools.py summarize --results R --out gpu_results.md
"""

import argparse
import json
import re
import struct
import sys
import time
from pathlib import Path


def append(results, rec):
    line = json.dumps(rec)
    print(line, flush=True)
    if results:
        with open(results, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def parse_value(v):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    if v in ("true", "false"):
        return v == "true"
    return v


# --- probes and parity --------------------------------------------------------------------------------------

def cmd_probes(a):
    meta = json.loads(Path(a.fixture_json).read_text(encoding="utf-8"))
    sents = meta["sentences"]
    bad = [i for i, s in enumerate(sents) if "\n" in s or "\r" in s]
    if bad:
        sys.exit(f"error: probe sentences {bad} contain line breaks; embed reads one text per line")
    Path(a.out).write_text("\n".join(sents) + "\n", encoding="utf-8")
    print(f"{a.out}: {len(sents)} probe sentences (max_length {meta.get('max_length')})")


def read_safetensors(path):
    import numpy as np

    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    kinds = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}
    out = {}
    for k, m in header.items():
        if k == "__metadata__" or m["dtype"] not in kinds:
            continue
        s, e = m["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + s:8 + n + e], dtype=kinds[m["dtype"]]).reshape(m["shape"])
    return out


def read_rows(path):
    import numpy as np

    p = Path(path)
    if p.suffix == ".npy":
        return np.load(p).astype(np.float64)
    return np.array([json.loads(l) for l in p.read_text(encoding="utf-8").splitlines() if l.strip()], dtype=np.float64)


def cmd_parity(a):
    import numpy as np

    ref = read_safetensors(a.fixture)
    rec = {"bench": "parity", "model": a.model, "tol": a.tol, "device": a.device}
    ok = True
    for name, path, cpu in (("cls", a.cls, a.cpu_cls), ("mean", a.mean, a.cpu_mean)):
        if not path:
            continue
        try:
            got = read_rows(path)
        except (OSError, ValueError) as e:
            rec[f"error_{name}"] = f"{path}: {e}"
            ok = False
            continue
        want = ref[name].astype(np.float64)
        if got.shape != want.shape:
            rec[f"error_{name}"] = f"shape {list(got.shape)} != fixture {list(want.shape)}"
            ok = False
            continue
        d = float(np.abs(got - want).max())
        rec[f"max_diff_{name}"] = d
        ok &= d <= a.tol
        if cpu:
            try:
                c = read_rows(cpu)
                rec[f"max_diff_{name}_vs_burn_cpu"] = float(np.abs(got - c).max())
                rec[f"max_diff_{name}_burn_cpu_vs_fixture"] = float(np.abs(c - want).max())
            except (OSError, ValueError) as e:
                rec[f"note_{name}_cpu"] = f"{cpu}: {e}"
    rec["status"] = "PASS" if ok and any(k.startswith("max_diff") for k in rec) else "FAIL"
    append(a.results, rec)
    return 0 if rec["status"] == "PASS" else 1


# --- rates of the binaries ----------------------------------------------------------------------------------

def find_key(obj, key):
    """First value of `key` anywhere in a JSON tree."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            r = find_key(v, key)
            if r is not None:
                return r
    elif isinstance(obj, list):
        for v in obj:
            r = find_key(v, key)
            if r is not None:
                return r
    return None


def last_rate_in_log(log):
    if not log or not Path(log).exists():
        return None
    rates = re.findall(r"([0-9]+(?:\.[0-9]+)?) pairs/s", Path(log).read_text(encoding="utf-8", errors="replace"))
    return float(rates[-1]) if rates else None


def cmd_distill(a):
    d = Path(a.dir)
    rec = {"bench": "burn_distill"}
    manifest = d / "manifest.json"
    if manifest.exists():
        m = json.loads(manifest.read_text(encoding="utf-8"))
        for k in ("pairs_per_s", "total_steps", "steps_this_run", "train_pairs", "teacher_forward_batches"):
            v = find_key(m, k)
            if v is not None:
                rec[k] = v
        for k in ("first_loss", "last_loss"):
            v = find_key(m, k)
            if isinstance(v, dict) and "total" in v:
                rec[k] = v["total"]
        cfg = m.get("config") or {}
        for k in ("batch_size", "max_length", "pooling", "device"):
            v = find_key(cfg, k) if isinstance(cfg, dict) else None
            if v is not None:
                rec[k] = v
        if "seconds" in m:
            rec["run_seconds"] = m["seconds"]
    metrics = d / "metrics.jsonl"
    if metrics.exists():
        windows = []
        for line in metrics.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("kind", "train") == "train" and "pairs_per_s" in r and "step" in r:
                windows.append((r["step"], r["pairs_per_s"]))
        # Each record covers the steps since the previous one: pairs/s -> seconds per window.
        prev, secs, steps = 0, 0.0, 0
        for step, pps in windows:
            n = step - prev
            if prev >= a.warmup and pps > 0:
                secs += n * a.batch / pps
                steps += n
            prev = step
        if steps:
            rec["pairs_per_s_steady"] = round(steps * a.batch / secs, 2)
            rec["steady_steps"] = steps
            rec["warmup_steps"] = a.warmup
        if windows and "pairs_per_s" not in rec:
            total = sum((s - p) * a.batch / r for (s, r), p in zip(windows, [0] + [w[0] for w in windows[:-1]]) if r > 0)
            rec["pairs_per_s"] = round(windows[-1][0] * a.batch / total, 2) if total else None
    if "pairs_per_s" not in rec:
        r = last_rate_in_log(a.log)
        if r is not None:
            rec["pairs_per_s"] = r
            rec["source"] = "log"
    rec["status"] = "PASS" if rec.get("pairs_per_s") else "FAIL"
    append(a.results, rec)
    return 0 if rec["status"] == "PASS" else 1


def cmd_importance(a):
    d = Path(a.dir)
    rec = {"bench": "burn_importance"}
    meta_path = d / "importance.json"
    if meta_path.exists():
        m = json.loads(meta_path.read_text(encoding="utf-8"))
        for k in ("pairs_per_s", "pairs_per_s_after_first", "samples", "batches", "batch_size", "max_length",
                  "seconds", "grad_seconds", "device", "loss"):
            v = find_key(m, k)
            if v is not None and not isinstance(v, (dict, list)):
                rec[k] = v
    if "pairs_per_s" not in rec:
        r = last_rate_in_log(a.log)
        if r is not None:
            rec["pairs_per_s"] = r
            rec["source"] = "log"
    rec["status"] = "PASS" if rec.get("pairs_per_s") else "FAIL"
    append(a.results, rec)
    return 0 if rec["status"] == "PASS" else 1


def cmd_record(a):
    rec = {}
    for kv in a.pairs:
        k, _, v = kv.partition("=")
        if k.endswith(":"):  # key:=value -> number / bool; key=value -> string
            rec[k[:-1]] = parse_value(v)
        else:
            rec[k] = v
    append(a.results, rec)
    return 0


# --- cubecl profile ----------------------------------------------------------------------------------------

UNITS = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def parse_duration(text):
    m = re.fullmatch(r"([0-9.]+)(ns|µs|us|ms|s)", text.strip())
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def cmd_cubecl_profile(a):
    """Top kernels by total time from the `| duration | name` lines cubecl's profiler logs."""
    totals, counts = {}, {}
    line_re = re.compile(r"^\|\s*([0-9.]+(?:ns|µs|us|ms|s))\s*\|\s*(.+?)\s*$")
    with open(a.log, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = line_re.match(line)
            if not m:
                continue
            d = parse_duration(m.group(1))
            if d is None:
                continue
            name = m.group(2).rstrip("| ").strip()
            if len(name) > 160:
                name = name[:157] + "..."
            totals[name] = totals.get(name, 0.0) + d
            counts[name] = counts.get(name, 0) + 1
    if not totals:
        print(f"{a.log}: no profile lines (| duration | kernel) found")
        return 1
    total = sum(totals.values())
    print(f"## cubecl kernels: {sum(counts.values())} launches, {len(totals)} kinds, {total * 1e3:.1f} ms in all; top {a.top}")
    print(f"{'ms':>10} {'%':>6} {'calls':>7}  kernel")
    for name, t in sorted(totals.items(), key=lambda kv: -kv[1])[: a.top]:
        print(f"{t * 1e3:10.2f} {100 * t / total:6.1f} {counts[name]:7d}  {name}")
    return 0


# --- the table ----------------------------------------------------------------------------------------------

def fmt(v, digits=1):
    if v is None:
        return "—"
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e6):
            return f"{v:.2e}"
        return f"{v:.{digits}f}"
    return str(v)


def ratio(a, b):
    try:
        return a / b if a and b else None
    except TypeError:
        return None


def cmd_summarize(a):
    recs = []
    if Path(a.results).exists():
        for line in Path(a.results).read_text(encoding="utf-8").splitlines():
            try:
                recs.append(json.loads(line))
            except ValueError:
                pass
    by = {}
    for r in recs:
        by.setdefault(r.get("bench"), []).append(r)
    env = {}
    for r in by.get("env", []):
        env.update(r)
    status = {r.get("part"): r for r in by.get("status", [])}
    L = []
    L.append(f"# sekator GPU check — {env.get('gpu', 'unknown GPU')} — {env.get('date', time.strftime('%Y-%m-%d'))}")
    L.append("")
    if env.get("smoke"):
        L.append("**SMOKE RUN** (GPU_CHECK_SMOKE=1: CPU device, tiny sizes) — the numbers prove the flow only.")
        L.append("")
    L.append("| | |")
    L.append("| --- | --- |")
    for k, label in (("gpu", "GPU"), ("driver", "driver"), ("cuda_runtime", "CUDA (driver API)"),
                     ("device", "burn device"), ("torch", "PyTorch"), ("transformers", "transformers"),
                     ("attn", "PyTorch attention"), ("build", "binaries"), ("date", "date (UTC)"),
                     ("total_seconds", "script seconds")):
        if k in env:
            L.append(f"| {label} | {fmt(env[k])} |")
    L.append("")

    # 1 parity
    L.append("## 1. CUDA parity (MiniLM, 16 probe sentences, vs the CPU PyTorch fixture)")
    L.append("")
    L.append("| pooling | max abs diff vs fixture | vs burn CPU | burn CPU vs fixture | tol | status |")
    L.append("| --- | --- | --- | --- | --- | --- |")
    for r in by.get("parity", []):
        for p in ("cls", "mean"):
            if f"max_diff_{p}" in r or f"error_{p}" in r:
                L.append(f"| {p} | {fmt(r.get(f'max_diff_{p}')) if f'max_diff_{p}' in r else r.get(f'error_{p}')} | "
                         f"{fmt(r.get(f'max_diff_{p}_vs_burn_cpu'))} | {fmt(r.get(f'max_diff_{p}_burn_cpu_vs_fixture'))} | "
                         f"{fmt(r.get('tol'))} | {r.get('status')} |")
    if not by.get("parity"):
        L.append(f"| — | not measured | | | | {status.get('1', {}).get('status', 'FAIL')} |")
    L.append("")

    # 2+3 training
    mdl = (by.get("model") or [{}])[-1]
    shape = (f"vocab {mdl.get('vocab_size')}, {mdl.get('num_hidden_layers')} layers x {mdl.get('num_attention_heads')} heads, "
             f"hidden {mdl.get('hidden_size')}, FFN {mdl.get('intermediate_size')}") if mdl else "shape not recorded"
    L.append(f"## 2–3. Training at LaBSE-en-ru size (random weights; {shape})")
    L.append("")
    imp = (by.get("burn_importance") or [{}])[-1]
    dis = (by.get("burn_distill") or [{}])[-1]
    tt = [r for r in by.get("torch_train", [])]
    t_main = next((r for r in tt if r.get("attn") == env.get("attn", "sdpa") and not r.get("tf32")), tt[0] if tt else {})
    L.append("| what | burn (sekator) pairs/s | PyTorch pairs/s | burn / PyTorch | target | status |")
    L.append("| --- | --- | --- | --- | --- | --- |")
    L.append(f"| importance, {fmt(imp.get('batches'))} batches of {fmt(imp.get('batch_size'))}, length "
             f"{fmt(imp.get('max_length'))} (after first batch / all) | {fmt(imp.get('pairs_per_s_after_first'))} / "
             f"{fmt(imp.get('pairs_per_s'))} | — | — | — | {imp.get('status', status.get('2a', {}).get('status', 'FAIL'))} |")
    r_steady = ratio(dis.get("pairs_per_s_steady"), t_main.get("pairs_per_s_steady"))
    r_all = ratio(dis.get("pairs_per_s"), t_main.get("pairs_per_s"))
    verdict = "—" if r_steady is None else ("MET" if r_steady >= 0.8 else "BELOW")
    L.append(f"| distill step, batch {fmt(t_main.get('batch', dis.get('batch_size')))}, length "
             f"{fmt(t_main.get('max_length', dis.get('max_length')))}, {fmt(dis.get('total_steps'))} steps: steady "
             f"(after step {fmt(dis.get('warmup_steps'))}) | {fmt(dis.get('pairs_per_s_steady'))} | "
             f"{fmt(t_main.get('pairs_per_s_steady'))} ({t_main.get('attn', '?')}) | {fmt(r_steady, 2)} | >= 0.8 | {verdict} |")
    L.append(f"| distill step, all steps (JIT/autotune included) | {fmt(dis.get('pairs_per_s'))} | "
             f"{fmt(t_main.get('pairs_per_s'))} | {fmt(r_all, 2)} | | {dis.get('status', 'FAIL')} |")
    for r in tt:
        if r is t_main:
            continue
        L.append(f"| PyTorch variant: attn {r.get('attn')}, tf32 {r.get('tf32')} (steady) | "
                 f"{fmt(dis.get('pairs_per_s_steady'))} | {fmt(r.get('pairs_per_s_steady'))} | "
                 f"{fmt(ratio(dis.get('pairs_per_s_steady'), r.get('pairs_per_s_steady')), 2)} | | |")
    if t_main:
        L.append("")
        L.append(f"PyTorch: {fmt(t_main.get('params_m'))} M parameters, median step {fmt(t_main.get('sec_per_step_median'), 4)} s, "
                 f"peak memory {fmt(t_main.get('max_memory_gib'), 2)} GiB, loss {fmt(t_main.get('first_loss'), 4)} -> "
                 f"{fmt(t_main.get('last_loss'), 4)}. burn loss {fmt(dis.get('first_loss'), 4)} -> {fmt(dis.get('last_loss'), 4)}.")
    L.append("")

    # 4 embedding throughput
    L.append("## 4. Embedding throughput (sentences/s; encodechka sentences_sample.txt repeated, max length 128)")
    L.append("")
    L.append("| model | batch | burn sent/s | burn whole command sent/s | PyTorch sent/s | burn / PyTorch | target |")
    L.append("| --- | --- | --- | --- | --- | --- | --- |")
    torch_e = {(r.get("model"), r.get("batch_size")): r for r in by.get("torch_embed", [])}
    for r in by.get("burn_embed", []):
        t = torch_e.get((r.get("model"), r.get("batch_size")), {})
        rr = ratio(r.get("sent_per_s"), t.get("sent_per_s"))
        tgt = ">= 1.0" if r.get("batch_size") == 256 else ""
        if tgt and rr is not None:
            tgt += " MET" if rr >= 1.0 else " BELOW"
        L.append(f"| {r.get('model')} | {r.get('batch_size')} | {fmt(r.get('sent_per_s'))} | "
                 f"{fmt(r.get('sent_per_s_whole'))} | {fmt(t.get('sent_per_s'))} | {fmt(rr, 2)} | {tgt} |")
    if not by.get("burn_embed"):
        L.append("| — | — | not measured | | | | |")
    L.append("")
    L.append("burn sent/s = (texts of the long run − texts of the short run) / (time difference) of two whole `embed`")
    L.append("commands, so process start, model load and kernel JIT cancel out; PyTorch: one timed pass after a warm-up.")
    L.append("")

    # status lines
    L.append("## Parts")
    L.append("")
    L.append("| part | status | seconds | note |")
    L.append("| --- | --- | --- | --- |")
    for r in by.get("status", []):
        L.append(f"| {r.get('part')} {r.get('name', '')} | {r.get('status')} | {fmt(r.get('seconds'))} | {r.get('note', '')} |")
    L.append("")
    Path(a.out).write_text("\n".join(L), encoding="utf-8")
    print("\n".join(L))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("probes")
    s.add_argument("--fixture-json", required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("parity")
    s.add_argument("--results")
    s.add_argument("--fixture", required=True)
    s.add_argument("--model", default="all-MiniLM-L6-v2")
    s.add_argument("--device", default="cuda")
    s.add_argument("--tol", type=float, default=1e-3)
    for k in ("cls", "mean", "cpu-cls", "cpu-mean"):
        s.add_argument(f"--{k}")
    s = sub.add_parser("distill")
    s.add_argument("--results")
    s.add_argument("--dir", required=True)
    s.add_argument("--log")
    s.add_argument("--warmup", type=int, default=20)
    s.add_argument("--batch", type=int, default=64)
    s = sub.add_parser("importance")
    s.add_argument("--results")
    s.add_argument("--dir", required=True)
    s.add_argument("--log")
    s = sub.add_parser("record")
    s.add_argument("--results", required=True)
    s.add_argument("pairs", nargs="*")
    s = sub.add_parser("cubecl-profile")
    s.add_argument("--log", required=True)
    s.add_argument("--top", type=int, default=40)
    s = sub.add_parser("summarize")
    s.add_argument("--results", required=True)
    s.add_argument("--out", required=True)
    a = p.parse_args()
    fn = {"probes": cmd_probes, "parity": cmd_parity, "distill": cmd_distill, "importance": cmd_importance,
          "record": cmd_record, "summarize": cmd_summarize, "cubecl-profile": cmd_cubecl_profile}[a.cmd]
    sys.exit(fn(a) or 0)


if __name__ == "__main__":
    main()

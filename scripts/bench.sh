#!/usr/bin/env bash
# Speed of the Rust stages beside fair PyTorch baselines on this machine: same inputs, same thread count,
# ROUNDS alternated rounds (sekator then PyTorch for each measurement), medians and spreads in
# runs/bench/summary.md (BENCHMARKS.md quotes it), every measurement in runs/bench/results.jsonl.
# Needs the release binaries (`just build`), MiniLM and the data (`just setup`) and the reference venv
# (scripts/reference/README.md). Run on an otherwise idle machine:
#
#     bash scripts/bench.sh            # `just bench`; ROUNDS=5 bash scripts/bench.sh for more
#
# The baselines are the fair ones: PyTorch embeds length-sorted batches (as sentence-transformers'
# `encode` and sekator's encoder do) and trains its student in eval mode (no dropout, as sekator's).
# The earlier, unfair rows (file-order batches, a dropout student) are measured once, labelled as such.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${SEKATOR_REF_PYTHON:-/root/venvs/sekator-ref/bin/python}
ROUNDS=${ROUNDS:-3}
MODEL=$PWD/data/models/all-MiniLM-L6-v2
PAIRS=data/en-ru/pairs.tsv
OUT=runs/bench
BIN=target/release
mkdir -p "$OUT"
: >"$OUT/results.jsonl"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" | tee "$OUT/machine.txt"

# 1,200 Russian texts from three encodechka tasks (short reviews, inappropriate-message texts, STS
# sentences): lengths from a few tokens to the 128-token cap.
TEXTS=$PWD/$OUT/texts_1200.txt
"$PY" - "$TEXTS" <<'EOF'
import csv, sys
out = []
for name, col in [("inappropriate_test.csv", "text"), ("SentiRuEval2016_small_test.csv", "text"),
                  ("stsb_dev.csv", "sentence1")]:
    with open(f"data/encodechka/{name}", encoding="utf-8") as f:
        rows = [" ".join(r[col].split()) for r in csv.DictReader(f)]
    out += [t for t in rows if t][:400]
open(sys.argv[1], "w", encoding="utf-8").write("\n".join(out) + "\n")
EOF

cargo build -q --release -p sekator-model --bench embed_throughput
EMBED=$(ls -t target/release/deps/embed_throughput-* | grep -v '\.d$' | head -1)
# record ROUND WHAT IMPL VALUE: one line of results.jsonl
record() { echo "{\"round\": $1, \"what\": \"$2\", \"impl\": \"$3\", \"value\": $4}" | tee -a "$OUT/results.jsonl"; }
json() { "$PY" -c "import json,sys; print(eval(sys.argv[1], {}, {'j': json.loads(sys.stdin.read().strip().splitlines()[-1])}))" "$1"; }

embed_sekator() {
  SEKATOR_BENCH_BACKENDS=flex SEKATOR_BENCH_BATCHES=32 SEKATOR_BENCH_MODEL=$MODEL SEKATOR_BENCH_TEXTS=$TEXTS \
    "$EMBED" | grep '^{' | json "j['sent_per_s']"
}
embed_torch() { "$PY" scripts/reference/bench_embed_torch.py "$TEXTS" --batches 32 "$@" 2>/dev/null | json "j['batch32_sent_per_s']"; }
importance_sekator() {
  rm -rf "$OUT/importance"
  "$BIN/importance" --model "$MODEL" --data "$PAIRS" --out "$OUT/importance" --samples 256 --batch-size 32 \
    --max-length 64 --pooling mean --device cpu --quiet --force >/dev/null
  "$PY" -c "import json; print(json.load(open('$OUT/importance/importance.json'))['pairs_per_s_after_first'])"
}
train_torch() { "$PY" scripts/reference/bench_train_torch.py "$1" --pairs "$PAIRS" --steps 10 "${@:2}" 2>/dev/null | json "j['pairs_per_s']"; }
# distill_sekator STEPS [FLAGS]
distill_sekator() {
  rm -rf "$OUT/distill"
  "$BIN/distill" --teacher "$MODEL" --student "$MODEL" --data "$PAIRS" --out "$OUT/distill" --max-pairs 704 \
    --cache-dir "$OUT/teacher-cache" --steps "$1" --batch-size 32 --max-length 64 --pooling mean --eval-every 0 \
    --eval-pairs 32 --checkpoint-every 0 --no-onnx --device cpu "${@:2}" >/dev/null 2>&1
  "$PY" -c "import json; print(json.load(open('$OUT/distill/manifest.json'))['results']['pairs_per_s'])"
}

distill_sekator 1 >/dev/null # fills the teacher cache outside the timed runs
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r of $ROUNDS"
  record "$r" embed sekator "$(embed_sekator)"
  record "$r" embed pytorch "$(embed_torch)"
  record "$r" importance sekator "$(importance_sekator)"
  record "$r" importance pytorch "$(train_torch importance)"
  record "$r" distill sekator "$(distill_sekator 22)"
  record "$r" distill pytorch "$(train_torch distill)"
done
echo "== the earlier, unfair baselines and the other kernels (once each)"
record 0 embed "pytorch, file order" "$(embed_torch --order file)"
if grep -q amx_bf16 /proc/cpuinfo; then
  # sekator's AMX path (cpu_amx.rs) is f32-accurate; these two rows say what it adds and what PyTorch
  # gets from the same unit when it may round f32 to bf16 (not f32-accurate: not the baseline).
  record 0 embed "sekator, gemm instead of AMX" "$(SEKATOR_AMX=0 embed_sekator)"
  record 0 embed "pytorch, oneDNN bf16 (AMX, not f32-accurate)" "$(embed_torch --fp32-precision bf16)"
fi
record 0 distill "pytorch, dropout student" "$(train_torch distill --student-mode train)"
record 0 distill "sekator, one graph" "$(distill_sekator 22 --micro-batches 1)"

echo "== the matmul kernel alone (gemm under burn-flex vs PyTorch's), GFLOP/s"
cargo build -q --release -p sekator-model --bench gemm_peak
GEMM=$(ls -t target/release/deps/gemm_peak-* | grep -v '\.d$' | head -1)
{ "$GEMM"; "$PY" scripts/reference/bench_gemm_torch.py; } | tee "$OUT/gemm.jsonl"

"$PY" - "$OUT" <<'EOF'
import json, statistics, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(f"{out}/results.jsonl")]
what = {"embed": "embedding, 1,200 texts, batch 32, max_length 128 (texts/s)",
        "importance": "importance: forward + backward to the masks, batch 32, length 64 (pairs/s)",
        "distill": "distillation step: forward + backward + AdamW, batch 32, length 64 (pairs/s)"}
lines = ["| what | sekator (median, range) | PyTorch (median, range) | sekator / PyTorch |", "|---|---:|---:|---:|"]
for w, label in what.items():
    med = {}
    cells = []
    for impl in ("sekator", "pytorch"):
        v = [r["value"] for r in rows if r["what"] == w and r["impl"] == impl and r["round"] > 0]
        med[impl] = statistics.median(v)
        cells.append(f"{med[impl]:.1f} ({min(v):.1f}-{max(v):.1f})")
    ratios = [s["value"] / p["value"] for s in rows for p in rows
              if s["what"] == p["what"] == w and s["impl"] == "sekator" and p["impl"] == "pytorch"
              and s["round"] == p["round"] > 0]
    lines.append(f"| {label} | {cells[0]} | {cells[1]} | **{med['sekator'] / med['pytorch']:.2f}x** "
                 f"(per round {min(ratios):.2f}-{max(ratios):.2f}) |")
lines.append("")
lines.append("Earlier baselines, once each: " + "; ".join(
    f"{r['what']} {r['impl']} {r['value']:.1f}" for r in rows if r["round"] == 0))
gemm = [json.loads(l) for l in open(f"{out}/gemm.jsonl")]
lines += ["", "| matmul m x k x n, threads | gemm (GFLOP/s) | PyTorch (GFLOP/s) | gemm / PyTorch |", "|---|---:|---:|---:|"]
for g in (g for g in gemm if g["impl"] == "gemm"):
    t = next(x for x in gemm if x["impl"] == "torch" and all(x[c] == g[c] for c in ("m", "k", "n", "threads")))
    lines.append(f"| {g['m']} x {g['k']} x {g['n']}, {g['threads']} | {g['gflops']:.0f} | {t['gflops']:.0f} | {g['gflops'] / t['gflops']:.2f}x |")
flight = [g for g in gemm if g["impl"] == "gemm, 2 in flight"]
if flight:
    lines.append("\nTwo one-thread products at once (as sekator's batches in flight run them), GFLOP/s each: " + ", ".join(
        f"{g['m']} x {g['k']} x {g['n']} {g['gflops']:.0f}" for g in flight))
amx = {(g["m"], g["k"], g["n"]): g["gflops"] for g in gemm if g["impl"] == "amx"}
amx2 = {(g["m"], g["k"], g["n"]): g["gflops"] for g in gemm if g["impl"] == "amx, 2 in flight"}
if amx:
    lines.append("\nThe forward shapes on AMX tiles (`cpu_amx`, f32-accurate, weights packed beforehand), GFLOP/s one "
                 "thread / each of two in flight: " + ", ".join(
                     f"{m} x {k} x {n} {v:.0f} / {amx2.get((m, k, n), 0):.0f}" for (m, k, n), v in amx.items()))
for p in (g for g in gemm if g["impl"] == "fma peak"):
    lines.append(f"\nOne core's FMA peak (`gemm_peak`'s loop of independent {p.get('lanes', 8)}-lane multiply-adds): {p['gflops']:.0f} GFLOP/s")
open(f"{out}/summary.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF

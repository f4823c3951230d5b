#!/usr/bin/env bash
# Speed of the Rust stages beside PyTorch on this machine, same inputs, same thread count; results as JSON
# lines in runs/bench/ (BENCHMARKS.md quotes them). Needs the release binaries (`just build`), MiniLM and the
# data (`just setup`) and the reference venv (scripts/reference/README.md). Run on an otherwise idle machine:
#
#     bash scripts/bench.sh            # `just bench` does the same
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${SEKATOR_REF_PYTHON:-/root/venvs/sekator-ref/bin/python}
MODEL=$PWD/data/models/all-MiniLM-L6-v2
TEXTS=$PWD/data/encodechka/sentences_sample.txt
PAIRS=data/en-ru/pairs.tsv
OUT=runs/bench
BIN=target/release
mkdir -p "$OUT"
: > "$OUT/results.jsonl"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" | tee "$OUT/machine.txt"

echo "== embedding throughput (MiniLM, max_length 128, mean pooling): burn-flex, burn-ndarray"
SEKATOR_BENCH_MODEL=$MODEL SEKATOR_BENCH_TEXTS=$TEXTS cargo bench -q -p sekator-model --bench embed_throughput \
  | grep '^{' | tee -a "$OUT/results.jsonl"
echo "== embedding, one batch at a time (SEKATOR_CPU_STREAMS=1: latency-bound, like PyTorch's loop): burn-flex"
SEKATOR_CPU_STREAMS=1 SEKATOR_BENCH_BACKENDS=flex SEKATOR_BENCH_MODEL=$MODEL SEKATOR_BENCH_TEXTS=$TEXTS \
  cargo bench -q -p sekator-model --bench embed_throughput | grep '^{' | sed 's/"flex"/"flex, 1 stream"/' \
  | tee -a "$OUT/results.jsonl"
echo "== embedding throughput: PyTorch"
"$PY" scripts/reference/bench_embed_torch.py "$TEXTS" | grep '^{' | tee -a "$OUT/results.jsonl"

echo "== importance (mask gradients, batch 32, max_length 64, 256 pairs): sekator"
rm -rf "$OUT/importance"
"$BIN/importance" --model "$MODEL" --data "$PAIRS" --out "$OUT/importance" --samples 256 --batch-size 32 \
  --max-length 64 --pooling mean --device cpu --quiet --force >/dev/null
"$PY" -c "import json,sys; m=json.load(open('$OUT/importance/importance.json')); \
print(json.dumps({'stage':'importance','impl':'sekator','pairs_per_s':m['pairs_per_s_after_first'] or m['pairs_per_s']}))" \
  | tee -a "$OUT/results.jsonl"
echo "== importance: PyTorch"
"$PY" scripts/reference/bench_train_torch.py importance --pairs "$PAIRS" | grep '^{' | tee -a "$OUT/results.jsonl"

echo "== distillation step (MiniLM student = teacher copy, batch 32, max_length 64, AdamW): sekator"
rm -rf "$OUT/distill"
"$BIN/distill" --teacher "$MODEL" --student "$MODEL" --data "$PAIRS" --out "$OUT/distill" --max-pairs 704 \
  --steps 22 --batch-size 32 --max-length 64 --pooling mean --eval-every 0 --eval-pairs 32 \
  --checkpoint-every 0 --device cpu 2>&1 | grep -E "pairs/s" | tail -2
"$PY" -c "import json; m=json.load(open('$OUT/distill/manifest.json'))['results']; \
print(json.dumps({'stage':'distill','impl':'sekator','pairs_per_s':m['pairs_per_s']}))" | tee -a "$OUT/results.jsonl"
echo "== distillation step: PyTorch"
"$PY" scripts/reference/bench_train_torch.py distill --pairs "$PAIRS" | grep '^{' | tee -a "$OUT/results.jsonl"
echo "results: $OUT/results.jsonl"

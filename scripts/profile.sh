#!/usr/bin/env bash
# Where the CPU time of the three hot loops goes: one perf profile each of distillation steps, importance
# steps and batch-32 embedding (MiniLM, the shapes of `scripts/bench.sh`). Writes flat self-time tables by
# symbol to runs/profile/{distill,importance,embed}.txt (BENCHMARKS.md "Where the time goes" summarises
# them); the perf.data files stay beside them and are never committed. Needs perf
# (`perf_event_paranoid` <= 2 is enough: user space only), the release binaries (`just build`), MiniLM and
# the data (`just setup`). (No `head` in the pipes: with pipefail its early exit would stop the script.)
#
#     bash scripts/profile.sh            # `just profile`
#     NO_EMBED=1 ...                     # skips the embedding profile (it builds the bench binary)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$PWD/data/models/all-MiniLM-L6-v2
PAIRS=data/en-ru/pairs.tsv
# Another build: BIN=its-bin-dir EMBED_BIN=its-embed_throughput-bench OUT=runs/profile-before bash scripts/profile.sh
OUT=${OUT:-runs/profile}
BIN=${BIN:-target/release}
mkdir -p "$OUT"
# cpu-clock: a software event, so this works in VMs without hardware counters. Wall, user and system
# seconds go beside the profile: (user + sys) / (wall * cores) says how busy the cores were.
record() {
  /usr/bin/time -f "wall %e s, user %U s, sys %S s" -o "$OUT/$1.time" \
    perf record -q -F 997 -e cpu-clock -o "$OUT/$1.data" -- "${@:2}" >/dev/null 2>&1
}
report() {
  perf report -q -i "$OUT/$1.data" --no-children --sort dso,symbol --stdio >"$OUT/$1.full.txt" 2>/dev/null || true
  { cat "$OUT/$1.time"; grep -v '^$' "$OUT/$1.full.txt" | sed -n 1,40p | cut -c1-160; } >"$OUT/$1.txt"
  echo "== $1 (top of $OUT/$1.txt)"
  head -16 "$OUT/$1.txt"
}

echo "== distillation: filling the teacher cache (not profiled)"
distill=("$BIN/distill" --teacher "$MODEL" --student "$MODEL" --data "$PAIRS" --out "$OUT/distill"
  --cache-dir "$OUT/teacher-cache" --max-pairs 512 --batch-size 32 --max-length 64 --pooling mean
  --eval-every 0 --eval-pairs 32 --checkpoint-every 0 --no-onnx --device cpu --force)
"${distill[@]}" --steps 1 >/dev/null 2>&1
record distill "${distill[@]}" --steps 16
report distill

record importance "$BIN/importance" --model "$MODEL" --data "$PAIRS" --out "$OUT/importance" --samples 256 \
  --batch-size 32 --max-length 64 --pooling mean --device cpu --quiet --force
report importance

[ -n "${NO_EMBED:-}" ] && exit 0
if [ -n "${EMBED_BIN:-}" ]; then bench=$EMBED_BIN; else
  cargo build -q --release -p sekator-model --bench embed_throughput
  bench=$(ls -t target/release/deps/embed_throughput-* | grep -v '\.d$' | head -1)
fi
SEKATOR_BENCH_BACKENDS=flex SEKATOR_BENCH_BATCHES=32 SEKATOR_BENCH_MODEL=$MODEL \
  SEKATOR_BENCH_TEXTS=$PWD/data/encodechka/sentences_sample.txt record embed "$bench"
report embed

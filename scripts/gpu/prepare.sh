#!/usr/bin/env bash
# scripts/gpu/prepare.sh — build and pack what scripts/gpu-check.sh needs on the GPU machine (run it HERE).
#
# The GPU machine has no Rust toolchain and no network, and the device tool carries at most 64 MiB
# (working tree included). So this script:
#   1. builds the release binaries embed, random-model, importance, distill with `--features
#      sekator-model/cuda` (own target dir target/gpu, CUDARC_CUDA_VERSION=13000: the GPU machine's driver
#      is CUDA 13.0 and cudarc would otherwise bind the newest API it knows, 13.4);
#   2. packs into dist/gpu/ (ignored by git): bin.tar.xz (stripped binaries), minilm-probe.tar.xz (MiniLM
#      with the embedding rows no probe sentence uses zeroed: scripts/gpu/pack_minilm.py), data.tar.xz
#      (the first 6400 en-ru pairs, encodechka's sentences_sample.txt), BUILD.txt, SHA256SUMS;
#   3. prints the sizes, checks the 64 MiB limit and prints the device-tool call.
#
#     bash scripts/gpu/prepare.sh            # CUDA build (slow on 2 cores), then pack
#     bash scripts/gpu/prepare.sh --no-build # pack the binaries already in the target dir
#     bash scripts/gpu/prepare.sh --cpu      # CPU-only build into target/gpu-cpu (for GPU_CHECK_SMOKE tests)
#
# Env: PREPARE_TARGET_DIR (default target/gpu or target/gpu-cpu), CUDARC_CUDA_VERSION (default 13000),
# PREPARE_PAIRS (default 6400), SEKATOR_MIRROR (where data/ is missing; default ../shared/data).

set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

BUILD=1 CUDA=1
for a in "$@"; do
    case $a in
        --no-build) BUILD=0 ;;
        --cpu) CUDA=0 ;;
        -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "error: unknown argument $a" >&2; exit 2 ;;
    esac
done
if [ $CUDA = 1 ]; then TARGET=${PREPARE_TARGET_DIR:-target/gpu}; else TARGET=${PREPARE_TARGET_DIR:-target/gpu-cpu}; fi
export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13000}
NPAIRS=${PREPARE_PAIRS:-6400}
MIRROR=${SEKATOR_MIRROR:-$ROOT/../shared/data}
DIST=dist/gpu
CACHE=dist/.cache
BINS=(embed random-model importance distill)
LIMIT=$((64 * 1024 * 1024))

# --- 1. build ---------------------------------------------------------------------------------------------
FEATURES=()
[ $CUDA = 1 ] && FEATURES=(--features sekator-model/cuda)
if [ $BUILD = 1 ]; then
    echo "building (target dir $TARGET, CUDARC_CUDA_VERSION=$CUDARC_CUDA_VERSION, ${FEATURES[*]:-cpu only}) ..."
    CARGO_TARGET_DIR=$TARGET cargo build --release -p sekator-model -p sekator-importance -p sekator-distill \
        "${FEATURES[@]}" --bins
fi
for b in "${BINS[@]}"; do
    [ -x "$TARGET/release/$b" ] || { echo "error: $TARGET/release/$b missing (build failed or --no-build too early)" >&2; exit 1; }
done
# A CUDA build answers `--device cuda` without a GPU with "no CUDA driver found", a CPU build with "built without CUDA".
echo probe >"${TMPDIR:-/tmp}/sekator-probe.txt"
probe=$("$TARGET/release/embed" --model /nonexistent --input "${TMPDIR:-/tmp}/sekator-probe.txt" --output "${TMPDIR:-/tmp}/sekator-probe.npy" --device cuda 2>&1 || true)
echo "embed --device cuda here: $probe"
if [ $CUDA = 1 ] && printf '%s' "$probe" | grep -q 'built without CUDA'; then
    echo "error: $TARGET/release/embed was built without the cuda feature" >&2
    exit 1
fi

# --- 2. pack ----------------------------------------------------------------------------------------------
rm -rf "$DIST"
mkdir -p "$DIST" "$CACHE"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT

mkdir -p "$STAGE/bin"
for b in "${BINS[@]}"; do
    cp "$TARGET/release/$b" "$STAGE/bin/$b"
    strip --strip-all "$STAGE/bin/$b" 2>/dev/null || echo "warning: strip failed for $b"
done
ls -la "$STAGE/bin"
# One stream with a 192 MiB window: the binaries share most of their code, so xz stores it once.
tar -C "$STAGE" -cf - bin | xz -T1 --lzma2=preset=6,dict=192MiB >"$DIST/bin.tar.xz"

# MiniLM probe copy: cached, as xz of 90 MB takes a minute.
MODEL=data/models/all-MiniLM-L6-v2
[ -f "$MODEL/model.safetensors" ] || { echo "error: $MODEL missing (just fetch-model minilm)" >&2; exit 1; }
key=$(cat "$MODEL/model.safetensors" scripts/gpu/pack_minilm.py crates/model/tests/fixtures/minilm_reference.safetensors | sha256sum | cut -c1-16)
if [ ! -f "$CACHE/minilm-probe-$key.tar.xz" ]; then
    rm -f "$CACHE"/minilm-probe-*.tar.xz
    python3 scripts/gpu/pack_minilm.py "$MODEL" "$STAGE/minilm-probe"
    tar -C "$STAGE" -cf - minilm-probe | xz -T2 -6 >"$CACHE/minilm-probe-$key.tar.xz.tmp"
    mv "$CACHE/minilm-probe-$key.tar.xz.tmp" "$CACHE/minilm-probe-$key.tar.xz"
fi
cp "$CACHE/minilm-probe-$key.tar.xz" "$DIST/minilm-probe.tar.xz"

mkdir -p "$STAGE/data"
pairs=data/en-ru/pairs.tsv
[ -f "$pairs" ] || pairs=$MIRROR/en-ru/pairs.tsv
sample=data/encodechka/sentences_sample.txt
[ -f "$sample" ] || sample=$MIRROR/encodechka/sentences_sample.txt
head -n $((NPAIRS + 1)) "$pairs" >"$STAGE/data/pairs.tsv"
cp "$sample" "$STAGE/data/sentences_sample.txt"
tar -C "$STAGE" -cf - data | xz -T2 -6 >"$DIST/data.tar.xz"

rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || rev="$rev+dirty"
{
    echo "sekator $rev, built $(date -u '+%Y-%m-%d %H:%M UTC'), $([ $CUDA = 1 ] && echo "features sekator-model/cuda, CUDARC_CUDA_VERSION=$CUDARC_CUDA_VERSION" || echo "CPU only"), $(rustc --version)"
    echo "binaries: ${BINS[*]} (stripped) from $TARGET/release"
    echo "minilm-probe: $MODEL with unused word-embedding rows zeroed (scripts/gpu/pack_minilm.py)"
    echo "data: first $NPAIRS pairs of $pairs; $sample"
} >"$DIST/BUILD.txt"
(cd "$DIST" && sha256sum ./*.tar.xz BUILD.txt >SHA256SUMS)

# --- 3. sizes and the call --------------------------------------------------------------------------------
bundle=$(du -cb "$DIST"/* | tail -1 | cut -f1)
tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 du -cb 2>/dev/null | awk '/total$/ { s += $1 } END { print s + 0 }')
total=$((bundle + tree))
echo
ls -la "$DIST"
awk -v b="$bundle" -v t="$tree" 'BEGIN { printf "bundle %.1f MiB + working tree %.1f MiB = %.1f MiB of 64 MiB\n", b / 1048576, t / 1048576, (b + t) / 1048576 }'
if [ "$total" -gt "$LIMIT" ]; then
    echo "error: over the device tool's 64 MiB limit" >&2
    exit 1
fi
cat <<EOF

Device-tool call (a session with a GPU lent; ~8 min):
  run(kind="nvidia-h100-x1", timeout_s=600, carry=["$DIST"],
      command="bash scripts/gpu-check.sh")
Results come back in \$OUT: gpu_results.md (table for BENCHMARKS.md), gpu_results.jsonl, gpu_logs.txt,
gpu_profile.txt, distill_metrics.jsonl, importance.json.
EOF

#!/usr/bin/env bash
# scripts/gpu-check.sh — CUDA parity and speed of the sekator binaries beside PyTorch, on a GPU machine.
#
# The GPU machine has CUDA, NVRTC, PyTorch and transformers but no Rust toolchain and no network: the
# release binaries (built with `--features sekator-model/cuda`), a carry-sized MiniLM and the data come in
# the bundle that scripts/gpu/prepare.sh makes here (dist/gpu/). Run from the repo root:
#
#     bash scripts/gpu-check.sh                     # results under $OUT (default runs/gpu-check)
#
# Parts — each runs even when an earlier one failed (recorded as FAIL), each under `timeout`, ~8 min total:
#   0  environment: nvidia-smi, driver, PyTorch/transformers versions, binaries, NVRTC/CUDA paths
#   1  parity: MiniLM embeds the 16 probe sentences of crates/model/tests/fixtures/minilm_reference.json on
#      CUDA (cls and mean pooling); max |diff| to the fixture's f32 vectors must be <= 1e-3 (burn CPU too)
#   2  burn-cuda training at LaBSE-en-ru size: `random-model` (vocab 55083, 12 x 12, hidden 768), then
#      `importance` (a few batches) and 200 `distill` steps (batch 64, length 64): pairs/s
#   3  the same distillation step in PyTorch eager on the same GPU (scripts/reference/gpu_torch_bench.py),
#      ratio burn / PyTorch (target >= 0.8)
#   4  embedding throughput at batch 1/32/256, burn `embed` beside PyTorch (target at 256: >= 1.0);
#      MiniLM first, then the LaBSE-shaped model if time is left
#   5  (time permitting) profiles: cubecl kernel timings of a short distill run, torch.profiler of the step
#   6  (run after 1) `distill --check-precision`: 30 steps in each of f32, flex32, bf16-mixed, bf16, f16, loss curves
#      against f32 and pairs/s (precision_check.json); parts 2, 5 train in f32 explicitly
# Outputs in $OUT: gpu_results.md (the table), gpu_results.jsonl (all records), gpu_logs.txt (everything
# printed), gpu_profile.txt, distill_metrics.jsonl, importance.json, precision_check.json.
#
# Environment overrides:
#   OUT                results folder (default runs/gpu-check)
#   GPU_CHECK_BUNDLE   the folder prepare.sh made (default dist/gpu)
#   GPU_CHECK_BIN      take the binaries from this folder instead of the bundle (e.g. target/gpu/release)
#   GPU_CHECK_MINILM   MiniLM directory instead of the bundle's (e.g. data/models/all-MiniLM-L6-v2)
#   GPU_CHECK_SMOKE=1  CPU device and tiny sizes: proves the flow where no GPU exists
#   GPU_CHECK_DEVICE   cuda (default; cpu with SMOKE)
#   GPU_CHECK_PYTHON   python with torch, transformers, numpy (default python3)
#   GPU_CHECK_BUDGET_S seconds after which optional parts are skipped (default 400)
#   GPU_CHECK_DEADLINE_S no command runs past this many seconds into the check (default 540; the device
#                      tool stops a command at 600)
#   GPU_CHECK_WORK     scratch folder (default /tmp/sekator-gpu-check; emptied first)
#   GPU_CHECK_PARTS    parts to run besides 0 (default "1 6 2 3 4 5"; parts 2-6 need the LaBSE-shaped model
#                      and make it themselves when no earlier part did)

set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

OUT=${OUT:-$ROOT/runs/gpu-check}
BUNDLE=${GPU_CHECK_BUNDLE:-$ROOT/dist/gpu}
SMOKE=${GPU_CHECK_SMOKE:-0}
PY=${GPU_CHECK_PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET_S:-400}
DEADLINE=${GPU_CHECK_DEADLINE_S:-540}
WORK=${GPU_CHECK_WORK:-/tmp/sekator-gpu-check}
TOOLS="scripts/gpu/tools.py"
TORCH_BENCH="scripts/reference/gpu_torch_bench.py"

if [ "$SMOKE" = 1 ]; then
    DEVICE=${GPU_CHECK_DEVICE:-cpu}
    SHAPE=(--vocab-size 30522 --hidden 64 --layers 2 --heads 4 --ffn 128 --max-position 512)
    B=8 LEN=32 STEPS=6 WARM=2 LOG_EVERY=1 IMP_BATCHES=2 TEXT_LINES=24 PREC_STEPS=4
    # batch size -> "short long" repeats of the text sample (burn rate = difference of the two runs)
    REPS_MINILM=([1]="1 2" [32]="1 2" [256]="1 2")
    REPS_LABSE=([1]="1 2" [32]="1 2" [256]="1 2")
    TORCH_THREADS=2
else
    DEVICE=${GPU_CHECK_DEVICE:-cuda}
    SHAPE=()   # random-model's defaults: LaBSE-en-ru (vocab 55083, hidden 768, 12 layers, 12 heads, FFN 3072)
    B=64 LEN=64 STEPS=200 WARM=20 LOG_EVERY=10 IMP_BATCHES=8 TEXT_LINES=0 PREC_STEPS=30
    REPS_MINILM=([1]="1 3" [32]="2 10" [256]="4 40")
    REPS_LABSE=([1]="1 2" [32]="1 6" [256]="2 16")
    TORCH_THREADS=0
fi
TDEV=$DEVICE
PARTS=" ${GPU_CHECK_PARTS:-1 6 2 3 4 5} "
want() { [[ "$PARTS" == *" $1 "* ]]; }

rm -rf "$WORK"
mkdir -p "$OUT" "$WORK" || exit 1
LOG="$OUT/gpu_logs.txt"
RES="$OUT/gpu_results.jsonl"
PROF="$OUT/gpu_profile.txt"
: >"$LOG"
: >"$RES"
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!

# --- helpers -------------------------------------------------------------------------------------------------
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
record() { "$PY" "$TOOLS" record --results "$RES" "$@" >/dev/null || echo "warning: could not record $*"; }
PART="" PART_NAME="" PART_T0=0 PART_STATUS="" PART_NOTE=""
part_begin() {
    PART=$1 PART_NAME=$2 PART_T0=$SECONDS PART_STATUS=PASS PART_NOTE=""
    echo
    echo "=== part $1: $2 ($(date -u +%H:%M:%S), ${SECONDS}s into the check) ==="
}
fail() {
    PART_STATUS=FAIL
    PART_NOTE="${PART_NOTE:+$PART_NOTE; }$*"
    echo "FAIL: $*"
}
skip() {
    [ "$PART_STATUS" = PASS ] && PART_STATUS=SKIP
    PART_NOTE="${PART_NOTE:+$PART_NOTE; }$*"
    echo "SKIP: $*"
}
note() { PART_NOTE="${PART_NOTE:+$PART_NOTE; }$*"; echo "note: $*"; }
part_end() {
    record bench=status part="$PART" name="$PART_NAME" status="$PART_STATUS" seconds:=$((SECONDS - PART_T0)) note="$PART_NOTE"
    echo "=== part $PART: $PART_STATUS ($((SECONDS - PART_T0)) s) ==="
}
# run LIMIT_S LABEL CMD...: runs under timeout, logs the command; returns its status (124: timed out).
# No command runs past DEADLINE (seconds into the check) minus a reserve for the summary.
run() {
    local limit=$1 label=$2 left
    shift 2
    left=$((DEADLINE - 20 - SECONDS))
    if [ "$left" -lt 5 ]; then
        echo "! $label: not run, the check's deadline (${DEADLINE}s) is reached"
        return 124
    fi
    [ "$left" -lt "$limit" ] && limit=$left
    echo "+ [$label, limit ${limit}s] $*"
    timeout -k 10 "$limit" "$@"
    local rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        echo "! $label: timed out after ${limit}s"
    elif [ $rc -ne 0 ]; then
        echo "! $label: exit status $rc"
    fi
    return $rc
}
time_left() { echo $((BUDGET - SECONDS)); }
# repeated text files: texts R -> path of the sample repeated R times
texts() {
    local r=$1 f="$WORK/texts_x$1.txt"
    if [ ! -f "$f" ]; then
        : >"$f"
        for _ in $(seq "$r"); do cat "$SAMPLE" >>"$f"; done
    fi
    echo "$f"
}

# --- part 0: environment, bundle -----------------------------------------------------------------------------
part_begin 0 "environment"
echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')   host: $(hostname)   $(uname -srm)"
echo "repo: $ROOT   out: $OUT   work: $WORK   smoke: $SMOKE   device: $DEVICE"
GPU_NAME="none" DRIVER="" CUDA_VER=""
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi || note "nvidia-smi failed"
    GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
    DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
    CUDA_VER=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -1)
else
    echo "nvidia-smi: not found"
    [ "$DEVICE" = cuda ] && fail "no nvidia-smi on a --device cuda run"
fi
command -v nvcc >/dev/null 2>&1 && nvcc --version | tail -2
PYINFO=$("$PY" - <<'EOF' 2>&1
import json, platform
info = {"python": platform.python_version()}
try:
    import torch
    info["torch"] = torch.__version__
    info["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        info["torch_gpu"] = torch.cuda.get_device_name(0)
        info["torch_cuda"] = torch.version.cuda
except Exception as e:
    info["torch"] = f"missing ({e})"
for m in ("transformers", "numpy", "safetensors", "tokenizers"):
    try:
        info[m] = __import__(m).__version__
    except Exception as e:
        info[m] = f"missing ({e})"
print(json.dumps(info))
EOF
)
echo "python: $PYINFO"
pyget() { printf '%s' "$PYINFO" | "$PY" -c "import json,sys; print(json.load(sys.stdin).get('$1',''))" 2>/dev/null; }

# Bundle: binaries, MiniLM (probe copy), data.
BIN=${GPU_CHECK_BIN:-}
MINILM=${GPU_CHECK_MINILM:-}
DATA="$WORK/data"
mkdir -p "$DATA"
BUILD_INFO="(no BUILD.txt)"
if [ -d "$BUNDLE" ]; then
    echo "bundle: $BUNDLE"
    ls -la "$BUNDLE"
    [ -f "$BUNDLE/BUILD.txt" ] && BUILD_INFO=$(head -1 "$BUNDLE/BUILD.txt") && cat "$BUNDLE/BUILD.txt"
    if [ -f "$BUNDLE/SHA256SUMS" ]; then
        (cd "$BUNDLE" && sha256sum -c --quiet SHA256SUMS) || fail "bundle checksums differ (incomplete carry?)"
    fi
    for t in "$BUNDLE"/*.tar.xz; do
        [ -f "$t" ] || continue
        run 120 "unpack $(basename "$t")" tar -xJf "$t" -C "$WORK" || fail "cannot unpack $t"
    done
    [ -z "$BIN" ] && [ -d "$WORK/bin" ] && BIN="$WORK/bin"
    [ -z "$MINILM" ] && [ -d "$WORK/minilm-probe" ] && MINILM="$WORK/minilm-probe"
    [ -f "$WORK/data/pairs.tsv" ] && PAIRS="$WORK/data/pairs.tsv"
    [ -f "$WORK/data/sentences_sample.txt" ] && SAMPLE_SRC="$WORK/data/sentences_sample.txt"
else
    echo "bundle: $BUNDLE not found; using GPU_CHECK_BIN / the checkout's data"
fi
BIN=${BIN:-$ROOT/target/release}
MINILM=${MINILM:-$ROOT/data/models/all-MiniLM-L6-v2}
if [ -z "${PAIRS:-}" ]; then
    src=$ROOT/data/en-ru/pairs.tsv
    [ -f "$src" ] || src=$ROOT/../shared/data/en-ru/pairs.tsv
    if [ -f "$src" ]; then
        head -n 6401 "$src" >"$DATA/pairs.tsv"
        PAIRS="$DATA/pairs.tsv"
    else
        PAIRS=""
        fail "no en-ru pairs (bundle or data/en-ru/pairs.tsv)"
    fi
fi
if [ -z "${SAMPLE_SRC:-}" ]; then
    SAMPLE_SRC=$ROOT/data/encodechka/sentences_sample.txt
    [ -f "$SAMPLE_SRC" ] || SAMPLE_SRC=$ROOT/../shared/data/encodechka/sentences_sample.txt
fi
SAMPLE="$WORK/sample.txt"
if [ -f "$SAMPLE_SRC" ]; then
    if [ "$TEXT_LINES" -gt 0 ]; then head -n "$TEXT_LINES" "$SAMPLE_SRC" >"$SAMPLE"; else grep -v '^[[:space:]]*$' "$SAMPLE_SRC" >"$SAMPLE"; fi
else
    fail "no sentences_sample.txt"
fi
SAMPLE_N=$(wc -l <"$SAMPLE" 2>/dev/null || echo 0)
echo "binaries: $BIN   minilm: $MINILM   pairs: $PAIRS ($(($(wc -l <"${PAIRS:-/dev/null}") - 1)) pairs)   sample: $SAMPLE_N texts"
for b in embed random-model importance distill; do
    if [ -x "$BIN/$b" ]; then
        echo "$b: $("$BIN/$b" --version 2>&1 | head -1), $(du -h "$BIN/$b" | cut -f1)"
    else
        fail "binary $BIN/$b missing"
    fi
done
if [ -x "$BIN/embed" ] && command -v ldd >/dev/null; then
    ldd "$BIN/embed" | grep -i 'not found' && fail "embed has unresolved shared libraries"
fi

# CUDA libraries for burn-cuda: libcuda.so.1 (driver), libnvrtc.so* (kernel JIT), headers (CUDA_PATH).
if [ "$DEVICE" = cuda ]; then
    LIBDIR="$WORK/lib"
    mkdir -p "$LIBDIR"
    extra=""
    if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then
        d=$(find /usr/local/nvidia /usr/lib /usr/lib64 /usr/local/cuda* -maxdepth 4 -name 'libcuda.so.1' 2>/dev/null | head -1)
        [ -n "$d" ] && extra="$extra:$(dirname "$d")" && echo "libcuda.so.1: $d"
    fi
    if ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
        echo "libnvrtc: $(ldconfig -p | grep 'libnvrtc\.so' | head -2 | tr '\n' ' ')"
    else
        nv=$("$PY" - <<'EOF' 2>/dev/null
import glob, os, sys
hits = []
for p in sys.path:
    hits += glob.glob(os.path.join(p, "nvidia", "**", "libnvrtc.so*"), recursive=True)
hits += glob.glob("/usr/local/cuda*/lib64/libnvrtc.so*") + glob.glob("/usr/local/cuda*/targets/*/lib/libnvrtc.so*")
hits = [h for h in hits if "builtins" not in h and "alt" not in os.path.basename(h)]
hits.sort(key=lambda h: (h.count("/"), -len(h)))
print(hits[0] if hits else "")
EOF
)
        if [ -n "$nv" ]; then
            echo "libnvrtc: $nv"
            ln -sf "$nv" "$LIBDIR/libnvrtc.so"
            extra="$extra:$(dirname "$nv")"
        else
            fail "libnvrtc.so not found (burn-cuda compiles kernels with NVRTC)"
        fi
    fi
    export LD_LIBRARY_PATH="$LIBDIR$extra${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    if [ -z "${CUDA_PATH:-}" ] && [ ! -f /usr/local/cuda/include/cuda.h ]; then
        for c in /opt/cuda "$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /x/x)")")" /usr/local/cuda-*; do
            if [ -f "$c/include/cuda.h" ]; then export CUDA_PATH="$c"; break; fi
        done
    fi
    echo "CUDA_PATH=${CUDA_PATH:-/usr/local/cuda (default)}   (NVRTC include path of burn-cuda)"
fi
record bench=env date="$(date -u '+%Y-%m-%d %H:%M UTC')" gpu="$GPU_NAME" driver="$DRIVER" cuda_runtime="$CUDA_VER" \
    device="$DEVICE" torch="$(pyget torch)" transformers="$(pyget transformers)" attn=sdpa build="$BUILD_INFO" \
    smoke:="$([ "$SMOKE" = 1 ] && echo true || echo false)" python="$(pyget python)"
part_end

# --- part 1: parity ------------------------------------------------------------------------------------------
part1() {
    part_begin 1 "MiniLM parity on $DEVICE"
    local P1="$WORK/p1" FIX=crates/model/tests/fixtures p cpu_args=()
    mkdir -p "$P1"
    if "$PY" "$TOOLS" probes --fixture-json "$FIX/minilm_reference.json" --out "$P1/probes.txt"; then
        for p in cls mean; do
            run 180 "embed $p $DEVICE" "$BIN/embed" --model "$MINILM" --input "$P1/probes.txt" --output "$P1/${DEVICE}_$p.jsonl" \
                --pooling "$p" --batch-size 16 --device "$DEVICE" || fail "embed --pooling $p --device $DEVICE"
            if [ "$DEVICE" != cpu ]; then
                run 120 "embed $p cpu" "$BIN/embed" --model "$MINILM" --input "$P1/probes.txt" --output "$P1/cpu_$p.jsonl" \
                    --pooling "$p" --batch-size 16 --device cpu || note "burn CPU reference run failed ($p)"
            fi
        done
        [ "$DEVICE" != cpu ] && cpu_args=(--cpu-cls "$P1/cpu_cls.jsonl" --cpu-mean "$P1/cpu_mean.jsonl")
        "$PY" "$TOOLS" parity --results "$RES" --fixture "$FIX/minilm_reference.safetensors" --tol 1e-3 --device "$DEVICE" \
            --cls "$P1/${DEVICE}_cls.jsonl" --mean "$P1/${DEVICE}_mean.jsonl" "${cpu_args[@]}" \
            || fail "max |diff| above 1e-3 or missing output"
    else
        fail "cannot read the probe sentences"
    fi
    part_end
}

# --- the LaBSE-shaped random model (part 2, or the first later part that needs it) ---------------------------
LABSE="$WORK/labse-random"
MODEL_FAILED=0
make_model() {
    [ -f "$LABSE/config.json" ] && return 0
    [ $MODEL_FAILED = 1 ] && return 1
    local t0
    t0=$(now)
    if run 240 "random-model" "$BIN/random-model" --out "$LABSE" "${SHAPE[@]}" --seed 0 --tokenizer-from "$MINILM"; then
        echo "random model: $(du -sh "$LABSE" | cut -f1) in $(elapsed "$t0") s; config: $(tr -d ' \n' <"$LABSE/config.json" | head -c 400)"
        "$PY" -c 'import json, sys; c = json.load(open(sys.argv[1])); rec = {"bench": "model"}; rec.update({k: c[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")}); print(json.dumps(rec))' \
            "$LABSE/config.json" >>"$RES" || note "cannot read $LABSE/config.json"
    else
        fail "random-model"
        MODEL_FAILED=1
        return 1
    fi
}

# --- part 2: burn training at LaBSE size ---------------------------------------------------------------------
part2() {
    part_begin 2 "burn importance + distill (LaBSE-en-ru shape, $DEVICE)"
    local rc
    if make_model && [ -n "$PAIRS" ]; then
        run 200 "importance" "$BIN/importance" --model "$LABSE" --out "$WORK/importance" --data "$PAIRS" \
            --samples $((IMP_BATCHES * B)) --batch-size "$B" --max-length "$LEN" --device "$DEVICE" --force --quiet \
            >"$WORK/importance.log" 2>&1
        rc=$?
        cat "$WORK/importance.log"
        [ $rc -eq 0 ] || fail "importance exit $rc"
        "$PY" "$TOOLS" importance --results "$RES" --dir "$WORK/importance" --log "$WORK/importance.log" || fail "no importance rate"
        [ -f "$WORK/importance/importance.json" ] && cp "$WORK/importance/importance.json" "$OUT/importance.json"

        run 330 "distill" "$BIN/distill" --teacher "$LABSE" --student "$LABSE" --data "$PAIRS" --out "$WORK/distill" \
            --steps "$STEPS" --batch-size "$B" --max-length "$LEN" --pooling cls --eval-every 0 --checkpoint-every 0 \
            --keep-checkpoints 1 --log-every "$LOG_EVERY" --device "$DEVICE" --precision f32 --overwrite >"$WORK/distill.log" 2>&1
        rc=$?
        cat "$WORK/distill.log"
        [ $rc -eq 0 ] || fail "distill exit $rc"
        "$PY" "$TOOLS" distill --results "$RES" --dir "$WORK/distill" --log "$WORK/distill.log" --warmup "$WARM" --batch "$B" \
            || fail "no distill rate"
        [ -f "$WORK/distill/metrics.jsonl" ] && cp "$WORK/distill/metrics.jsonl" "$OUT/distill_metrics.jsonl"
        # The checkpoint and final model (~2 GB at LaBSE size) are not needed any more.
        rm -rf "$WORK/distill/checkpoints" "$WORK/distill/final" "$WORK/distill/teacher-cache"
    else
        fail "no model or no pairs: importance and distill not run"
    fi
    part_end
}

# --- part 6: which training precision keeps the f32 loss curve -------------------------------------------------
part6() {
    part_begin 6 "distill precision check (f32 / flex32 / bf16-mixed / bf16 / f16, LaBSE-en-ru shape, $DEVICE)"
    local rc
    if make_model && [ -n "$PAIRS" ]; then
        run 240 "precision check" "$BIN/distill" --teacher "$LABSE" --student "$LABSE" --data "$PAIRS" --out "$WORK/precision" \
            --steps "$STEPS" --batch-size "$B" --max-length "$LEN" --pooling cls --device "$DEVICE" \
            --precision-check-steps "$PREC_STEPS" --check-precision >"$WORK/precision.log" 2>&1
        rc=$?
        cat "$WORK/precision.log"
        [ $rc -eq 0 ] || fail "precision check exit $rc"
        [ -f "$WORK/precision/precision.json" ] && cp "$WORK/precision/precision.json" "$OUT/precision_check.json"
        rm -rf "$WORK/precision/teacher-cache"
    else
        fail "no model or no pairs: precision check not run"
    fi
    part_end
}

# --- part 3: the same step in PyTorch ------------------------------------------------------------------------
TB_COMMON=(--device "$TDEV" --json-out "$RES")
[ "$TORCH_THREADS" -gt 0 ] && TB_COMMON+=(--threads "$TORCH_THREADS")
part3() {
    part_begin 3 "PyTorch distill step (same shape, same GPU)"
    if make_model && [ -n "$PAIRS" ]; then
        run 240 "torch train sdpa" "$PY" "$TORCH_BENCH" train --model-dir "$LABSE" --pairs "$PAIRS" --batch "$B" \
            --max-length "$LEN" --steps "$STEPS" --warmup "$WARM" --pooling cls --attn sdpa "${TB_COMMON[@]}" \
            || fail "PyTorch train (sdpa)"
        "$PY" - "$RES" <<'PYEOF' || true
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
b = next((r for r in reversed(recs) if r.get("bench") == "burn_distill"), {})
t = next((r for r in reversed(recs) if r.get("bench") == "torch_train"), {})
for k in ("pairs_per_s_steady", "pairs_per_s"):
    if b.get(k) and t.get(k):
        print(f"RATIO burn/PyTorch distill step ({k}): {b[k]} / {t[k]} = {b[k] / t[k]:.3f}  (target >= 0.8)")
PYEOF
        if [ "$(time_left)" -gt 200 ]; then
            run 150 "torch train eager" "$PY" "$TORCH_BENCH" train --model-dir "$LABSE" --pairs "$PAIRS" --batch "$B" \
                --max-length "$LEN" --steps $((STEPS / 2)) --warmup "$WARM" --pooling cls --attn eager "${TB_COMMON[@]}" \
                || note "PyTorch train (eager attention) failed"
        else
            note "eager-attention variant skipped ($(time_left) s left)"
        fi
    else
        fail "no model or no pairs"
    fi
    part_end
}

# --- part 4: embedding throughput ----------------------------------------------------------------------------
# burn: two whole `embed` commands (short, long input) after an untimed warm-up run that fills cubecl's
# autotune cache; rate = extra texts / extra seconds, so start-up, load and JIT cancel out.
embed_bench() { # model_dir label reps_array_name
    local model=$1 label=$2 reps_name=$3 bs lo hi f_lo f_hi n_lo n_hi t_lo t_hi t0 ok rate whole reps_csv
    local -n reps=$reps_name
    local torch_reps=()
    for bs in 1 32 256; do
        read -r lo hi <<<"${reps[$bs]}"
        f_lo=$(texts "$lo") f_hi=$(texts "$hi")
        n_lo=$(wc -l <"$f_lo") n_hi=$(wc -l <"$f_hi")
        ok=1
        run 120 "embed warm-up $label b$bs" "$BIN/embed" --model "$model" --input "$f_lo" --output "$WORK/e.npy" \
            --pooling mean --batch-size "$bs" --device "$DEVICE" || ok=0
        t0=$(now)
        run 150 "embed $label b$bs x$lo" "$BIN/embed" --model "$model" --input "$f_lo" --output "$WORK/e.npy" \
            --pooling mean --batch-size "$bs" --device "$DEVICE" || ok=0
        t_lo=$(elapsed "$t0")
        t0=$(now)
        run 200 "embed $label b$bs x$hi" "$BIN/embed" --model "$model" --input "$f_hi" --output "$WORK/e.npy" \
            --pooling mean --batch-size "$bs" --device "$DEVICE" || ok=0
        t_hi=$(elapsed "$t0")
        if [ $ok = 1 ]; then
            rate=$(awk -v a="$n_lo" -v b="$n_hi" -v x="$t_lo" -v y="$t_hi" 'BEGIN { d = y - x; if (d > 0) printf "%.1f", (b - a) / d; else print "" }')
            whole=$(awk -v b="$n_hi" -v y="$t_hi" 'BEGIN { printf "%.1f", b / y }')
            echo "burn embed $label batch $bs: $n_lo texts ${t_lo}s, $n_hi texts ${t_hi}s -> ${rate:-?} sent/s (whole command $whole)"
            record bench=burn_embed model="$label" batch_size:="$bs" texts:="$n_hi" texts_short:="$n_lo" seconds:="$t_hi" \
                seconds_short:="$t_lo" sent_per_s:="${rate:-0}" sent_per_s_whole:="$whole"
        else
            fail "burn embed $label batch $bs"
        fi
        torch_reps+=("$hi")
    done
    reps_csv=$(IFS=,; echo "${torch_reps[*]}")
    run 240 "torch embed $label" "$PY" "$TORCH_BENCH" embed --model-dir "$model" --name "$label" --texts "$SAMPLE" \
        --repeats "$reps_csv" --batch-sizes 1,32,256 --max-length 128 "${TB_COMMON[@]}" || fail "PyTorch embed $label"
}
part4() {
    part_begin 4 "embedding throughput"
    if [ -s "$SAMPLE" ]; then
        embed_bench "$MINILM" minilm REPS_MINILM
        if [ "$(time_left)" -gt 150 ] && make_model; then
            embed_bench "$LABSE" labse-random REPS_LABSE
        else
            note "LaBSE-shaped embedding throughput skipped ($(time_left) s left or no model)"
        fi
    else
        fail "no texts"
    fi
    part_end
}

# --- part 5: profiles (time permitting) ----------------------------------------------------------------------
part5() {
    part_begin 5 "profiles"
    if [ "$(time_left)" -gt 90 ] && [ -n "$PAIRS" ] && make_model; then
        echo "# burn: cubecl kernel profile of a short distill run (CUBECL_DEBUG_OPTION=profile: every kernel is timed" >"$PROF"
        echo "# on its own, so the total is above a normal run's; the ranking is what matters)" >>"$PROF"
        CUBECL_DEBUG_LOG="$WORK/cubecl.log" CUBECL_DEBUG_OPTION=profile \
            run 100 "distill profile" "$BIN/distill" --teacher "$LABSE" --student "$LABSE" --data "$PAIRS" --out "$WORK/distill-prof" \
            --steps $((WARM / 2 + 2)) --batch-size "$B" --max-length "$LEN" --pooling cls --eval-every 0 --checkpoint-every 0 \
            --keep-checkpoints 1 --log-every 1 --device "$DEVICE" --precision f32 --overwrite >>"$PROF" 2>&1 || note "burn profile run failed"
        if [ -f "$WORK/cubecl.log" ]; then
            "$PY" "$TOOLS" cubecl-profile --log "$WORK/cubecl.log" --top 40 >>"$PROF" 2>&1 || note "cannot read the cubecl log"
        else
            note "no cubecl log written"
        fi
        echo "# PyTorch: torch.profiler of the same step" >>"$PROF"
        run 100 "torch profile" "$PY" "$TORCH_BENCH" train --model-dir "$LABSE" --pairs "$PAIRS" --batch "$B" --max-length "$LEN" \
            --steps $((WARM / 2 + 2)) --warmup 2 --pooling cls --attn sdpa --profile 3 --device "$TDEV" \
            >>"$PROF" 2>&1 || note "torch profile failed"
        head -c 15000000 "$PROF" >"$PROF.tmp" && mv "$PROF.tmp" "$PROF"
        echo "profiles: $PROF ($(wc -c <"$PROF") bytes)"
    else
        skip "no time left ($(time_left) s), no pairs or no model"
    fi
    part_end
}

want 1 && part1
want 6 && part6
want 2 && part2
want 3 && part3
want 4 && part4
want 5 && part5

# --- summary -------------------------------------------------------------------------------------------------
record bench=env total_seconds:=$SECONDS
echo
"$PY" "$TOOLS" summarize --results "$RES" --out "$OUT/gpu_results.md" || echo "summary failed"
echo
echo "gpu-check: ${SECONDS}s; results in $OUT: $(ls "$OUT" | tr '\n' ' ')"
FAILS=$("$PY" -c "import json,sys; print(sum(1 for l in open(sys.argv[1]) if l.strip() and json.loads(l).get('bench')=='status' and json.loads(l).get('status')=='FAIL'))" "$RES" 2>/dev/null || echo "?")
echo "parts failed: $FAILS"
exec >&- 2>&-
wait "$TEE_PID" 2>/dev/null
[ "$FAILS" = 0 ]

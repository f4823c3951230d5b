#!/usr/bin/env python3
"""Writes a carry-sized copy of MiniLM for the GPU check (standard library only).

Why: the device tool carries at most 64 MiB, MiniLM's model.safetensors alone is 87 MiB, and trained f32
weights hardly compress. The parity check embeds only the 16 probe sentences of
crates/model/tests/fixtures/minilm_reference.json, whose token ids are stored in the fixture itself
(`input_ids`). So every row of `embeddings.word_embeddings.weight` that no probe uses is set to zero: the
probes' outputs are bit-for-bit those of the real model, and the 47 MB of zero rows compress to nothing.
Throughput is unaffected (dense kernels do not look at values). Every other file is copied unchanged.

    python3 scripts/gpu/pack_minilm.py data/models/all-MiniLM-L6-v2 dist/minilm-probe
"""

import argparse
import json
import shutil
import struct
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "crates/model/tests/fixtures/minilm_reference.safetensors"
WORDS = "embeddings.word_embeddings.weight"


def read_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return n, json.loads(f.read(n))


def fixture_ids(path):
    """Distinct token ids in the fixture's `input_ids` (I64), special tokens included."""
    n, header = read_header(path)
    meta = header["input_ids"]
    if meta["dtype"] != "I64":
        sys.exit(f"error: {path}: input_ids is {meta['dtype']}, expected I64")
    start, end = meta["data_offsets"]
    with open(path, "rb") as f:
        f.seek(8 + n + start)
        raw = f.read(end - start)
    return set(struct.unpack(f"<{len(raw) // 8}q", raw))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path, help="MiniLM directory (HF layout)")
    p.add_argument("dst", type=Path, help="output directory (replaced)")
    p.add_argument("--fixture", type=Path, default=FIXTURE)
    p.add_argument("--keep-ids", default="0,100,101,102,103", help="ids kept besides the fixture's (pad, unk, cls, sep, mask)")
    args = p.parse_args()

    model = args.src / "model.safetensors"
    if not model.is_file():
        sys.exit(f"error: {model}: not found (run `just fetch-model minilm`)")
    keep = fixture_ids(args.fixture) | {int(x) for x in args.keep_ids.split(",") if x}
    n, header = read_header(model)
    key = WORDS if WORDS in header else "bert." + WORDS
    if key not in header:
        sys.exit(f"error: {model}: no {WORDS}")
    meta = header[key]
    if meta["dtype"] != "F32":
        sys.exit(f"error: {model}: {key} is {meta['dtype']}, expected F32")
    rows, dim = meta["shape"]
    start, _ = meta["data_offsets"]
    data = bytearray(model.read_bytes())
    base = 8 + n + start
    row_bytes = dim * 4
    zero_row = bytes(row_bytes)
    for r in range(rows):
        if r not in keep:
            data[base + r * row_bytes: base + (r + 1) * row_bytes] = zero_row

    if args.dst.exists():
        shutil.rmtree(args.dst)
    shutil.copytree(args.src, args.dst, ignore=shutil.ignore_patterns("model.safetensors", "*.md", ".gitattributes"))
    (args.dst / "model.safetensors").write_bytes(bytes(data))
    (args.dst / "PACKED.txt").write_text(
        f"{args.src.name} with the rows of {key} zeroed except the {len(keep)} token ids of\n"
        f"{args.fixture.name} (written by scripts/gpu/pack_minilm.py). Only for the GPU parity check and\n"
        "throughput timing: real text embeds wrongly with it.\n"
    )
    print(f"{args.dst}: kept {len(keep)} of {rows} embedding rows")


if __name__ == "__main__":
    main()

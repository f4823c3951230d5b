#!/usr/bin/env bash
# Runs check_portable.py under the transformers 5 and 4 venvs and prints one joined markdown table.
# Same arguments as check_portable.py, e.g.
#   scripts/reference/check_portable.sh --embed target/release/embed --probe data/en-ru/pairs_dev.tsv --n 32 DIR...
# Exit status: non-zero if either run failed or a venv is missing.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
VENVS=${PORTABLE_VENVS:-"/root/venvs/portable-tf5 /root/venvs/portable-tf4"}
echo "| model | runtime | version | max abs diff | result |"
echo "| --- | --- | --- | --- | --- |"
status=0
for venv in $VENVS; do
    if [ ! -f "$venv/READY" ]; then
        echo "| - | $venv | - | venv missing (no READY marker) | FAIL |"
        status=1
        continue
    fi
    "$venv/bin/python" "$HERE/check_portable.py" --rows-only "$@" || status=1
done
exit $status

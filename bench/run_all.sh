#!/usr/bin/env bash
# Every benchmark, one after the other; each waits (bounded, BENCH_MAX_WAIT s) for a quiet machine
# and writes <name>.md/.json into OUT (default bench/results: this script is the one that
# replaces the committed figures; each script alone writes only with --out). About 20 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=${OUT:-bench/results}
$PY -m pip install -q -e '.[test,bench]'
for b in micro hits miss tune memory; do
  echo "== $b"; $PY "bench/$b.py" --out "$OUT"
done
echo "== load"; $PY bench/load.py --out "$OUT"

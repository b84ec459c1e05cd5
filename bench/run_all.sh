#!/usr/bin/env bash
# Every benchmark, one after the other; each waits (bounded, BENCH_MAX_WAIT s) for a quiet machine
# and writes bench/results/<name>.md/.json. About 20 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
$PY -m pip install -q -e '.[test,bench]'
for b in micro hits miss tune memory; do
  echo "== $b"; $PY "bench/$b.py"
done
echo "== load"; $PY bench/load.py

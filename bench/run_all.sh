#!/usr/bin/env bash
# Every benchmark, one after the other; each waits (bounded, BENCH_MAX_WAIT s) for a quiet machine
# and writes <name>.md/.json into OUT (default bench/results: this script is the one that
# replaces the committed figures; each script alone writes only with --out). About 40 minutes on
# 2 cores; PEERS=1 adds the comparisons that fetch their peers (thumbor from PyPI into
# bench/.venv-thumbor, ipx and sharp from npm into bench/.ipx and a temporary directory): another
# 40-50 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=${OUT:-bench/results}
scripts/bootstrap  # the dev lock: the test and bench tools at their locked versions
for b in micro hits miss tune memory; do
  echo "== $b"; $PY "bench/$b.py" --out "$OUT"
done
echo "== load"; $PY bench/load.py --out "$OUT"
echo "== library upload"; $PY bench/library.py upload --out "$OUT"
echo "== library list"; $PY bench/library.py list --out "$OUT"
echo "== library v2"; $PY -m bench.library_v2 --out "$OUT"
echo "== admin session check"; $PY bench/admin_session.py --out "$OUT"
echo "== cache entries"; $PY bench/cache_entries.py --out "$OUT"
echo "== request schemas"; $PY -m bench.schemas --out "$OUT"
echo "== admin portal"; $PY -m bench.portal --out "$OUT"; $PY -m bench.portal_paint --out "$OUT"
echo "== resilience"; $PY bench/resilience.py --duration 20 --out "$OUT"
if [ "${PEERS:-0}" = 1 ]; then
  echo "== peers (thumbor, ipx)"; $PY bench/peers.py --out "$OUT"
  echo "== quality"; $PY bench/quality.py --out "$OUT"
fi

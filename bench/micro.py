"""Microbenchmark of the hot-path functions: compiled (mediaproxy._native)
against the pure-Python reference, plus the fast path's per-request parse.

    .venv/bin/python bench/micro.py [--out DIR]   # prints a table; with --out, writes DIR/micro.json
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from mediaproxy import hotpath

N = 200_000
CASES = {
    "result_key": (("cdn", "avatars/80351110224678912/8342729096ea3675442027381ff50dfe",
                    "256x256|cover|center|webp|default|-|00", "1"), {}),
    "etag": ((os.urandom(12_000),), {}),
    "parse_range": (("bytes=1000-1999", 12_000), {}),
    "etag_matches": (('W/"0123456789abcdef0123456789abcdef", "cc622f084889378eb1cb5ddd21b9ff19"',
                      '"cc622f084889378eb1cb5ddd21b9ff19"'), {}),
}


def per_call(fn, args, n: int = N) -> float:
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn(*args)
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e9  # ns


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", metavar="DIR", help="write micro.json into DIR (bench/results: the committed figures)")
    opts = ap.parse_args()
    try:
        from mediaproxy import _native
    except ImportError:
        print("mediaproxy._native is not built", file=sys.stderr)
        return 1
    rows = []
    for name, (args, _) in CASES.items():
        py = per_call(getattr(hotpath, "py_" + name), args)
        fn = getattr(_native, name, None)
        if fn is None:  # compiled, hardly faster and dropped (docs/performance.md); the Python cost stays on record
            rows.append({"function": name, "python_ns": round(py), "native_ns": None, "speedup": None})
            continue
        nat = per_call(fn, args)
        rows.append({"function": name, "python_ns": round(py), "native_ns": round(nat), "speedup": round(py / nat, 2)})
    print(f"{'function':14s} {'python ns':>10s} {'native ns':>10s} {'speedup':>8s}")
    for r in rows:
        if r["native_ns"] is None:
            print(f"{r['function']:14s} {r['python_ns']:10d} {'-':>10s} {'(python)':>8s}")
        else:
            print(f"{r['function']:14s} {r['python_ns']:10d} {r['native_ns']:10d} {r['speedup']:7.2f}x")
    if not opts.out:
        print("(not written: pass --out DIR to keep them)")
        return 0
    out = Path(opts.out) / "micro.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"loadavg": os.getloadavg(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

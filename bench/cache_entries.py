"""In-process timing of the result cache's store and hit (ResultCache.put / get) and of a
purge by source, at a given number of entries: what the entry format and the purge cost.

    .venv/bin/python bench/cache_entries.py [--entries 20000] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from common import add_out_argument, write_results

from mediaproxy.cache import Entry, ResultCache


def per_call(fn, n: int) -> float:
    rounds = []
    for _ in range(9):
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        rounds.append((time.perf_counter() - t0) / n)
    return min(rounds) * 1e6  # the least disturbed round: the machine may be busy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=20000)
    add_out_argument(ap)
    args = ap.parse_args()
    data: dict = {"entries": args.entries}
    lines = ["| entry | put (µs) | hit (µs) |", "|---|---|---|"]
    with tempfile.TemporaryDirectory() as d:
        cache = ResultCache(os.path.join(d, "c"), 4 * 1024**3)
        small, large = os.urandom(10_000), os.urandom(200_000)
        for i in range(args.entries):
            cache.put(f"fill-{i}", Entry("image/webp", '"e"', 0.0, len(small), body=small), ("lib", f"o{i % 5000}"))
        for size, body in (("10 KB", small), ("200 KB", large)):
            def put(i, body=body, size=size):
                cache.put(f"k{size}-{i % 500}", Entry("image/webp", '"e"', 0.0, len(body), body=body), ("lib", f"s{i}"))

            def get(i, size=size):
                e = cache.get(f"k{size}-{i % 500}")
                e.close()

            put_us, get_us = per_call(put, 500), per_call(get, 2000)
            data[size] = {"put_us": round(put_us, 1), "hit_us": round(get_us, 1)}
            lines.append(f"| {size} | {put_us:.1f} | {get_us:.1f} |")
        t0 = time.perf_counter()
        removed = cache.purge_keys([("lib", "o17"), ("lib", "o18")])
        purge_ms = (time.perf_counter() - t0) * 1e3
        cache.close()
    data["purge_ms"] = round(purge_ms, 2)
    lines.append(f"\npurge of 2 objects ({removed} entries) among {args.entries}: {purge_ms:.2f} ms")
    write_results("cache-entries", data, "\n".join(lines), args.out)


if __name__ == "__main__":
    main()

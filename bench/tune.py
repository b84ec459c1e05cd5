"""The measurements behind gunicorn.conf.py's defaults (docs/performance.md "Tuning").

    .venv/bin/python bench/tune.py [--duration 8]

Hits: a cached 256px WebP avatar, wrk -t2 -c16. Misses: result cache off,
1024px JPEG -> 256px WebP, wrk -t2 -c8 with Connection: close. For each
workers x threads combination, and VIPS_CONCURRENCY 1 vs 2 on misses.
"""

from __future__ import annotations

import argparse
import tempfile
import urllib.request
from pathlib import Path

from common import USER, Server, add_out_argument, jpeg, loadavg, wait_quiet, write_results, wrk

H = "8342729096ea3675442027381ff50dfe"
PATH = f"/avatars/{USER}/{H}.webp?size=256"
GRID = [("2", "1", "1"), ("2", "2", "1"), ("2", "4", "1"), ("2", "8", "1"), ("3", "4", "1"), ("2", "4", "2")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=8)
    add_out_argument(ap)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-tune-"))
    src = jpeg(1024, 1024, seed=2)
    load = wait_quiet()
    rows = []
    for workers, threads, vips in GRID:
        env = {"MEDIAPROXY_WORKERS": workers, "MEDIAPROXY_THREADS": threads, "MEDIAPROXY_VIPS_CONCURRENCY": vips}
        row = {"workers": workers, "threads": threads, "vips_concurrency": vips}
        with Server(work / f"hit{workers}{threads}{vips}", env=env) as srv:
            srv.put(f"avatars/{USER}/{H}", src)
            urllib.request.urlopen(srv.url(PATH)).read()
            wrk(srv.url(PATH), duration=2)
            row["hits"] = wrk(srv.url(PATH), duration=args.duration)
            row["rss_mib"] = [round(__import__("common").rss_kb(p) / 1024, 1) for p in srv.worker_pids()]
        with Server(work / f"miss{workers}{threads}{vips}", env={**env, "MEDIAPROXY_CACHE_DIR": ""}) as srv:
            srv.put(f"avatars/{USER}/{H}", src)
            close = ("Connection: close",)
            wrk(srv.url(PATH), threads=2, connections=8, duration=2, headers=close)
            row["misses"] = wrk(srv.url(PATH), threads=2, connections=8, duration=args.duration, headers=close)
        rows.append(row)
        print(row, flush=True)
    load["loadavg_1m_at_end"] = round(loadavg(), 2)
    md = ["# gunicorn tuning grid\n", f"load {load}\n",
          "| workers | threads | vips | hits req/s | hits p99 ms | misses req/s | misses p99 ms | RSS MiB |",
          "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        md.append(f"| {r['workers']} | {r['threads']} | {r['vips_concurrency']} | {r['hits']['rps']:.0f} | "
                  f"{r['hits']['p99_ms']} | {r['misses']['rps']:.1f} | {r['misses']['p99_ms']} | {r['rss_mib']} |")
    write_results("tune", {"load": load, "rows": rows}, "\n".join(md), args.out)


if __name__ == "__main__":
    main()

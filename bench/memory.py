"""Target 4: worker RSS stays flat (+-10%) over 20,000 mixed requests; and the
glibc fragmentation answer, measured: gunicorn.conf.py's default (arena cap and
fixed mmap and trim thresholds via mallopt in post_fork, malloc_trim at most once a
second after a request), the same without the trim, the arena cap alone,
glibc's defaults, and jemalloc via LD_PRELOAD.

    .venv/bin/python bench/memory.py [--requests 20000] [--allocators default,no-trim,arena2,glibc,jemalloc]

Mix (8 client threads, keep-alive): 70% hits on 40 hot URLs, 30% misses
(distinct size/format/quality per request over 30 sources: avatars, banners,
emojis). RSS of each worker is read from /proc after a 2,000-request warm-up
(the baseline) and every 2,000 requests, each time at rest (1.2 s idle, then a
few requests: past the malloc_trim interval, see settle()); max_requests is
off so no worker is recycled during the run.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import random
import tempfile
import threading
import time
from pathlib import Path

from common import Server, add_out_argument, jpeg, loadavg, photo, rss_kb, wait_quiet, write_results

USER, GUILD = "80351110224678912", "41771983423143937"
SIZES = [16, 20, 22, 24, 28, 32, 40, 44, 48, 56, 60, 64, 80, 96, 100, 128, 160, 240, 256, 300, 320, 480, 512]
FORMATS = ["webp", "png", "jpg", "avif"]
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"


def seed(srv: Server, n: int = 30) -> tuple[list[str], itertools.count]:
    for i in range(n):
        srv.put(f"avatars/{USER}/h{i}", jpeg(768, 768, seed=i))
        srv.put(f"banners/{GUILD}/h{i}", jpeg(1600, 900, seed=i + 100))
        srv.put(f"emojis/{10**17 + i}", photo(128, 128, seed=i).bandjoin(255).pngsave_buffer())
    hot = [f"/avatars/{USER}/h{i}.webp?size={s}" for i in range(20) for s in (64, 128)]
    return hot, itertools.count()


def miss_url(rng: random.Random, n: int) -> str:
    i = rng.randrange(30)
    kind = rng.random()
    q = rng.randrange(30, 95)
    if kind < 0.6:
        return f"/avatars/{USER}/h{i}.{rng.choice(FORMATS)}?size={rng.choice(SIZES)}&quality={q}"
    if kind < 0.85:
        return f"/banners/{GUILD}/h{i}.{rng.choice(FORMATS)}?width={rng.randrange(100, 1200)}&quality={q}"
    return f"/emojis/{10**17 + i}.{rng.choice(['webp', 'png'])}?size={rng.choice(SIZES[:14])}&quality={q}"


def drive(port: int, hot: list[str], total: int, start: int, threads: int = 8) -> int:
    """Send ``total`` requests; return how many were not 200."""
    counter = itertools.count(start)
    bad = [0]
    lock = threading.Lock()

    def worker(tid: int) -> None:
        rng = random.Random(start * 100 + tid)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                n = next(counter)
            if n >= start + total:
                break
            path = rng.choice(hot) if rng.random() < 0.7 else miss_url(rng, n)
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    with lock:
                        bad[0] += 1
            except (OSError, http.client.HTTPException):
                with lock:
                    bad[0] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.close()

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return bad[0]


def settle(port: int) -> None:
    """Let the workers come to rest: past gunicorn.conf.py's malloc_trim interval, then a few
    requests on fresh connections (each worker's post_request hook trims), so every sample is
    taken at the same point rather than wherever a transform's garbage happens to stand."""
    time.sleep(1.2)
    for _ in range(6):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/_health", headers={"Connection": "close"})
        conn.getresponse().read()
        conn.close()


def run(alloc: str, total: int, work: Path) -> dict:
    env = {"MEDIAPROXY_MAX_REQUESTS": "0"}
    if alloc not in ("default", "mmap1m", "trim32m"):  # only these trim; the others show what each step alone does
        env["MEDIAPROXY_MALLOC_TRIM_INTERVAL"] = "0"
    if alloc == "glibc":  # glibc's own defaults: no mallopt, no trim
        env.update(MEDIAPROXY_MALLOC_ARENA_MAX="0", MEDIAPROXY_MALLOC_MMAP_THRESHOLD="0",
                   MEDIAPROXY_MALLOC_TRIM_THRESHOLD="0")
    elif alloc == "mmap1m":  # the thresholds before: every freed buffer of 1 MiB or more unmapped at once
        env.update(MEDIAPROXY_MALLOC_MMAP_THRESHOLD=str(1 << 20), MEDIAPROXY_MALLOC_TRIM_THRESHOLD="0",
                   MEDIAPROXY_MALLOC_TRIM_INTERVAL="1")
    elif alloc == "trim32m":  # the trim threshold before: the free top of a heap kept up to 32 MiB
        env.update(MEDIAPROXY_MALLOC_TRIM_THRESHOLD=str(32 << 20))
    elif alloc == "arena2":  # the arena cap alone
        env.update(MEDIAPROXY_MALLOC_MMAP_THRESHOLD="0", MEDIAPROXY_MALLOC_TRIM_THRESHOLD="0")
    preload = JEMALLOC if alloc == "jemalloc" else ""
    with Server(work / alloc, env=env, preload=preload) as srv:
        hot, _ = seed(srv)
        step, warm = 2000, 2000
        errors = drive(srv.port, hot, warm, 0)
        settle(srv.port)
        pids = srv.worker_pids()
        samples = [[rss_kb(p) for p in pids]]
        anon = [[rss_kb(p, "RssAnon") for p in pids]]
        done = 0
        while done < total:
            errors += drive(srv.port, hot, step, warm + done)
            done += step
            settle(srv.port)
            samples.append([rss_kb(p) for p in pids])
            anon.append([rss_kb(p, "RssAnon") for p in pids])
        base = [s / 1024 for s in samples[0]]
        end = [s / 1024 for s in samples[-1]]
        peak = [max(s[i] for s in samples) / 1024 for i in range(len(pids))]
        change = [round((e - b) / b * 100, 1) for b, e in zip(base, end, strict=True)]
        anon_change = [round((e - b) / b * 100, 1) for b, e in zip(anon[0], anon[-1], strict=True)]
        # Trend, less sensitive to where one sample falls in a transform: mean of the last 3 vs the first 3.
        first3 = [sum(s[i] for s in samples[:3]) / 3 for i in range(len(pids))]
        last3 = [sum(s[i] for s in samples[-3:]) / 3 for i in range(len(pids))]
        trend = [round((b - a) / a * 100, 1) for a, b in zip(first3, last3, strict=True)]
        return {"errors": errors, "requests": total + warm, "workers": len(pids),
                "rss_mib_samples": [[round(x / 1024, 1) for x in s] for s in samples],
                "baseline_mib": [round(x, 1) for x in base], "end_mib": [round(x, 1) for x in end],
                "peak_mib": [round(x, 1) for x in peak], "change_pct": change, "trend_pct": trend,
                "anon_mib_samples": [[round(x / 1024, 1) for x in s] for s in anon], "anon_change_pct": anon_change,
                "flat": all(abs(c) <= 10 for c in change)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--allocators", default="default,no-trim,arena2,glibc,jemalloc",
                    help="default = gunicorn.conf.py's (arena cap, fixed mmap threshold, malloc_trim each second); "
                         "no-trim = the same without malloc_trim; mmap1m = the default with the mmap threshold at "
                         "1 MiB and glibc's trim threshold (the settings before); trim32m = the default with the trim "
                         "threshold at 32 MiB (the setting before)")
    add_out_argument(ap)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    load = wait_quiet()
    out = {}
    for alloc in args.allocators.split(","):
        if alloc == "jemalloc" and not Path(JEMALLOC).exists():
            print("jemalloc not installed (apt-get install libjemalloc2): skipped")
            continue
        out[alloc] = run(alloc, args.requests, work)
        print(alloc, out[alloc]["baseline_mib"], "->", out[alloc]["end_mib"], out[alloc]["change_pct"], flush=True)
    load["loadavg_1m_at_end"] = round(loadavg(), 2)
    md = ["# Worker RSS over mixed requests (target 4: flat within +-10%)\n",
          f"{args.requests} requests after a 2,000-request warm-up, 70% hits / 30% misses, 8 client threads, "
          f"2 workers x 4 threads; load {load}\n",
          "| allocator | baseline MiB (per worker) | end MiB | peak MiB | end vs baseline % | last 3 vs first 3 % "
          "| heap (RssAnon) end vs baseline % | flat | errors |",
          "|---|---|---|---|---|---|---|---|---:|"]
    for alloc, r in out.items():
        md.append(f"| {alloc} | {r['baseline_mib']} | {r['end_mib']} | {r['peak_mib']} | {r['change_pct']} | "
                  f"{r['trend_pct']} | {r['anon_change_pct']} | {'yes' if r['flat'] else 'no'} | {r['errors']} |")
    write_results("memory", {"load": load, "results": out}, "\n".join(md), args.out)


if __name__ == "__main__":
    main()

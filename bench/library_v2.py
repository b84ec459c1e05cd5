"""The /v2 image service's image route against the origin's own route for the same object and parameters.

    .venv/bin/python -m bench.library_v2 [--rounds 5] [--requests 200] [--out results/library-v2.json]

One gunicorn (MEDIAPROXY_MODE=all, SQLite, local storage); one public image uploaded through
``POST /v2/images``. Per round, interleaved, one keep-alive client, median latency of:

- hits: ``GET /v2/images/{id}?w=256`` vs ``GET /library/{objectKey}?w=256&fm=webp`` (the same
  WebP, both from the result cache);
- misses: the same pair with a width never asked before (a render each time);
- the fallback WebP of a forbidden private image vs the origin's hit.

Prints the ratios measured in this run; writes JSON only with ``--out``. Targets:
v2/origin ≤ 1.3 for hits and misses; fallback ≈ a hit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from . import common


def timed(session: requests.Session, url: str, headers: dict | None = None) -> float:
    t0 = time.perf_counter()
    r = session.get(url, headers=headers)
    dt = time.perf_counter() - t0
    assert r.status_code == 200, (url, r.status_code, r.text[:200])
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--misses", type=int, default=20)
    ap.add_argument("--out", type=Path, metavar="DIR", help="write library-v2.json into DIR (bench/results: the "
                    "committed figures); without it nothing is written")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {"MEDIAPROXY_MODE": "all", "MEDIAPROXY_DATABASE_URL": f"sqlite:///{work}/lib.db",
               "MEDIAPROXY_QUEUE_URL": f"sqlite:///{work}/q.db"}
        with common.Server(work, env) as srv:
            out = subprocess.run([str(common.VENV_BIN / "mediaproxy"), "keys", "create", "--org", "bench"],
                                 cwd=common.ROOT, env=srv.env, capture_output=True, text=True, check=True)
            key = out.stdout.strip().splitlines()[-1]
            photo = common.jpeg(1600, 1067)
            s = requests.Session()
            up = s.post(srv.url("/v2/images"), headers={"X-API-Key": key, "X-User-Id": "bench"},
                        files={"file": ("p.jpg", photo, "image/jpeg")}).json()
            priv = s.post(srv.url("/v2/images"), headers={"X-API-Key": key, "X-User-Id": "bench"},
                          files={"file": ("q.jpg", photo, "image/jpeg"), "isPrivate": (None, "true")}).json()
            v2_hit = srv.url(f"/v2/images/{up['id']}?w=256")
            origin_hit = srv.url(f"/library/{up['objectKey']}?w=256&fm=webp")
            fallback = srv.url(f"/v2/images/{priv['id']}?w=256")
            for u in (v2_hit, origin_hit, fallback):
                timed(s, u)
            a, b = s.get(v2_hit).content, s.get(origin_hit).content
            assert a == b, "the two routes must answer the same bytes"
            rows: dict[str, list[float]] = {k: [] for k in ("v2_hit", "origin_hit", "fallback", "v2_miss",
                                                            "origin_miss")}
            width = iter(range(300, 4000))
            for _ in range(args.rounds):
                for name, url in (("v2_hit", v2_hit), ("origin_hit", origin_hit), ("fallback", fallback)):
                    rows[name].append(statistics.median(timed(s, url) for _ in range(args.requests)))
                v2m, om = [], []
                for _ in range(args.misses):
                    v2m.append(timed(s, srv.url(f"/v2/images/{up['id']}?w={next(width)}")))
                    om.append(timed(s, srv.url(f"/library/{up['objectKey']}?w={next(width)}&fm=webp")))
                rows["v2_miss"].append(statistics.median(v2m))
                rows["origin_miss"].append(statistics.median(om))
    med = {k: statistics.median(v) * 1000 for k, v in rows.items()}
    result = {
        "median_ms": {k: round(v, 3) for k, v in med.items()},
        "hit_ratio_v2_over_origin": round(med["v2_hit"] / med["origin_hit"], 3),
        "miss_ratio_v2_over_origin": round(med["v2_miss"] / med["origin_miss"], 3),
        "fallback_over_origin_hit": round(med["fallback"] / med["origin_hit"], 3),
        "rounds": args.rounds, "requests_per_round": args.requests, "misses_per_round": args.misses,
        "source": "1600x1067 JPEG → w=256 WebP", "loadavg_1m_at_end": round(common.loadavg(), 2),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "library-v2.json").write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out / 'library-v2.json'}")


if __name__ == "__main__":
    main()

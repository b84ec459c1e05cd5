"""Target 6: a 5-minute headless locust run at the highest rate that keeps
p99 < 250 ms with 0 failures.

    .venv/bin/python bench/load.py                      # search (20 s steps), then 5 minutes at the best rate
    .venv/bin/python bench/load.py --rate 300 --duration 300   # one run at a fixed rate

Starts mediaproxy with its defaults (gunicorn.conf.py), a loopback origin for
the external images (MEDIAPROXY_FETCH_ALLOW_CIDRS=127.0.0.0/8), seeds the
storage, and runs bench/locustfile.py headless (locust from the `bench` extra,
installed here if missing). Locust runs on the same 2 cores and takes its share.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import (
    BENCH,
    ROOT,
    VENV_BIN,
    Server,
    add_out_argument,
    free_port,
    jpeg,
    loadavg,
    photo,
    wait_port,
    wait_quiet,
    write_results,
)

from mediaproxy.signing import sign_path

USER0, GUILD = 80351110224678912, "41771983423143937"


def animation(size: int, frames: int, seed: int) -> bytes:
    import pyvips

    pages = [photo(size, size, seed=seed + i) for i in range(frames)]
    strip = pyvips.Image.arrayjoin(pages, across=1).copy(interpretation="srgb")
    strip.set_type(pyvips.GValue.gint_type, "page-height", size)
    strip.set_type(pyvips.GValue.array_int_type, "delay", [80] * frames)
    return strip.gifsave_buffer()


def setup(srv: Server, origin_dir: Path, origin_port: int) -> dict:
    avatars, animated, emojis, anim_emojis, banners = [], [], [], [], []
    for i in range(30):
        user, h = str(USER0 + i), f"{i:032x}"
        if i % 6 == 5:
            srv.put(f"avatars/{user}/{h}", animation(128, 6, i))
            animated.append(h)
        else:
            srv.put(f"avatars/{user}/{h}", jpeg(1024, 1024, seed=i))
        avatars.append(f"{user}/{h}")
    for i in range(12):
        e = str(10**17 + i)
        if i % 3 == 0:
            srv.put(f"emojis/{e}", animation(96, 8, i))
            anim_emojis.append(e)
        else:
            srv.put(f"emojis/{e}", photo(128, 128, seed=i).bandjoin(255).copy(interpretation="srgb").pngsave_buffer())
        emojis.append(e)
    for i in range(5):
        srv.put(f"banners/{GUILD}/{i:032x}", jpeg(1920, 1080, seed=50 + i))
        banners.append(f"{GUILD}/{i:032x}")
    size = 4 * 1024 * 1024
    attachments = []
    for i in range(4):
        key = f"attachments/112233445566778899/{998877665544332211 + i}/"
        srv.put(key + "video.bin", bytes(range(256)) * (size // 256))
        srv.put(key + "photo.jpg", jpeg(1600, 1200, seed=80 + i))
        attachments += ["/" + key + "video.bin", "/" + key + "photo.jpg"]
    external = []
    for i in range(6):
        (origin_dir / f"img{i}.jpg").write_bytes(jpeg(1200, 800, seed=90 + i))
        external.append(sign_path(f"http://127.0.0.1:{origin_port}/img{i}.jpg", srv.env["MEDIAPROXY_SECRET_KEY"]))
    return {"avatars": avatars, "animated": animated, "emojis": emojis, "animated_emojis": anim_emojis,
            "banners": banners, "attachments": attachments, "attachment_size": size, "external": external}


def locust(host: str, plan: Path, rate: float, duration: int, prefix: Path) -> dict:
    exe = VENV_BIN / "locust"
    if not exe.exists():  # locust is in the dev lock (requirements/dev.txt), which scripts/bootstrap installs
        subprocess.run([str(ROOT / "scripts" / "bootstrap")], check=True)
    per_user = 5.0
    users = max(1, round(rate / per_user))
    env = {**__import__("os").environ, "LOCUST_PLAN": str(plan), "LOCUST_USER_RATE": str(rate / users)}
    subprocess.run([str(exe), "-f", str(BENCH / "locustfile.py"), "--headless", "-u", str(users), "-r", str(users),
                    "-t", f"{duration}s", "--host", host, "--csv", str(prefix), "--only-summary",
                    "--loglevel", "WARNING", "--stop-timeout", "5"],
                   env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = list(csv.DictReader(open(f"{prefix}_stats.csv")))  # noqa: SIM115
    table = []
    agg = {}
    for r in rows:
        entry = {"name": r["Name"], "requests": int(r["Request Count"]), "failures": int(r["Failure Count"]),
                 "rps": round(float(r["Requests/s"]), 1), "p50": r["50%"], "p90": r["90%"], "p99": r["99%"],
                 "p999": r["99.9%"], "max": round(float(r["Max Response Time"]))}
        (agg.update(entry) if r["Name"] == "Aggregated" else table.append(entry))
    return {"offered_rps": rate, "users": users, "aggregate": agg, "by_name": table}


def passes(r: dict) -> bool:
    a = r["aggregate"]
    return a["failures"] == 0 and a["requests"] > 0 and float(a["p99"]) < 250


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, help="skip the search: run at this offered rate (req/s)")
    ap.add_argument("--duration", type=int, default=300)
    ap.add_argument("--rates", default="200,400,600,800,1000,1200,1500", help="search steps (req/s)")
    ap.add_argument("--step", type=int, default=20, help="seconds per search step")
    add_out_argument(ap)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    origin_dir = work / "origin"
    origin_dir.mkdir()
    origin_port = free_port()
    origin = subprocess.Popen([sys.executable, "-m", "http.server", str(origin_port), "--bind", "127.0.0.1",
                               "--directory", str(origin_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    load = wait_quiet()
    try:
        wait_port(origin_port)
        with Server(work, env={"MEDIAPROXY_FETCH_ALLOW_CIDRS": "127.0.0.0/8"}) as srv:
            plan = work / "plan.json"
            plan.write_text(json.dumps(setup(srv, origin_dir, origin_port)))
            host = srv.url("")
            search = []
            rate = args.rate
            if rate is None:
                for r in (float(x) for x in args.rates.split(",")):
                    res = locust(host, plan, r, args.step, work / f"step{int(r)}")
                    search.append(res)
                    a = res["aggregate"]
                    print(f"  {r:.0f} req/s offered: {a['rps']} done, p99 {a['p99']} ms, {a['failures']} failures",
                          flush=True)
                    if not passes(res):
                        break
                    rate = r
                rate = rate or float(args.rates.split(",")[0])
            final = locust(host, plan, rate, args.duration, work / "final")
    finally:
        origin.terminate()
        origin.wait(10)
    load["loadavg_1m_at_end"] = round(loadavg(), 2)
    a = final["aggregate"]
    md = [f"# Locust, {args.duration} s at {rate:.0f} req/s offered (target 6: p99 < 250 ms, 0 failures)\n",
          f"{final['users']} users, constant throughput; mediaproxy defaults (2 workers x 4 threads); load {load}; "
          f"result: {a['rps']} req/s done, p99 {a['p99']} ms, {a['failures']} failures -> "
          f"{'met' if passes(final) else 'NOT met'}\n",
          "| name | requests | failures | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for e in [*final["by_name"], {**a, "name": "**all**"}]:
        md.append(f"| {e['name']} | {e['requests']} | {e['failures']} | {e['rps']} | {e['p50']} | {e['p90']} | "
                  f"{e['p99']} | {e['p999']} | {e['max']} |")
    if search:
        md += ["", "Search steps:", "", "| offered req/s | done req/s | p99 ms | failures |", "|---:|---:|---:|---:|"]
        md += [f"| {s['offered_rps']:.0f} | {s['aggregate']['rps']} | {s['aggregate']['p99']} | "
               f"{s['aggregate']['failures']} |" for s in search]
    write_results("load", {"load": load, "rate": rate, "final": final, "search": search}, "\n".join(md), args.out)


if __name__ == "__main__":
    main()

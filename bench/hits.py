"""Target 1: cache hits vs nginx serving the same file (wrk -t2 -c16, same run).

    .venv/bin/python bench/hits.py [--rounds 3] [--duration 5] [--baseline DIR]

Compares, on a cached 256px WebP avatar: nginx (from apt, started here) serving
the identical bytes from disk; mediaproxy's defaults (2 workers x 4 threads,
fast path on); mediaproxy with the fast path off (every hit through Falcon);
and a bare WSGI callable returning the bytes from memory, on gunicorn's stock
gthread (2 workers x 4 threads, gunicorn's own ceiling) and on mediaproxy's
gunicorn.conf.py. Access logs off, then mediaproxy and nginx with them on. With
``--baseline DIR`` (another checkout of the project, e.g. ``git worktree add DIR main``), its
mediaproxy as shipped and its bare callable on its gunicorn.conf.py run in the same rounds:
old and new code compared on the same machine at the same time.

The machine is shared and noisy, so every server is started afresh in each
round, the rounds interleave the servers (in a rotated order), and the report
gives each server's median and the median of the per-round ratios. Every
process runs in the benchmark's own session: a server in a session of its
own gets a separate CPU share under the kernel's autogroup scheduling, which
cost mediaproxy 30% against wrk (docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from common import (
    ROOT,
    USER,
    VENV_BIN,
    Nginx,
    Server,
    add_out_argument,
    free_port,
    jpeg,
    tree_cpu,
    wait_port,
    wait_quiet,
    write_results,
    wrk,
)

BARE = """
data = open({path!r}, "rb").read()
H = [("content-type", "image/webp"), ("content-length", str(len(data)))]
def app(environ, start_response):
    start_response("200 OK", H)
    return [data]
"""
H = "8342729096ea3675442027381ff50dfe"
PATH = f"/avatars/{USER}/{H}.webp?size=256"


class Bare:
    """The bare callable under gunicorn: stock gthread flags, or mediaproxy's gunicorn.conf.py."""

    def __init__(self, work: Path, conf: bool, root: Path = ROOT):
        self.port = free_port()
        flags = ["-c", str(root / "gunicorn.conf.py")] if conf else ["-w", "2", "--threads", "4", "-k", "gthread"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIAPROXY_")}
        # gunicorn.conf.py validates mediaproxy's settings before it starts anything, even for a bare app
        # (and imports mediaproxy, from this checkout: common.Server says why)
        env.update(MEDIAPROXY_DEMO="1", MEDIAPROXY_STORAGE=str(work), PYTHONPATH=str(root))
        self.proc = subprocess.Popen([str(VENV_BIN / "gunicorn"), *flags, "-b", f"127.0.0.1:{self.port}",
                                      "--chdir", str(work), "bare:app"], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, process_group=0)
        wait_port(self.port)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Bare:
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--baseline", type=Path,
                    help="another checkout, run side by side (as shipped, and its bare callable)")
    add_out_argument(ap)
    args = ap.parse_args()
    d = args.duration
    work = Path(tempfile.mkdtemp(prefix="bench-hits-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user
    www = work / "www"
    www.mkdir()
    source = jpeg(1024, 1024)
    load = wait_quiet()

    def measured(pid: int, url: str) -> dict:
        """wrk, and the server's CPU per request (its processes and threads, from /proc): on a busy
        machine req/s follows the other jobs, CPU per request much less."""
        cpu = tree_cpu(pid)
        got = wrk(url, duration=d)
        got["cpu_us_per_request"] = round((tree_cpu(pid) - cpu) / max(1.0, got["rps"] * d) * 1e6, 1)
        return got

    def mediaproxy(logs: bool, fast: bool = True, root: Path = ROOT):
        def run() -> dict:
            env = {"MEDIAPROXY_ACCESS_LOG": "1" if logs else "0", "MEDIAPROXY_LOG_LEVEL": "info" if logs else "warning",
                   "MEDIAPROXY_FAST_PATH": "1" if fast else "0"}
            with Server(work / "mp", env=env, root=root) as srv:
                srv.put(f"avatars/{USER}/{H}", source)
                body = urllib.request.urlopen(srv.url(PATH)).read()  # a miss on the first run: computes and caches
                (www / "avatar.webp").write_bytes(body)
                wrk(srv.url(PATH), duration=1)  # warm up
                return measured(srv.proc.pid, srv.url(PATH))
        return run

    def nginx(logs: bool):
        def run() -> dict:
            with Nginx(www, access_log=logs) as ng:
                url = f"http://127.0.0.1:{ng.port}/avatar.webp"
                wrk(url, duration=1)
                return measured(ng.proc.pid, url)
        return run

    def bare(conf: bool, root: Path = ROOT):
        def run() -> dict:
            (work / "bare.py").write_text(BARE.format(path=str(www / "avatar.webp")))
            with Bare(work, conf, root) as b:
                wrk(b.url("/"), duration=1)
                return measured(b.proc.pid, b.url("/"))
        return run

    servers = {
        "mediaproxy": mediaproxy(False),
        "mediaproxy, fast path off": mediaproxy(False, fast=False),
        "nginx": nginx(False),
        "bare WSGI, stock gthread 2x4": bare(False),
        "bare WSGI, mediaproxy's gunicorn.conf.py": bare(True),
        "mediaproxy, access log on": mediaproxy(True),
        "nginx, access log on": nginx(True),
    }
    old = "baseline: mediaproxy, access log on", "baseline: bare WSGI, its gunicorn.conf.py"
    if args.baseline:
        servers[old[0]] = mediaproxy(True, root=args.baseline.resolve())
        servers[old[1]] = bare(True, root=args.baseline.resolve())
    mediaproxy(False)()  # computes the avatar (and writes nginx's copy) before any round
    rounds: list[dict[str, dict]] = []
    names = list(servers)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        got = {}
        for name in order:
            got[name] = servers[name]()
            print(f"round {r + 1}: {name}: {got[name]['rps']:.0f} req/s", flush=True)
        rounds.append(got)

    def ratio(a: str, b: str, field: str = "rps") -> dict:
        per = [round(x[a][field] / x[b][field], 3) for x in rounds]
        return {"median": statistics.median(per), "rounds": per}

    ratios = {
        "mediaproxy / nginx": ratio("mediaproxy", "nginx"),
        "mediaproxy / nginx, access logs on": ratio("mediaproxy, access log on", "nginx, access log on"),
        "fast path off / nginx": ratio("mediaproxy, fast path off", "nginx"),
        "bare WSGI (stock gthread) / nginx": ratio("bare WSGI, stock gthread 2x4", "nginx"),
        "bare WSGI (gunicorn.conf.py) / nginx": ratio("bare WSGI, mediaproxy's gunicorn.conf.py", "nginx"),
        "mediaproxy / bare WSGI (stock gthread)": ratio("mediaproxy", "bare WSGI, stock gthread 2x4"),
        "mediaproxy / bare WSGI (gunicorn.conf.py)": ratio("mediaproxy", "bare WSGI, mediaproxy's gunicorn.conf.py"),
        "mediaproxy as shipped (access log on) / bare WSGI (gunicorn.conf.py)":
            ratio("mediaproxy, access log on", "bare WSGI, mediaproxy's gunicorn.conf.py"),
        "CPU per request: bare WSGI (gunicorn.conf.py) / mediaproxy as shipped":
            ratio("bare WSGI, mediaproxy's gunicorn.conf.py", "mediaproxy, access log on", "cpu_us_per_request"),
        "mediaproxy / fast path off": ratio("mediaproxy", "mediaproxy, fast path off"),
        "bare WSGI: gunicorn.conf.py / stock gthread": ratio("bare WSGI, mediaproxy's gunicorn.conf.py",
                                                             "bare WSGI, stock gthread 2x4"),
        "CPU per request: bare WSGI, stock gthread / gunicorn.conf.py":
            ratio("bare WSGI, stock gthread 2x4", "bare WSGI, mediaproxy's gunicorn.conf.py", "cpu_us_per_request"),
    }
    if args.baseline:
        ratios.update({
            "baseline: mediaproxy as shipped / its bare WSGI (gunicorn.conf.py)": ratio(*old),
            "baseline: CPU per request: its bare WSGI / mediaproxy as shipped": ratio(old[1], old[0],
                                                                                       "cpu_us_per_request"),
            "mediaproxy as shipped: this checkout / baseline": ratio("mediaproxy, access log on", old[0]),
            "CPU per request, mediaproxy as shipped: baseline / this checkout":
                ratio(old[0], "mediaproxy, access log on", "cpu_us_per_request"),
            "bare WSGI on gunicorn.conf.py: this checkout / baseline":
                ratio("bare WSGI, mediaproxy's gunicorn.conf.py", old[1]),
            "CPU per request, bare WSGI on gunicorn.conf.py: baseline / this checkout":
                ratio(old[1], "bare WSGI, mediaproxy's gunicorn.conf.py", "cpu_us_per_request"),
        })
    load["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    body = (www / "avatar.webp").read_bytes()
    md = ["# Cache hits vs nginx (target 1: >= 0.15x)\n",
          f"256px WebP avatar, {len(body)} bytes; wrk -t2 -c16 -d{d}s; {args.rounds} rounds, each server started "
          f"afresh per round; load {load}\n",
          "| server | median req/s | req/s per round | median p99 ms | median CPU µs per request |",
          "|---|---:|---|---:|---:|"]
    for name in names:
        rps = [x[name]["rps"] for x in rounds]
        p99 = statistics.median(x[name]["p99_ms"] for x in rounds)
        errors = sum(x[name]["errors"] for x in rounds)
        note = f" ({errors} errors)" if errors else ""
        cpu = statistics.median(x[name]["cpu_us_per_request"] for x in rounds)
        md.append(f"| {name} | {statistics.median(rps):.0f} | {', '.join(f'{v:.0f}' for v in rps)}{note} | {p99} "
                  f"| {cpu} |")
    md += ["", "| ratio | median | per round |", "|---|---:|---|"]
    md += [f"| {k} | {v['median']:.3f} | {', '.join(f'{x:.3f}' for x in v['rounds'])} |" for k, v in ratios.items()]
    data = {"load": load, "body_bytes": len(body), "rounds": rounds, "ratios": ratios}
    write_results("hits", data, "\n".join(md), args.out)


if __name__ == "__main__":
    main()

"""Target 1: cache hits vs nginx serving the same file (wrk -t2 -c16, same run).

    .venv/bin/python bench/hits.py [--duration 10]

Compares, on a cached 256px WebP avatar: nginx (from apt, started here) serving
the identical bytes from disk; mediaproxy's defaults (2 workers x 4 threads,
fast path on); mediaproxy with the fast path off (every hit through Falcon);
and a bare WSGI callable returning the bytes from memory on the same gunicorn
settings (the ceiling). Each pair is measured with access logs off and on.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from common import USER, VENV_BIN, Nginx, Server, free_port, jpeg, wait_port, wait_quiet, write_results, wrk

BARE = """
data = open({path!r}, "rb").read()
H = [("content-type", "image/webp"), ("content-length", str(len(data)))]
def app(environ, start_response):
    start_response("200 OK", H)
    return [data]
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    args = ap.parse_args()
    d = args.duration
    work = Path(tempfile.mkdtemp(prefix="bench-hits-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user
    load = wait_quiet()
    h = "8342729096ea3675442027381ff50dfe"
    path = f"/avatars/{USER}/{h}.webp?size=256"
    results: dict[str, dict] = {}
    for logs in (False, True):
        tag = "logs on" if logs else "logs off"
        env = {"MEDIAPROXY_ACCESS_LOG": "1" if logs else "0", "MEDIAPROXY_LOG_LEVEL": "info" if logs else "warning"}
        with Server(work, env=env) as srv:
            srv.put(f"avatars/{USER}/{h}", jpeg(1024, 1024))
            body = urllib.request.urlopen(srv.url(path)).read()  # miss: computes and caches
            www = work / "www"
            www.mkdir(exist_ok=True)
            (www / "avatar.webp").write_bytes(body)
            wrk(srv.url(path), duration=2)  # warm up
            results[f"mediaproxy ({tag})"] = wrk(srv.url(path), duration=d)
        with Server(work, env={**env, "MEDIAPROXY_FAST_PATH": "0"}, name="falcon") as srv:
            wrk(srv.url(path), duration=2)
            results[f"mediaproxy, fast path off ({tag})"] = wrk(srv.url(path), duration=d)
        with Nginx(www, access_log=logs) as ng:
            url = f"http://127.0.0.1:{ng.port}/avatar.webp"
            wrk(url, duration=2)
            results[f"nginx ({tag})"] = wrk(url, duration=d)
    (work / "bare.py").write_text(BARE.format(path=str(www / "avatar.webp")))
    port = free_port()
    bare = subprocess.Popen([str(VENV_BIN / "gunicorn"), "-w", "2", "--threads", "4", "-k", "gthread", "-b",
                             f"127.0.0.1:{port}", "--chdir", str(work), "bare:app"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        wrk(f"http://127.0.0.1:{port}/", duration=2)
        results["bare WSGI callable (gunicorn 2x4 gthread)"] = wrk(f"http://127.0.0.1:{port}/", duration=d)
    finally:
        bare.terminate()
        bare.wait(10)
    ratios = {
        "mediaproxy / nginx (logs off)": results["mediaproxy (logs off)"]["rps"] / results["nginx (logs off)"]["rps"],
        "mediaproxy / nginx (logs on)": results["mediaproxy (logs on)"]["rps"] / results["nginx (logs on)"]["rps"],
        "fast path off / nginx (logs off)":
            results["mediaproxy, fast path off (logs off)"]["rps"] / results["nginx (logs off)"]["rps"],
        "bare WSGI / nginx (logs off)":
            results["bare WSGI callable (gunicorn 2x4 gthread)"]["rps"] / results["nginx (logs off)"]["rps"],
        "mediaproxy / bare WSGI (logs off)":
            results["mediaproxy (logs off)"]["rps"] / results["bare WSGI callable (gunicorn 2x4 gthread)"]["rps"],
    }
    ratios = {k: round(v, 3) for k, v in ratios.items()}
    load["loadavg_1m_at_end"] = round(__import__("os").getloadavg()[0], 2)
    md = ["# Cache hits vs nginx (target 1: >= 0.15x)\n",
          f"256px WebP avatar, {len(body)} bytes; wrk -t2 -c16 -d{d}s; load {load}\n",
          "| server | req/s | mean ms | p99 ms | errors |", "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        md.append(f"| {name} | {r['rps']:.0f} | {r['mean_ms']:.2f} | {r['p99_ms']} | {r['errors']} |")
    md += ["", "| ratio | value |", "|---|---:|"] + [f"| {k} | {v:.3f} |" for k, v in ratios.items()]
    write_results("hits", {"load": load, "body_bytes": len(body), "results": results, "ratios": ratios}, "\n".join(md))


if __name__ == "__main__":
    main()

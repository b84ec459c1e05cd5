"""Misses against thumbor, side by side: the speed half of the quality-per-byte work (bench/quality.py is the other).

    .venv/bin/python bench/thumbor.py [--duration 5] [--rounds 2] [--workers 2] [--cases a,b,d] [--out DIR]

mediaproxy (gunicorn.conf.py, ``--workers`` workers, result cache off) and
thumbor (installed from PyPI into bench/.venv-thumbor, PIL engine, file
loader, no storage or result storage, as many processes as mediaproxy has
workers) serve the same JPEG files from local disk:

  a  1024x1024 JPEG -> 256x256 WebP       (avatar)
  b  1024x1024 JPEG -> 128x128 JPEG       (avatar)
  d  2048x1536 JPEG -> 800x600 WebP       (banner)

at quality 80 on both sides (each one's default). Sources are scikit-image's
astronaut photo at those sizes (JPEG q90, as bench/quality.py makes them).
Each round starts both servers afresh and runs wrk on every case at one
connection and at four (-t1, ``--duration`` seconds after a 1 s warm-up),
alternating servers; the table gives the median over rounds of
mediaproxy's req/s over thumbor's. Targets: >= 1.2 on a and d, >= 1.0 on b.
Results are written only with ``--out DIR`` (``--out bench/results`` replaces
the committed figures). ``BENCH_PORTS=8400-8499`` keeps both servers' ports
in that range.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import quality
from common import Server, add_out_argument, free_port, loadavg, wait_port, write_results, wrk
from miss import THUMBOR_CONF, thumbor_python

USER, GUILD = "80351110224678912", "41771983423143937"
H = "8342729096ea3675442027381ff50dfe"
CASES = {
    "a": (f"/avatars/{USER}/{H}.webp?size=256", "/unsafe/256x256/filters:format(webp):quality(80)/a.jpg"),
    "b": (f"/avatars/{USER}/{H}.jpeg?size=128", "/unsafe/128x128/filters:format(jpeg):quality(80)/a.jpg"),
    "d": (f"/banners/{GUILD}/{H}.webp?width=800", "/unsafe/800x0/filters:format(webp):quality(80)/d.jpg"),
}
CONNECTIONS = (1, 4)


class Thumbor:
    def __init__(self, images: Path, workdir: Path, processes: int):
        exe = thumbor_python()
        conf = workdir / "thumbor.conf"
        conf.write_text(THUMBOR_CONF.format(root=str(images)))
        self.port = free_port()
        self.proc = subprocess.Popen(
            [str(exe), "-p", str(self.port), "-c", str(conf), "-l", "warning", "--processes", str(processes)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0)
        wait_port(self.port, path="/healthcheck")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(20)


# pipeline 1's settings, for the in-process CPU comparison (the quality-per-byte work changed these)
PIPELINE_1 = {"LINEAR": False, "DCT_MARGIN": 1.0, "WEBP_EFFORT": 2, "WEBP_EFFORT_LARGE": 2, "WEBP_SHARP_YUV_PIXELS": 0,
              "JPEG_FULL_CHROMA_PIXELS": 0}


def cpu_per_request(sources: dict[str, bytes], n: int) -> dict:
    """CPU ms per transform in this process (getrusage, all threads), interleaved: mediaproxy's pipeline,
    the same with pipeline 1's settings, and Pillow as thumbor drives it. CPU time, unlike wall time or
    req/s, hardly moves with the load of other jobs on a shared machine."""
    import resource

    from mediaproxy.media import pipeline

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def with_settings(settings: dict, fn):
        def run():
            old = {k: getattr(pipeline, k) for k in settings}
            for k, v in settings.items():
                setattr(pipeline, k, v)
            try:
                fn()
            finally:
                for k, v in old.items():
                    setattr(pipeline, k, v)
        return run

    out = {}
    for c in sources:
        case, src = quality.CASES[c], sources[c]
        def ours(src=src, case=case):
            quality.mediaproxy(src, case, None)

        def pillow(src=src, case=case):
            quality.pillow_thumbor(src, case, None)

        fns = {"mediaproxy": ours, "pipeline 1 settings": with_settings(PIPELINE_1, ours), "pillow (thumbor)": pillow}
        total = dict.fromkeys(fns, 0.0)
        for f in fns.values():
            f()
        for _ in range(n):
            for name, f in fns.items():
                t = cpu()
                f()
                total[name] += cpu() - t
        ms = {k: round(v / n * 1000, 2) for k, v in total.items()}
        out[c] = {"cpu_ms": ms, "pillow_over_mediaproxy": round(ms["pillow (thumbor)"] / ms["mediaproxy"], 3),
                  "pillow_over_pipeline_1": round(ms["pillow (thumbor)"] / ms["pipeline 1 settings"], 3)}
        print(f"  cpu {c}: {ms}", flush=True)
    return out


def measure(url: str, connections: int, duration: int) -> dict:
    wrk(url, threads=1, connections=connections, duration=1)
    return wrk(url, threads=1, connections=connections, duration=duration)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cpu-n", type=int, default=40, help="transforms per implementation for the CPU table")
    ap.add_argument("--cases", default=",".join(CASES), help="a subset of a,b,d")
    add_out_argument(ap)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-thumbor-"))
    images = work / "images"
    images.mkdir()
    a = quality.photo_sources(quality.CASES["a"], 1)[0][1]
    d = quality.photo_sources(quality.CASES["d"], 1)[0][1]
    (images / "a.jpg").write_bytes(a)
    (images / "d.jpg").write_bytes(d)
    load_start = round(loadavg(), 2)
    os.environ.setdefault("VIPS_CONCURRENCY", "1")  # as the server's workers
    cases = {c: CASES[c] for c in args.cases.split(",")}
    cpu = cpu_per_request({c: {"a": a, "b": a, "d": d}[c] for c in cases}, args.cpu_n)
    runs: dict = {f"{c} c{n}": {"mediaproxy": [], "thumbor": []} for c in cases for n in CONNECTIONS}
    env = {"MEDIAPROXY_CACHE_DIR": "", "MEDIAPROXY_WORKERS": str(args.workers)}
    for r in range(args.rounds):
        srv = Server(work / f"mp{r}", env=env)
        th = Thumbor(images, work, args.workers)
        try:
            srv.put(f"avatars/{USER}/{H}", a)
            srv.put(f"banners/{GUILD}/{H}", d)
            for c, (mp_path, th_path) in cases.items():
                for n in CONNECTIONS:
                    pair = [("mediaproxy", srv.url(mp_path)), ("thumbor", th.url(th_path))]
                    for name, url in (pair if r % 2 == 0 else pair[::-1]):
                        res = measure(url, n, args.duration)
                        runs[f"{c} c{n}"][name].append(res)
                        print(f"  round {r} {c} c{n} {name:10} {res['rps']:8.1f} req/s", flush=True)
        finally:
            srv.stop()
            th.stop()
    shutil.rmtree(work, ignore_errors=True)
    table = {}
    for key, sides in runs.items():
        mp = [x["rps"] for x in sides["mediaproxy"]]
        th = [x["rps"] for x in sides["thumbor"]]
        table[key] = {
            "mediaproxy_rps": statistics.median(mp), "thumbor_rps": statistics.median(th),
            "ratio": round(statistics.median(m / t for m, t in zip(mp, th, strict=True)), 3),
            "mediaproxy_p99_ms": statistics.median(x["p99_ms"] for x in sides["mediaproxy"]),
            "thumbor_p99_ms": statistics.median(x["p99_ms"] for x in sides["thumbor"]),
        }
    load = {"loadavg_1m_at_start": load_start, "loadavg_1m_at_end": round(loadavg(), 2)}
    md = ["# Misses against thumbor (bench/thumbor.py)\n",
          f"mediaproxy {args.workers} workers (result cache off) vs thumbor {args.workers} processes (PIL engine, "
          f"file loader, no storage); local files; wrk -t1, {args.duration} s per run, {args.rounds} rounds "
          f"alternating servers, medians. Load {load} (a shared 2-core machine: absolute rates are low and "
          "noisy, the ratios are measured side by side).\n",
          "| case | connections | mediaproxy req/s | thumbor req/s | ratio (median of rounds) "
          "| p99 ms mediaproxy / thumbor |",
          "|---|---:|---:|---:|---:|---|"]
    for key, t in table.items():
        c, n = key.split()
        md.append(f"| {c} | {n[1:]} | {t['mediaproxy_rps']:.1f} | {t['thumbor_rps']:.1f} | {t['ratio']:.3f}× | "
                  f"{t['mediaproxy_p99_ms']} / {t['thumbor_p99_ms']} |")
    md += ["", "CPU per transform in one process (getrusage, interleaved, mean of "
           f"{args.cpu_n}; VIPS_CONCURRENCY=1 as in the workers): mediaproxy, the same code with pipeline 1's "
           "settings (no linear light, DCT scale straight to the target, WebP effort 2, no sharp YUV, JPEG "
           "4:2:0), and Pillow as thumbor drives it.\n",
           "| case | mediaproxy ms | pipeline 1 settings ms | Pillow (thumbor) ms | Pillow / mediaproxy "
           "| Pillow / pipeline 1 |", "|---|---:|---:|---:|---:|---:|"]
    for c, r in cpu.items():
        ms = r["cpu_ms"]
        md.append(f"| {c} | {ms['mediaproxy']} | {ms['pipeline 1 settings']} | {ms['pillow (thumbor)']} | "
                  f"{r['pillow_over_mediaproxy']:.3f}× | {r['pillow_over_pipeline_1']:.3f}× |")
    data = {"load": load, "workers": args.workers, "duration_s": args.duration, "rounds": args.rounds,
            "table": table, "runs": runs, "cpu_per_transform": cpu}
    write_results("thumbor", data, "\n".join(md), args.out)


if __name__ == "__main__":
    main()

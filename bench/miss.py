"""Targets 2, 3 and 5: the miss workload (result cache off: every request transforms).

    .venv/bin/python bench/miss.py [--duration 10] [--no-thumbor]
    .venv/bin/python bench/miss.py --stages [--cases a,c,e,b,d] [--iterations 20] [--out DIR]
    .venv/bin/python bench/miss.py --overhead [--cases a,c] [--rounds 3] [--duration 10] [--baseline DIR] [--out DIR]
    .venv/bin/python bench/miss.py --overhead --stub [--cases c,b] [--baseline DIR] [--out DIR]

``--stages``: the transform's CPU per image, stage by stage, in-process (no server): for each case of
bench/quality.py (a 1024² JPEG → 256² WebP, b → 128² JPEG, c 512² PNG with alpha → 64² WebP,
d 2048×1536 JPEG → 800 px WebP, e 1024² JPEG → 256² AVIF; the case's first corpus image), the
probe, the decode at the shrink-on-load scale, the resampling (decode and resize, less the decode),
the encode (from the resized pixels in memory) and the whole transform, with the CPU sharp and Pillow
(as thumbor drives it) spend on the same job beside. CPU time of the process (libvips' threads
included) over ``--iterations`` runs, the least of three rounds; sharp reports its own process's CPU.
Written as pipeline-stages.json and .md with ``--out``.

``--overhead``: the miss path over HTTP (one worker, result cache off, wrk -c1 naming a distinct source
key per request: bench/peers.py's sources) against the same transform in-process, both as CPU per
request (the worker's from /proc, with its system time and minor page faults), rounds alternating:
target <= 1.10. The in-process side runs in a process set up as a worker is (gunicorn.conf.py's
libvips threads, allocator settings, frozen GC and per-request trim) and measures, alternately,
``pipeline.transform`` on the source's bytes and the whole WSGI application answering the same
requests (routing, storage read, transform, headers), each as the mean CPU per call: HTTP ÷
application is the server's share of the overhead, application ÷ transform the application's.
``--baseline DIR`` serves another checkout's code
(the one before a change: ``git worktree add --detach DIR COMMIT``) beside this one in every round, in
alternating order. ``--stub``: both sides run with the transform answered from memory after its first
call for a source (bench/memoised_transform.py), so the figures are what a miss costs besides the
transform — over HTTP, in process, and the server's share between them. Written as miss-overhead.json
and .md (miss-overhead-stub with ``--stub``) with ``--out``.

Workloads: A = 1024px JPEG -> 256px WebP avatar, B = 2048px JPEG -> 800px-wide
WebP banner, both at WebP quality 80 (thumbor's default) from local disk.

2. end-to-end (wrk -t1 -c1 mean latency, one worker) / the bare in-process
   pyvips pipeline doing the same work (thumbnail_buffer + webpsave_buffer on
   bytes already in memory): target <= 1.25.
3. req/s with 2 workers / 1 worker (wrk -t2 -c8, Connection: close): target >= 1.7. Measured
   with 1 thread per worker (each worker one core: pure process scaling) and
   with the default 4 threads.
5. one mediaproxy worker / thumbor (installed from PyPI into bench/.venv-thumbor
   by this script, file loader, no storage or result storage, one process),
   wrk -t1 -c1 on each workload: target >= 1.2.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VIPS_CONCURRENCY", "1")  # as the server's workers (gunicorn.conf.py)

import pyvips
from common import (
    BENCH,
    ROOT,
    VENV_BIN,
    Server,
    add_out_argument,
    free_port,
    jpeg,
    loadavg,
    wait_port,
    wait_quiet,
    write_results,
    wrk,
)

from mediaproxy.media import jpeg as turbo

USER, GUILD = "80351110224678912", "41771983423143937"
H = "8342729096ea3675442027381ff50dfe"
PATHS = {
    "A": f"/avatars/{USER}/{H}.webp?size=256&quality=80",
    "B": f"/banners/{GUILD}/{H}.webp?width=800&quality=80",
}
THUMBOR_PATHS = {
    "A": "/unsafe/256x256/filters:format(webp):quality(80)/a.jpg",
    "B": "/unsafe/800x0/filters:format(webp):quality(80)/b.jpg",
}
THUMBOR_CONF = """
LOADER = 'thumbor.loaders.file_loader'
FILE_LOADER_ROOT_PATH = {root!r}
STORAGE = 'thumbor.storages.no_storage'
RESULT_STORAGE = None
ALLOW_UNSAFE_URL = True
QUALITY = 80
AUTO_WEBP = False
ENGINE = 'thumbor.engines.pil'
"""


def bare_pipeline(data: bytes, kind: str, seconds: float = 5.0, decoder: str = "turbo") -> dict:
    """The same work in-process, straight calls on bytes in memory: JPEG decoded at the DCT scale
    that covers the target, resized, WebP effort 2 (what mediaproxy's pipeline does).
    ``decoder``: "turbo" decodes with libjpeg-turbo (media/jpeg.py, as the server does), "vips"
    with libvips' own JPEG loader; "naive" is the textbook pyvips thumbnail_buffer + WebP effort 4."""
    pyvips.cache_set_max(0)
    shrink = 4 if kind == "A" else 2  # A: 1024 -> 256 decodes at exactly 256; B: 2048 -> 1024, then resized

    def once() -> bytes:
        if decoder == "naive":
            if kind == "A":
                im = pyvips.Image.thumbnail_buffer(data, 256, height=256, crop="centre")
            else:
                im = pyvips.Image.thumbnail_buffer(data, 800)
            return im.webpsave_buffer(Q=80, effort=4, keep="none")
        if decoder == "turbo":
            im = turbo.decode(data, shrink, 1)
        else:
            im = pyvips.Image.new_from_buffer(data, "", shrink=shrink, access="sequential")
        if kind == "B":
            im = im.thumbnail_image(800)
        return im.webpsave_buffer(Q=80, effort=2, keep="none")

    for _ in range(5):
        once()
    times = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        once()
        times.append((time.perf_counter() - t) * 1000)
    return {"mean_ms": round(statistics.fmean(times), 3), "median_ms": round(statistics.median(times), 3),
            "n": len(times)}


def _cpu_ms(fn, iterations: int) -> float:
    """CPU per call in ms (process time, libvips' threads included): the least of three rounds."""
    fn()
    best = float("inf")
    for _ in range(3):
        t = time.process_time()
        for _ in range(iterations):
            fn()
        best = min(best, (time.process_time() - t) / iterations * 1000)
    return round(best, 2)


def stages(case_names: list[str], iterations: int) -> dict:
    """CPU per image of each step of pipeline.transform, and of sharp and Pillow on the same job."""
    import shutil
    from fractions import Fraction

    import quality as qb

    from mediaproxy.media import pipeline

    pyvips.cache_set_max(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench-stages-"))
    sharp = qb.Sharp(tmp)
    out: dict = {"settings": {k: getattr(pipeline, k) for k in (
        "PIPELINE_VERSION", "DCT_MARGIN", "LINEAR_MAX_PIXELS", "WEBP_EFFORT", "WEBP_SHARP_YUV_PIXELS",
        "AVIF_EFFORT_SMALL", "AVIF_SUBSAMPLE")}, "sharp": sharp.version, "cases": {}}
    try:
        for name in case_names:
            case = qb.CASES[name]
            src_name, buf = qb.sources(case, 2)[0 if case.kind == "photo" else 1]
            spec = qb.mediaproxy_spec(case, None)
            p = pipeline.probe(buf)
            fmt = pipeline.output_format(spec, p)
            pl = pipeline.plan(spec, p.width, p.height)
            scale = pipeline._dct_scale(p, pl, fmt)

            def load(buf=buf, p=p, scale=scale) -> pyvips.Image:
                if p.format == "jpeg":
                    return turbo.decode(buf, scale, p.orientation).copy_memory()
                return pyvips.Image.new_from_buffer(buf, "").copy_memory()

            def resized(buf=buf, spec=spec, p=p, pl=pl, fmt=fmt) -> pyvips.Image:
                return pipeline._decode(buf, spec, p, pl, fmt, False).copy_memory()

            small = pipeline._to_srgb(resized())
            if (small.width, small.height) != (pl.out_w, pl.out_h):
                small = small.crop((small.width - pl.out_w) // 2, (small.height - pl.out_h) // 2, pl.out_w, pl.out_h)
            small = small.copy_memory()
            n = max(2, iterations // 10) if case.fmt == "avif" else iterations
            row = {
                "source": src_name, "decoded": f"{load().width}x{load().height} (scale 1/{Fraction(scale)})",
                "probe": _cpu_ms(lambda buf=buf: pipeline.probe(buf), n),
                "decode": _cpu_ms(load, n),
                "decode_and_resample": _cpu_ms(resized, n),
                "encode": _cpu_ms(lambda small=small, spec=spec, fmt=fmt: pipeline._encode(small, fmt, spec, False), n),
                "transform": _cpu_ms(lambda buf=buf, case=case: qb.mediaproxy(buf, case, None), n),
            }
            row["resample"] = round(row["decode_and_resample"] - row["decode"], 2)
            row["pillow"] = _cpu_ms(lambda buf=buf, case=case: qb.pillow_thumbor(buf, case, None), n)

            def sharp_once(buf=buf, case=case) -> float:
                sharp(buf, case, None)
                return sharp.last_cpu_ms

            sharp_once()
            row["sharp"] = round(min(statistics.fmean(sharp_once() for _ in range(n)) for _ in range(3)), 2)
            row["transform_over_sharp"] = round(row["transform"] / row["sharp"], 3)
            row["transform_over_pillow"] = round(row["transform"] / row["pillow"], 3)
            out["cases"][name] = {"title": case.title, **row}
            print(f"{name}: {row}", flush=True)
    finally:
        sharp.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def overhead(case_names: list[str], rounds: int, duration: int, baseline: Path | None = None,
             stub: bool = False) -> dict:
    """The miss path's CPU over HTTP against the same transform in-process: one worker as shipped (result
    cache off), wrk -c1 naming a distinct source key per request (bench/peers.py's sources, links and
    Lua script), the worker's CPU per request from /proc, with its minor page faults and system time;
    then, in a process set up as a worker, pipeline.transform on the same bytes and spec and the WSGI
    application on the same requests, the mean CPU per call of each. Rounds alternate the two; medians
    of the per-round ratios. ``baseline``: another checkout (the code before
    a change) served the same way in every round, its order alternating with this one's."""
    import peers
    import quality as qb

    from mediaproxy.media import pipeline

    pyvips.cache_set_max(0)
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    storage = work / "storage"
    src = peers.sources()
    peers.link_sources(src, work, storage)
    out: dict = {"load": wait_quiet(), "pipeline": pipeline.PIPELINE_VERSION, "cases": {},
                 "baseline": str(baseline) if baseline else None, "stub": stub}
    for name in case_names:
        case, qcase = peers.CASES[name], qb.CASES[name]
        spec = qb.mediaproxy_spec(qcase, None)
        n = 2000 if stub else 4 if qcase.fmt == "avif" else 30
        rows = []
        for r in range(rounds):
            row: dict = {}
            sides = [("", ROOT)] + ([("baseline_", baseline)] if baseline else [])
            for prefix, root in sides if r % 2 == 0 else sides[::-1]:
                http = _http_miss(name, case, root, work / f"{name}-{r}-{prefix}", storage, duration,
                                  offset=r * 97 + 1000 + (peers.KEYS // 8 if prefix else 0), stub=stub)
                row.update({prefix + k: v for k, v in http.items()})
                if stub:  # the application in process, for each checkout
                    inproc = _inprocess_miss(case, spec, storage, work / f"{name}-{r}-inprocess{prefix}", n,
                                             root=root, stub=True)
                    row[prefix + "app_cpu_ms"] = inproc["app_cpu_ms"]
                    row[prefix + "server_ms"] = round(row[prefix + "http_cpu_ms"] - inproc["app_cpu_ms"], 3)
            if not stub:
                inproc = _inprocess_miss(case, spec, storage, work / f"{name}-{r}-inprocess", n)
                row.update(inproc)
                for prefix, _ in sides:
                    row[prefix + "ratio"] = round(row[prefix + "http_cpu_ms"] / inproc["inprocess_cpu_ms"], 3)
                    row[prefix + "http_over_app"] = round(row[prefix + "http_cpu_ms"] / inproc["app_cpu_ms"], 3)
                row["app_over_transform"] = round(inproc["app_cpu_ms"] / inproc["inprocess_cpu_ms"], 3)
            rows.append(row)
            print(f"{name} round {r}: {row}", flush=True)
        med = {k: statistics.median(x[k] for x in rows) for k in rows[0]}
        out["cases"][name] = {"title": case.title, "rounds": rows, **med}
    out["load"]["loadavg_1m_at_end"] = round(loadavg(), 2)
    return out


def _http_miss(name: str, case, root: Path, workdir: Path, storage: Path, duration: int, offset: int,
               stub: bool = False) -> dict:
    """One worker of ``root``'s code (result cache off) under wrk -c1: CPU, system time and minor page
    faults per request, of the worker and its master (from /proc). ``stub``: the transform answered
    from memory (bench/memoised_transform.py)."""
    import peers

    env = {"MEDIAPROXY_CACHE_DIR": "", "MEDIAPROXY_WORKERS": "1", "MEDIAPROXY_STORAGE": str(storage)}
    if stub:
        env["PYTHONPATH"] = f"{root}{os.pathsep}{BENCH}"
    srv = Server(workdir, env=env, root=root, app="memoised_transform:app" if stub else "mediaproxy.wsgi:app")
    side = peers.Side("mediaproxy", [srv], [srv.port], [srv.proc.pid])
    try:
        peers.run_wrk(side, case, 1, 1, workdir, offset + peers.KEYS // 4)  # warm-up, other keys
        pids = [srv.proc.pid, *srv.worker_pids()]
        before, cpu0 = [_proc_stat(p) for p in pids], side.cpu()
        got = peers.run_wrk(side, case, 1, duration, workdir, offset)
        after, cpu = [_proc_stat(p) for p in pids], side.cpu() - cpu0
    finally:
        srv.stop()
    n = got["requests"] or 1
    faults, stime = (sum(a[i] - b[i] for a, b in zip(after, before, strict=True)) for i in (0, 1))
    return {"http_cpu_ms": round(cpu / n * 1000, 2), "http_sys_ms": round(stime / n * 1000, 2),
            "http_faults": round(faults / n, 1), "requests": got["requests"]}


# A process set up as a gunicorn worker is (gunicorn.conf.py run as a module: VIPS_CONCURRENCY, the
# mallopt calls of post_fork, the frozen GC of post_worker_init, post_request's malloc_trim after each
# request), then the application mediaproxy.wsgi
# builds; it measures pipeline.transform on the source's bytes and the application answering the
# benchmark's requests (distinct source keys), alternately, the mean CPU per call of each.
_WORKER_INPROC = r"""
import importlib.util, json, logging, os, sys, time
root, path_fmt, source, spec_json, n, offset, keys, stub = sys.argv[1:9]
spec = importlib.util.spec_from_file_location("worker_conf", os.path.join(root, "gunicorn.conf.py"))
conf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conf)
conf._mallopt(logging.getLogger("bench"))
from falcon import testing
from mediaproxy.media import pipeline
from mediaproxy.media.spec import TransformSpec
if stub == "1":
    import memoised_transform  # noqa: F401 - the transform answered from memory after its first call
from mediaproxy.wsgi import app, settings
conf.post_worker_init(None)
data = open(source, "rb").read()
tspec = TransformSpec(**json.loads(spec_json))
limits = pipeline.Limits(settings.max_pixels, settings.max_frames, settings.max_animation_pixels)
count = [int(offset)]
def answer():
    count[0] += 1
    path, _, query = (path_fmt % (count[0] % int(keys))).partition("?")
    got = []
    answered = app(testing.create_environ(path=path, query_string=query), lambda s, h, e=None: got.append(s))
    try:
        body = b"".join(answered)
    finally:
        getattr(answered, "close", lambda: None)()
    assert got[0].startswith("200") and body, got
    conf.post_request(None, None, None, None)  # the worker's hook after each request (its malloc_trim)
def transform():
    pipeline.transform(data, tspec, limits)
def cpu(fn, k):
    t = time.process_time()
    for _ in range(k):
        fn()
    return time.process_time() - t
answer(); transform()
k, spent = int(n), {"app": 0.0, "transform": 0.0}
for half in range(4):
    for name, fn in (("app", answer), ("transform", transform))[:: 1 if half % 2 == 0 else -1]:
        spent[name] += cpu(fn, k)
print(json.dumps({"inprocess_cpu_ms": round(spent["transform"] / (4 * k) * 1000, 2),
                  "app_cpu_ms": round(spent["app"] / (4 * k) * 1000, 2)}))
"""


def _inprocess_miss(case, spec, storage: Path, workdir: Path, n: int, root: Path = ROOT,
                    stub: bool = False) -> dict:
    """The same transform and the same requests in a process set up as a worker (``_WORKER_INPROC``),
    running ``root``'s code; ``stub``: with the transform answered from memory."""
    import dataclasses
    import json

    import peers

    workdir.mkdir(parents=True, exist_ok=True)
    env = Server.environment(workdir, {"MEDIAPROXY_CACHE_DIR": "", "MEDIAPROXY_WORKERS": "1",
                                       "MEDIAPROXY_STORAGE": str(storage)}, root)
    if stub:
        env["PYTHONPATH"] = f"{root}{os.pathsep}{BENCH}"
    source = next((storage / "cdn" / peers.STORED[case.source]).iterdir())
    got = subprocess.run([str(VENV_BIN / "python"), "-c", _WORKER_INPROC, str(root), case.paths["mediaproxy"],
                          str(source), json.dumps(dataclasses.asdict(spec)), str(n), str(peers.KEYS // 2),
                          str(peers.KEYS), "1" if stub else "0"],
                         cwd=root, env=env, capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(got.stdout.strip().splitlines()[-1])


def _proc_stat(pid: int) -> tuple[int, float]:
    """(minor page faults, system seconds) of one process, every thread."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7]), int(fields[12]) / os.sysconf("SC_CLK_TCK")


def overhead_markdown(r: dict) -> str:
    if r.get("stub"):
        return stub_markdown(r)
    md = ["# The miss path over HTTP against the same transform in-process (bench/miss.py --overhead)\n",
          f"Pipeline {r['pipeline']}; one worker (gunicorn.conf.py, result cache off), wrk -c1, a distinct source "
          f"key per request; CPU per request (the worker's, from /proc) against, in a process set up as a worker, "
          f"pipeline.transform's CPU per call on the same bytes and the WSGI application's per request; medians "
          f"of the per-round values and ratios. Load {r['load']}.\n",
          "| case | code | HTTP CPU ms/req | of it system ms | minor faults/req | transform in-process ms "
          "| application in-process ms | HTTP ÷ transform (target ≤ 1.10) | HTTP ÷ application "
          "| application ÷ transform |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in r["cases"].values():
        for prefix, label in (("", "this checkout"), ("baseline_", r.get("baseline") or "")):
            if prefix + "ratio" in c:
                got = {k: c[prefix + k] for k in ("http_cpu_ms", "http_sys_ms", "http_faults", "ratio",
                                                  "http_over_app")}
                md.append(f"| {c['title']} | {label} | {got['http_cpu_ms']:.2f} | {got['http_sys_ms']:.2f} "
                          f"| {got['http_faults']:.0f} | {c['inprocess_cpu_ms']:.2f} | {c['app_cpu_ms']:.2f} "
                          f"| {got['ratio']:.3f} | {got['http_over_app']:.3f} | {c['app_over_transform']:.3f} |")
    return "\n".join(md)


def stub_markdown(r: dict) -> str:
    md = ["# What a miss costs besides the transform (bench/miss.py --overhead --stub)\n",
          f"Pipeline {r['pipeline']}; the transform answered from memory after its first call for a source "
          f"(bench/memoised_transform.py), everything else as shipped: one worker (gunicorn.conf.py, result cache "
          f"off), wrk -c1, a distinct source key per request, the worker's and master's CPU per request from "
          f"/proc; in process, the WSGI application answering the same requests in a process set up as a worker. "
          f"Medians of the per-round values. Load {r['load']}.\n",
          "| case | code | HTTP CPU ms/req | of it system ms | application in-process ms | the server's share ms "
          "(HTTP − application) |", "|---|---|---:|---:|---:|---:|"]
    for c in r["cases"].values():
        for prefix, label in (("", "this checkout"), ("baseline_", r.get("baseline") or "")):
            if prefix + "server_ms" in c:
                md.append(f"| {c['title']} | {label} | {c[prefix + 'http_cpu_ms']:.3f} | "
                          f"{c[prefix + 'http_sys_ms']:.3f} | {c[prefix + 'app_cpu_ms']:.3f} | "
                          f"{c[prefix + 'server_ms']:.3f} |")
    return "\n".join(md)


def stages_markdown(r: dict) -> str:
    md = ["# The transform's CPU per image, stage by stage (bench/miss.py --stages)\n",
          f"Settings: {r['settings']}; sharp {r['sharp']}. In-process, CPU time per image in ms (the least of "
          "three rounds).\n",
          "| case | decoded at | probe | decode | resample | encode | transform | Pillow | sharp "
          "| transform ÷ Pillow | ÷ sharp |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in r["cases"].values():
        md.append(f"| {c['title']} | {c['decoded']} | {c['probe']} | {c['decode']} | {c['resample']} | "
                  f"{c['encode']} | **{c['transform']}** | {c['pillow']} | {c['sharp']} | "
                  f"{c['transform_over_pillow']:.2f}× | {c['transform_over_sharp']:.2f}× |")
    return "\n".join(md)


def thumbor_python() -> Path:
    venv = BENCH / ".venv-thumbor"
    py = venv / "bin" / "python"
    if not (venv / "bin" / "thumbor").exists():
        print("installing thumbor into bench/.venv-thumbor", flush=True)
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "thumbor"], check=True)
    return venv / "bin" / "thumbor"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--no-thumbor", action="store_true")
    ap.add_argument("--stages", action="store_true", help="the transform's CPU stage by stage, in-process")
    ap.add_argument("--cases", default="a,c,e,b,d", help="with --stages: bench/quality.py's cases")
    ap.add_argument("--iterations", type=int, default=20, help="with --stages: runs per round")
    ap.add_argument("--overhead", action="store_true",
                    help="the miss path's CPU over HTTP against the same transform in-process (--cases a,b,c,d,e)")
    ap.add_argument("--rounds", type=int, default=3, help="with --overhead")
    ap.add_argument("--baseline", type=Path, help="with --overhead: another checkout (the code before a change) "
                    "served the same way in every round, beside this one")
    ap.add_argument("--stub", action="store_true", help="with --overhead: the transform answered from memory "
                    "after its first call (what a miss costs besides it)")
    add_out_argument(ap)
    args = ap.parse_args()
    if args.overhead:
        r = overhead(args.cases.split(","), args.rounds, args.duration, args.baseline, args.stub)
        write_results("miss-overhead-stub" if args.stub else "miss-overhead", r, overhead_markdown(r), args.out)
        return
    if args.stages:
        r = stages(args.cases.split(","), args.iterations)
        write_results("pipeline-stages", r, stages_markdown(r), args.out)
        return
    d = args.duration
    work = Path(tempfile.mkdtemp(prefix="bench-miss-"))
    a, b = jpeg(1024, 1024, seed=2), jpeg(2048, 1365, seed=3)
    images = work / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(a)
    (images / "b.jpg").write_bytes(b)
    load = wait_quiet()
    out: dict = {"load": load, "source_bytes": {"A": len(a), "B": len(b)}}

    # 2: end-to-end vs the bare pipeline
    bare = {k: bare_pipeline(v, k) for k, v in (("A", a), ("B", b))}
    out["vips_loader"] = {k: bare_pipeline(v, k, decoder="vips") for k, v in (("A", a), ("B", b))}
    out["naive_pyvips"] = {k: bare_pipeline(v, k, decoder="naive") for k, v in (("A", a), ("B", b))}
    nocache = {"MEDIAPROXY_CACHE_DIR": "", "MEDIAPROXY_WORKERS": "1"}
    one: dict = {}
    with Server(work / "one", env=nocache) as srv:
        srv.put(f"avatars/{USER}/{H}", a)
        srv.put(f"banners/{GUILD}/{H}", b)
        for k, p in PATHS.items():
            wrk(srv.url(p), threads=1, connections=1, duration=2)
            one[k] = wrk(srv.url(p), threads=1, connections=1, duration=d)
    out["bare_pipeline"] = bare
    out["mediaproxy_1worker_c1"] = one
    out["e2e_over_bare"] = {k: round(one[k]["mean_ms"] / bare[k]["mean_ms"], 3) for k in PATHS}

    # 3: worker scaling on misses
    scaling: dict = {}
    for threads in ("1", "4"):
        for workers in ("1", "2"):
            env = {"MEDIAPROXY_CACHE_DIR": "", "MEDIAPROXY_WORKERS": workers, "MEDIAPROXY_THREADS": threads}
            with Server(work / f"w{workers}t{threads}", env=env) as srv:
                srv.put(f"avatars/{USER}/{H}", a)
                # New connection per request: with a handful of keep-alive connections the kernel may hand
                # most of them to one worker, which measures the accept lottery, not the workers.
                close = ("Connection: close",)
                wrk(srv.url(PATHS["A"]), threads=2, connections=8, duration=2, headers=close)
                scaling[f"{workers}w x {threads}t"] = wrk(srv.url(PATHS["A"]), threads=2, connections=8, duration=d,
                                                          headers=close)
    out["scaling"] = scaling
    out["scaling_ratio"] = {
        t: round(scaling[f"2w x {t}t"]["rps"] / scaling[f"1w x {t}t"]["rps"], 3) for t in ("1", "4")
    }

    # 5: against thumbor
    if not args.no_thumbor:
        exe = thumbor_python()
        conf = work / "thumbor.conf"
        conf.write_text(THUMBOR_CONF.format(root=str(images)))
        port = free_port()
        proc = subprocess.Popen([str(exe), "-p", str(port), "-c", str(conf), "-l", "warning"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0)
        thumbor: dict = {}
        try:
            wait_port(port, path="/healthcheck")
            for k, p in THUMBOR_PATHS.items():
                wrk(f"http://127.0.0.1:{port}{p}", threads=1, connections=1, duration=2)
                thumbor[k] = wrk(f"http://127.0.0.1:{port}{p}", threads=1, connections=1, duration=d)
        finally:
            proc.terminate()
            proc.wait(10)
        out["thumbor_c1"] = thumbor
        out["mediaproxy_over_thumbor"] = {k: round(one[k]["rps"] / thumbor[k]["rps"], 3) for k in PATHS}
    load["loadavg_1m_at_end"] = round(loadavg(), 2)

    md = ["# Misses (result cache off)\n",
          f"A = 1024px JPEG -> 256px WebP q80; B = 2048x1365 JPEG -> 800px-wide WebP q80. load {load}\n",
          "## Target 2: end-to-end vs bare in-process pyvips (<= 1.25)\n",
          "| workload | bare pipeline mean ms | mediaproxy wrk -c1 mean ms | ratio | same with libvips' JPEG loader ms "
          "| naive pyvips mean ms |",
          "|---|---:|---:|---:|---:|---:|"]
    for k in PATHS:
        md.append(f"| {k} | {bare[k]['mean_ms']:.2f} | {one[k]['mean_ms']:.2f} | {out['e2e_over_bare'][k]:.3f} | "
                  f"{out['vips_loader'][k]['mean_ms']:.2f} | {out['naive_pyvips'][k]['mean_ms']:.2f} |")
    md += ["", "## Target 3: 2 workers vs 1 worker, workload A, wrk -t2 -c8, Connection: close (>= 1.7)\n",
           "| config | req/s | mean ms | p99 ms |", "|---|---:|---:|---:|"]
    for name, r in scaling.items():
        md.append(f"| {name} | {r['rps']:.1f} | {r['mean_ms']:.1f} | {r['p99_ms']} |")
    md += [f"\nratio 2w/1w: 1 thread per worker {out['scaling_ratio']['1']:.3f}; "
           f"4 threads per worker {out['scaling_ratio']['4']:.3f}"]
    if "thumbor_c1" in out:
        md += ["", "## Target 5: one worker vs thumbor, wrk -t1 -c1 (>= 1.2)\n",
               "| workload | mediaproxy req/s | thumbor req/s | ratio |", "|---|---:|---:|---:|"]
        for k in PATHS:
            md.append(f"| {k} | {one[k]['rps']:.1f} | {out['thumbor_c1'][k]['rps']:.1f} | "
                      f"{out['mediaproxy_over_thumbor'][k]:.3f} |")
    write_results("miss", out, "\n".join(md), args.out)


if __name__ == "__main__":
    main()

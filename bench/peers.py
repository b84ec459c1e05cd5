"""Misses against the peers, side by side: mediaproxy, thumbor (PyPI) and ipx (npm, sharp underneath).

    .venv/bin/python bench/peers.py [--rounds 3] [--duration 5] [--cases a,b,c,d,e] [--peers thumbor,ipx] [--out DIR]
    .venv/bin/python bench/peers.py --smoke     # mediaproxy alone, one short round of case a: checks the harness

Every server reads the same source files from local disk, result cache off,
and every request names a source key of its own (wrk's Lua script counts
through hard links of one file), so nothing is served twice from anyone's
cache:

  a  1024² JPEG  -> 256² WebP    (avatar)
  b  1024² JPEG  -> 128² JPEG    (small avatar)
  c  512² PNG with alpha -> 64² WebP   (icon, emoji)
  d  2048×1536 JPEG -> 800 WebP  (banner)
  e  1024² JPEG  -> 256² AVIF

at each one's default quality (80 for WebP and JPEG on all three; AVIF:
mediaproxy's default, thumbor's QUALITY 80, sharp's 50). The servers, each
started afresh in every round:

* mediaproxy: gunicorn.conf.py as it ships (``--workers`` workers), result cache off;
* thumbor: two processes on two ports (PIL engine, file loader, no storage), the
  load split evenly by running one wrk per port (``--processes 2`` behind one port
  put over 90% of the work on one child); at one connection one process serves;
* ipx: one node process (``createIPXNodeServer`` on ``ipxFSStorage``, as its CLI
  serves a directory, without the dev server): sharp uses both cores by itself.

Rounds interleave the servers (rotated order) case by case, at one connection
and four (wrk -t1, 1 s warm-up, ``--duration`` s). Besides req/s, the CPU time
of each server's processes (utime + stime from /proc, all threads, children
included) is read before and after every run: CPU per request moves far less
than req/s when other jobs share the machine. The table gives medians over the
rounds, and mediaproxy ÷ the best peer (the median of the per-round ratios).

The peers are installed by this script when missing, never into the project's
venv: thumbor into bench/.venv-thumbor (python3 -m venv + pip), ipx into
bench/.ipx (npm). ``BENCH_PORTS=8400-8499`` keeps the servers' ports in that
range; everything listens on 127.0.0.1. Results are written only with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyvips
from common import (
    BENCH,
    Server,
    add_out_argument,
    free_port,
    jpeg,
    loadavg,
    need,
    photo,
    stop_group,
    tree_cpu,
    wait_port,
    write_results,
)

USER, GUILD = "80351110224678912", "41771983423143937"
IPX_VERSION = "3.1.1"
KEYS = 4096  # distinct source keys per case; a run of a few thousand requests names each once
CONNECTIONS = (1, 4)
# AVIF takes ~10x a WebP's time: a run of the base duration would see a handful of responses
DURATION_FACTOR = {"e": 3}


class Case:
    def __init__(self, name: str, title: str, source: str, mediaproxy: str, thumbor: str, ipx: str):
        self.name, self.title, self.source = name, title, source
        self.paths = {"mediaproxy": mediaproxy, "thumbor": thumbor, "ipx": ipx}


# %032x is the source key: the request's counter, as a 32-hex-digit name (the avatar hash's form)
CASES = {c.name: c for c in (
    Case("a", "1024² JPEG → 256² WebP", "a", f"/avatars/{USER}/%032x.webp?size=256",
         "/unsafe/256x256/filters:format(webp):quality(80)/a/%032x.jpg", "/s_256x256,f_webp,q_80/a/%032x.jpg"),
    Case("b", "1024² JPEG → 128² JPEG", "a", f"/avatars/{USER}/%032x.jpeg?size=128",
         "/unsafe/128x128/filters:format(jpeg):quality(80)/a/%032x.jpg", "/s_128x128,f_jpeg,q_80/a/%032x.jpg"),
    Case("c", "512² PNG with alpha → 64² WebP", "c", f"/icons/{GUILD}/%032x.webp?size=64",
         "/unsafe/64x64/filters:format(webp):quality(80)/c/%032x.png", "/s_64x64,f_webp,q_80/c/%032x.png"),
    Case("d", "2048×1536 JPEG → 800 WebP", "d", f"/banners/{GUILD}/%032x.webp?width=800",
         "/unsafe/800x0/filters:format(webp):quality(80)/d/%032x.jpg", "/w_800,f_webp,q_80/d/%032x.jpg"),
    Case("e", "1024² JPEG → 256² AVIF", "a", f"/avatars/{USER}/%032x.avif?size=256",
         "/unsafe/256x256/filters:format(avif)/a/%032x.jpg", "/s_256x256,f_avif/a/%032x.jpg"),
)}
STORED = {"a": f"avatars/{USER}", "c": f"icons/{GUILD}", "d": f"banners/{GUILD}"}  # mediaproxy's keys
EXT = {"a": "jpg", "c": "png", "d": "jpg"}

LUA = """
local i = {offset}
request = function()
  i = i + 1
  return wrk.format(nil, string.format("{fmt}", i % {keys}))
end
"""

IPX_SERVER = """
import { createServer } from "node:http";
import { createIPX, createIPXNodeServer, ipxFSStorage } from "ipx";
const ipx = createIPX({ storage: ipxFSStorage({ dir: process.argv[2] }) });
createServer(createIPXNodeServer(ipx)).listen(Number(process.argv[3]), "127.0.0.1");
"""


def sources(synthetic: bool = False) -> dict[str, bytes]:
    """The photo (scikit-image's astronaut, JPEG q90, as bench/quality.py makes it) at 1024² and
    2048×1536, and bench/quality.py's 512² graphic with alpha as a PNG. ``synthetic`` (the smoke
    mode, without the bench extras): common.photo's pattern instead, with an alpha ramp."""
    if synthetic:
        im = photo(512, 512)
        alpha = (255 - pyvips.Image.xyz(512, 512)[0] / 2).cast("uchar")  # a left-to-right ramp
        return {"a": jpeg(1024, 1024), "c": im.bandjoin(alpha).copy(interpretation="srgb").pngsave_buffer(),
                "d": jpeg(2048, 1536)}
    import quality

    return {"a": quality.photo_sources(quality.CASES["a"], 1)[0][1],
            "c": quality.alpha_sources(quality.CASES["c"], 1)[0][1],
            "d": quality.photo_sources(quality.CASES["d"], 1)[0][1]}


def link_sources(src: dict[str, bytes], work: Path, storage: Path) -> Path:
    """KEYS hard links of each source under the peers' image root and mediaproxy's storage."""
    images = work / "images"
    for name, data in src.items():
        base = work / f"source-{name}.{EXT[name]}"
        base.write_bytes(data)
        (images / name).mkdir(parents=True)
        stored = storage / "cdn" / STORED[name]
        stored.mkdir(parents=True, exist_ok=True)
        for i in range(KEYS):
            os.link(base, images / name / f"{i:032x}.{EXT[name]}")
            os.link(base, stored / f"{i:032x}")
    return images


class Proc:
    """A server process of the benchmark's own (started in this session, killed as a group)."""

    def __init__(self, cmd: list[str], port: int, health: str, env: dict | None = None, log: Path | None = None):
        self.port = port
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, process_group=0)
        wait_port(port, path=health)

    def stop(self) -> None:
        stop_group(self.proc)


def ipx_dir() -> Path:
    target = BENCH / ".ipx"
    if not (target / "node_modules" / "ipx" / "package.json").exists():
        npm = need("npm", "npm")
        print(f"installing ipx@{IPX_VERSION} from npm into {target}", flush=True)
        subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(target),
                        f"ipx@{IPX_VERSION}"], check=True, stdout=subprocess.DEVNULL)
    (target / "serve.mjs").write_text(IPX_SERVER)
    return target


class Side:
    """One server under test: its ports (one wrk per port, connections split evenly) and its processes."""

    def __init__(self, name: str, procs: list, ports: list[int], pids: list[int]):
        self.name, self.procs, self.ports, self.pids = name, procs, ports, pids

    def cpu(self) -> float:
        return sum(tree_cpu(p) for p in self.pids)

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


def start(name: str, work: Path, images: Path, storage: Path, workers: int) -> Side:
    if name == "mediaproxy":
        srv = Server(work / "mp", env={"MEDIAPROXY_CACHE_DIR": "", "MEDIAPROXY_WORKERS": str(workers),
                                       "MEDIAPROXY_STORAGE": str(storage)})
        return Side(name, [srv], [srv.port], [srv.proc.pid])
    if name == "thumbor":
        from miss import THUMBOR_CONF, thumbor_python

        exe = thumbor_python()
        conf = work / "thumbor.conf"
        conf.write_text(THUMBOR_CONF.format(root=str(images)))
        procs = []
        for _ in range(2):
            port = free_port()
            procs.append(Proc([str(exe), "-i", "127.0.0.1", "-p", str(port), "-c", str(conf), "-l", "warning"],
                              port, "/healthcheck"))
        return Side(name, procs, [p.port for p in procs], [p.proc.pid for p in procs])
    if name == "ipx":
        d = ipx_dir()
        port = free_port()
        env = {**os.environ, "NODE_ENV": "production"}
        p = Proc([need("node", "nodejs"), str(d / "serve.mjs"), str(images), str(port)], port,
                 "/s_8x8/a/" + "0" * 32 + ".jpg", env=env)
        return Side(name, [p], [port], [p.proc.pid])
    raise ValueError(name)


def _wrk_out(out: str) -> dict:
    def ms(text: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s)", text)
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1000.0}[m.group(2)]

    done = re.search(r"(\d+) requests in", out)
    p99 = re.search(r"\s99%\s+(\S+)", out)
    errors = sum(int(n) for m in re.finditer(r"(Non-2xx or 3xx responses|Socket errors):\s*(.*)", out)
                 for n in re.findall(r"\d+", m.group(2)))
    return {"requests": int(done.group(1)) if done else 0, "p99_ms": ms(p99.group(1)) if p99 else None,
            "errors": errors}


def run_wrk(side: Side, case: Case, connections: int, duration: int, work: Path, offset: int) -> dict:
    """wrk on every port of ``side`` at once, the connections split evenly (one port at one connection)."""
    exe = need("wrk", "wrk")
    ports = side.ports[:connections]
    per = [connections // len(ports) + (1 if i < connections % len(ports) else 0) for i in range(len(ports))]
    procs = []
    for i, (port, n) in enumerate(zip(ports, per, strict=True)):
        script = work / f"{side.name}-{case.name}-{i}.lua"
        fmt = case.paths[side.name].replace('"', '\\"')
        script.write_text(LUA.format(offset=offset + i * (KEYS // 2), fmt=fmt, keys=KEYS))
        procs.append(subprocess.Popen(
            [exe, "-t1", f"-c{n}", f"-d{duration}s", "--timeout", "60s", "--latency", "-s", str(script), f"http://127.0.0.1:{port}/"],
            stdout=subprocess.PIPE, text=True))
    outs = [_wrk_out(p.communicate()[0]) for p in procs]
    p99s = [o["p99_ms"] for o in outs if o["p99_ms"] is not None]
    return {"requests": sum(o["requests"] for o in outs), "errors": sum(o["errors"] for o in outs),
            "p99_ms": max(p99s) if p99s else None}


def measure(side: Side, case: Case, connections: int, duration: int, work: Path, offset: int) -> dict:
    run_wrk(side, case, connections, 1, work, offset + KEYS // 4)  # warm-up, other keys
    cpu0, t0 = side.cpu(), time.monotonic()
    got = run_wrk(side, case, connections, duration, work, offset)
    cpu, wall = side.cpu() - cpu0, time.monotonic() - t0
    n = got["requests"]
    return {"rps": round(n / duration, 2), "cpu_ms_per_request": round(cpu / n * 1000, 2) if n else None,
            "cpu_cores_busy": round(cpu / wall, 2), "p99_ms": got["p99_ms"], "errors": got["errors"],
            "requests": n}


def check_outputs(side: Side, cases: list[Case]) -> None:
    """One request per case: a 200 with an image (a peer that cannot make a format is left out of that case)."""
    import urllib.request

    for case in cases:
        url = f"http://127.0.0.1:{side.ports[0]}" + case.paths[side.name] % (KEYS - 1)
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                ok = r.status == 200 and len(r.read()) > 0
        except OSError:
            ok = False
        if not ok:
            print(f"  {side.name} cannot answer case {case.name} ({url}): left out of it", flush=True)
            side.skip = {*getattr(side, "skip", set()), case.name}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cases", default=",".join(CASES), help="a subset of a,b,c,d,e")
    ap.add_argument("--peers", default="thumbor,ipx", help="thumbor, ipx, both, or none ('')")
    ap.add_argument("--smoke", action="store_true", help="mediaproxy alone, 1 round of case a, 1 s per run")
    add_out_argument(ap)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the servers are stopped on the way out
    if args.smoke:
        args.peers, args.cases, args.rounds, args.duration = "", "a", 1, 1
    peers = [p for p in args.peers.split(",") if p]
    names = ["mediaproxy", *peers]
    cases = [CASES[c] for c in args.cases.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    load_start = round(loadavg(), 2)
    versions = {}
    try:
        storage = work / "storage"
        images = link_sources(sources(synthetic=args.smoke), work, storage)
        if "thumbor" in peers:
            from miss import thumbor_python

            exe = thumbor_python()
            versions["thumbor"] = subprocess.run(
                [str(exe.parent / "python"), "-c", "import importlib.metadata as m; print(m.version('thumbor'))"],
                capture_output=True, text=True).stdout.strip()
        if "ipx" in peers:
            modules = ipx_dir() / "node_modules"
            for package in ("ipx", "sharp"):
                versions[package] = json.loads((modules / package / "package.json").read_text())["version"]
        runs: dict = {f"{c.name} c{n}": {s: [] for s in names} for c in cases for n in CONNECTIONS}
        offset = 0
        for r in range(args.rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            sides = {}
            (work / f"r{r}").mkdir()
            try:
                for name in order:
                    sides[name] = start(name, work / f"r{r}", images, storage, args.workers)
                    check_outputs(sides[name], cases)
                for case in cases:
                    for n in CONNECTIONS:
                        for name in order:
                            side = sides[name]
                            if case.name in getattr(side, "skip", ()):
                                continue
                            res = measure(side, case, n, args.duration * DURATION_FACTOR.get(case.name, 1), work,
                                          offset)
                            offset = (offset + 2 * KEYS // 3) % KEYS
                            runs[f"{case.name} c{n}"][name].append(res)
                            print(f"  round {r + 1} {case.name} c{n} {name:10} {res['rps']:8.1f} req/s "
                                  f"{res['cpu_ms_per_request']} ms CPU/req", flush=True)
            finally:
                for side in sides.values():
                    side.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = {}
    for key, sides_runs in runs.items():
        row: dict = {}
        for name, xs in sides_runs.items():
            if xs:
                cpu = [x["cpu_ms_per_request"] for x in xs if x["cpu_ms_per_request"]]  # (no response, no figure)
                row[name] = {"rps": statistics.median(x["rps"] for x in xs),
                             "cpu_ms_per_request": statistics.median(cpu) if cpu else None,
                             "p99_ms": statistics.median(x["p99_ms"] or 0 for x in xs),
                             "errors": sum(x["errors"] for x in xs)}
        mp = sides_runs["mediaproxy"]
        ratios = []
        for i, m in enumerate(mp):
            best = max((xs[i]["rps"] for name, xs in sides_runs.items() if name != "mediaproxy" and len(xs) > i),
                       default=None)
            if best:
                ratios.append(m["rps"] / best)
        row["ratio_vs_best_peer"] = round(statistics.median(ratios), 3) if ratios else None
        cpu_peers = [row[p]["cpu_ms_per_request"] for p in peers if p in row and row[p]["cpu_ms_per_request"]]
        row["cpu_ratio_best_peer_over_mediaproxy"] = (
            round(min(cpu_peers) / row["mediaproxy"]["cpu_ms_per_request"], 3)
            if cpu_peers and row["mediaproxy"]["cpu_ms_per_request"] else None)
        table[key] = row
    load = {"loadavg_1m_at_start": load_start, "loadavg_1m_at_end": round(loadavg(), 2)}
    head = " | ".join(f"{n} req/s | {n} CPU ms/req" for n in names)
    md = ["# Misses against the peers (bench/peers.py)\n",
          f"mediaproxy {args.workers} workers (gunicorn.conf.py, result cache off)"
          + (", thumbor " + versions.get("thumbor", "") + " (2 processes on 2 ports, load split evenly)"
             if "thumbor" in peers else "")
          + (f", ipx {versions.get('ipx', '')} (sharp {versions.get('sharp', '')}, one process)"
             if "ipx" in peers else "")
          + f"; local files, a distinct source key per request; wrk -t1 per port, {args.duration} s per run "
          f"({args.duration * DURATION_FACTOR['e']} s for AVIF), "
          f"{args.rounds} interleaved rounds, medians; CPU per request from /proc (every process and thread of "
          f"each server). Load {load} (a shared 2-core machine: absolute rates are low and noisy; ratios are "
          "measured side by side).\n",
          f"| case | conns | {head} | mediaproxy ÷ best peer (req/s) | best peer ÷ mediaproxy (CPU/req) |",
          "|---|---:|" + "---:|" * (2 * len(names)) + "---:|---:|"]
    for key, row in table.items():
        c, n = key.split()
        cells = []
        for name in names:
            x = row.get(name)
            cpu = x and x["cpu_ms_per_request"]
            cells += [f"{x['rps']:.1f}", f"{cpu:.2f}" if cpu else "n/a"] if x else ["n/a", "n/a"]
        ratio = row["ratio_vs_best_peer"]
        cr = row["cpu_ratio_best_peer_over_mediaproxy"]
        md.append(f"| {c} {CASES[c].title} | {n[1:]} | {' | '.join(cells)} | "
                  f"{f'{ratio:.3f}×' if ratio else '–'} | {f'{cr:.3f}×' if cr else '–'} |")
    data = {"load": load, "workers": args.workers, "duration_s": args.duration, "rounds": args.rounds,
            "versions": versions, "table": table, "runs": runs}
    write_results("peers", data, "\n".join(md), args.out)


if __name__ == "__main__":
    sys.exit(main())

"""Shared pieces of the benchmarks: quiet-machine wait, servers, wrk, results.

Benchmarks are not tests: each script starts what it compares (mediaproxy on
gunicorn, nginx, thumbor), measures on loopback with bounded durations,
prints ratios measured in the same run, and writes <name>.json and .md only
where asked: ``--out DIR`` (``--out bench/results`` to replace the committed
figures). Run them from the repository root with the project venv.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyvips

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
VENV_BIN = Path(sys.executable).parent
USER = "80351110224678912"


def loadavg() -> float:
    return os.getloadavg()[0]


def wait_quiet(limit: float = 0.7, max_wait: float | None = None, poll: float = 30.0) -> dict:
    """Wait (bounded; BENCH_MAX_WAIT seconds, default 900) for a quiet machine; return the load we started at."""
    if max_wait is None:
        max_wait = float(os.environ.get("BENCH_MAX_WAIT", "900"))
    t0 = time.monotonic()
    while loadavg() > limit and time.monotonic() - t0 < max_wait:
        print(f"  load {loadavg():.2f} > {limit}: waiting", flush=True)
        time.sleep(poll)
    return {"loadavg_1m_at_start": round(loadavg(), 2), "waited_s": round(time.monotonic() - t0)}


def need(tool: str, package: str) -> str:
    """The path of a command-line tool, installed from apt when missing."""
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None)
    if path:
        return path
    print(f"installing {package} from apt", flush=True)
    subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", package], check=True, stdout=subprocess.DEVNULL)
    return shutil.which(tool) or f"/usr/sbin/{tool}"


_next_port = 0


def free_port() -> int:
    """A free loopback port: from BENCH_PORTS ("8400-8499") when set, each one handed out once, else any."""
    global _next_port
    span = os.environ.get("BENCH_PORTS", "")
    if span:
        lo, hi = (int(x) for x in span.split("-"))
        for port in range(max(lo, _next_port), hi + 1):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _next_port = port + 1
            return port
        raise RuntimeError(f"no free port left in BENCH_PORTS={span}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60.0, path: str = "/") -> None:
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            c.getresponse().read()
            c.close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answers on port {port}")


def photo(width: int, height: int, seed: int = 1) -> pyvips.Image:
    """Photo-like content (smooth shapes + grain): compresses like a real picture, not like a flat gradient."""
    xyz = pyvips.Image.xyz(width, height)
    x, y = xyz[0], xyz[1]
    r = ((x * (3 + seed % 5) / width * 3.1416).sin() * 100 + 128)
    g = ((y * (2 + seed % 7) / height * 3.1416).cos() * 100 + 128)
    b = (((x + y) * (1 + seed % 3) / (width + height) * 6.283).sin() * 90 + 128)
    im = r.bandjoin([g, b]) + pyvips.Image.gaussnoise(width, height, sigma=18, mean=0)
    return im.cast("uchar").copy(interpretation="srgb")


def jpeg(width: int, height: int, seed: int = 1, q: int = 90) -> bytes:
    return photo(width, height, seed).jpegsave_buffer(Q=q)


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a server started in a process group of its own: SIGTERM, then SIGKILL after 20 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


class Server:
    """mediaproxy under gunicorn with gunicorn.conf.py, over a local storage directory; ``root``: the
    checkout whose code it runs (another one's, to compare two versions in one run)."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None, name: str = "mediaproxy",
                 preload: str = "", root: Path = ROOT, app: str = "mediaproxy.wsgi:app"):
        self.port = free_port()
        self.workdir = workdir
        self.storage = workdir / "storage"
        self.storage.mkdir(parents=True, exist_ok=True)
        full = self.environment(workdir, env, root)
        if preload:
            full["LD_PRELOAD"] = preload
        self.env = full
        self.log = open(workdir / f"{name}-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "-c", str(root / "gunicorn.conf.py"), "-b", f"127.0.0.1:{self.port}",
             app],
            cwd=root, env=full, stdout=self.log, stderr=subprocess.STDOUT, process_group=0,
        )
        try:
            wait_port(self.port, timeout=180.0, path="/_health")  # a start takes over a minute at a load of 20
        except RuntimeError:
            self.stop()  # not left running after a failed start
            raise

    @staticmethod
    def environment(workdir: Path, env: dict[str, str] | None = None, root: Path = ROOT) -> dict[str, str]:
        """The environment the server's processes get: the benchmark's settings, then ``env``."""
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("MEDIAPROXY_")},
            "MEDIAPROXY_SECRET_KEY": "bench-secret",
            "MEDIAPROXY_STORAGE": str(workdir / "storage"),
            "MEDIAPROXY_CACHE_DIR": str(workdir / "cache"),
            "MEDIAPROXY_LOG_LEVEL": "warning",
            "MEDIAPROXY_ACCESS_LOG": "0",
            "MEDIAPROXY_FETCH_ALLOW_CIDRS": "127.0.0.0/8",
            # gunicorn.conf.py imports mediaproxy before gunicorn puts the working directory on the
            # path: without this a checkout other than the installed one would run the installed code
            # (and a checkout other than ROOT gets its own package, not the one the venv points at)
            "PYTHONPATH": str(root),
            **(env or {}),
        }

    def put(self, key: str, data: bytes, bucket: str = "cdn") -> None:
        path = self.storage / bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def stop(self) -> None:
        stop_group(self.proc)
        self.log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    """Resident set in KiB; ``field="RssAnon"`` counts the heap only (not mmap()ed files such as SQLite's)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def tree_cpu(pid: int) -> float:
    """CPU seconds (utime + stime, every thread) of ``pid`` and all its descendants alive now."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(d)], ticks[int(d)] = int(stat[1]), int(stat[11]) + int(stat[12])
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += ticks.get(p, 0)
        todo += [c for c, pp in parent.items() if pp == p]
    return total / os.sysconf("SC_CLK_TCK")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def wrk(url: str, threads: int = 2, connections: int = 16, duration: int = 10, script: str | None = None,
        headers: tuple[str, ...] = ()) -> dict:
    """Run wrk; requests/s, mean and p50/p99 latency in ms, errors."""
    exe = need("wrk", "wrk")
    cmd = [exe, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", script]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = re.search(r"Latency\s+(\S+)", out).group(1)
    p50 = re.search(r"\s50%\s+(\S+)", out)
    p99 = re.search(r"\s99%\s+(\S+)", out)
    errors = 0
    for m in re.finditer(r"(Non-2xx or 3xx responses|Socket errors):\s*(.*)", out):
        errors += sum(int(n) for n in re.findall(r"\d+", m.group(2)))
    return {
        "rps": round(rps, 1),
        "mean_ms": round(_ms(lat), 3),
        "p50_ms": round(_ms(p50.group(1)), 3) if p50 else None,
        "p99_ms": round(_ms(p99.group(1)), 3) if p99 else None,
        "errors": errors,
    }


class Nginx:
    """nginx from apt serving one directory, started and stopped by the benchmark."""

    def __init__(self, root: Path, access_log: bool = False):
        exe = need("nginx", "nginx-light")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        log = f"access_log {self.dir}/access.log;" if access_log else "access_log off;"
        conf = self.dir / "nginx.conf"
        temp = self.dir / "tmp"
        conf.write_text(f"""
worker_processes auto;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log;
daemon off;
events {{ worker_connections 1024; }}
http {{
  {log}
  sendfile on;
  tcp_nopush on;
  client_body_temp_path {temp}; proxy_temp_path {temp}; fastcgi_temp_path {temp};
  uwsgi_temp_path {temp}; scgi_temp_path {temp};
  types {{ image/webp webp; image/jpeg jpg; }}
  server {{ listen 127.0.0.1:{self.port}; root {root}; }}
}}
""")
        self.proc = subprocess.Popen([exe, "-c", str(conf), "-p", str(self.dir)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, process_group=0)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Nginx:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def add_out_argument(ap) -> None:
    ap.add_argument("--out", metavar="DIR", help="write <name>.json and .md into DIR (bench/results: the committed "
                    "figures); without it nothing is written")


def write_results(name: str, data: dict, markdown: str, out: str | None) -> None:
    """Print the results; write them only into ``out`` (never over the committed files by default)."""
    print(markdown)
    if not out:
        print(f"(not written: pass --out DIR to keep them; --out {RESULTS.relative_to(ROOT)} replaces the committed "
              "figures)")
        return
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cores": os.cpu_count(), **data}
    (target / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (target / f"{name}.md").write_text(markdown.rstrip() + "\n")
    print(f"wrote {target / name}.json and .md")

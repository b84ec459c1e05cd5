"""gunicorn.conf.py's hooks, called directly: the keep-alive request limit and the
throttled malloc_trim. (tests/test_worker.py covers both over real HTTP.)"""

from __future__ import annotations

import importlib.util
import itertools
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "gunicorn.conf.py"


def load(monkeypatch, **env: str):
    monkeypatch.setenv("VIPS_CONCURRENCY", os.environ.get("VIPS_CONCURRENCY", "1"))  # the file sets it
    # the file exports these two; setting them here makes monkeypatch restore them
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.setenv("_MEDIAPROXY_METRICS_MASTER", "")
    monkeypatch.setenv("MEDIAPROXY_DEMO", "1")
    # one fixed directory for every load, instead of a fresh temporary one each time
    monkeypatch.setenv("MEDIAPROXY_METRICS_DIR", str(Path(tempfile.gettempdir()) / "mediaproxy-test-conf-metrics"))
    monkeypatch.setenv("MEDIAPROXY_STORAGE", str(ROOT / "tests"))  # a directory that exists and is not empty
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    spec = importlib.util.spec_from_file_location("gunicorn_conf_under_test", CONF)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class FakeLibc:
    def __init__(self) -> None:
        self.trims = 0

    def malloc_trim(self, pad: int) -> int:
        self.trims += 1
        return 1


@pytest.mark.parametrize("limit, closes_at", [("3", 3), ("1", 1), ("1000", 1000)])
def test_keepalive_request_limit(monkeypatch, limit, closes_at):
    conf = load(monkeypatch, MEDIAPROXY_KEEPALIVE_REQUESTS=limit)
    for n in range(1, closes_at + 2):
        req = SimpleNamespace(req_number=n, must_close=False)
        conf.pre_request(None, req)
        assert req.must_close == (n >= closes_at), n


def test_keepalive_request_limit_off(monkeypatch):
    conf = load(monkeypatch, MEDIAPROXY_KEEPALIVE_REQUESTS="0")
    req = SimpleNamespace(req_number=10**6, must_close=False)
    conf.pre_request(None, req)
    assert req.must_close is False


def test_malloc_trim_at_most_once_per_interval(monkeypatch):
    conf = load(monkeypatch, MEDIAPROXY_MALLOC_TRIM_INTERVAL="1.0")
    libc = FakeLibc()
    conf._glibc = libc
    clock = [1000.0]
    monkeypatch.setattr(conf.time, "monotonic", lambda: clock[0])
    for _ in range(50):
        conf.post_request(None, None, {}, None)
    assert libc.trims == 1
    clock[0] += 0.5
    conf.post_request(None, None, {}, None)
    assert libc.trims == 1
    clock[0] += 0.6
    conf.post_request(None, None, {}, None)
    conf.post_request(None, None, {}, None)
    assert libc.trims == 2


def test_malloc_trim_off_or_without_glibc(monkeypatch):
    conf = load(monkeypatch, MEDIAPROXY_MALLOC_TRIM_INTERVAL="0")
    conf._glibc = libc = FakeLibc()
    conf.post_request(None, None, {}, None)
    assert libc.trims == 0
    conf = load(monkeypatch, MEDIAPROXY_MALLOC_TRIM_INTERVAL="1")
    conf._glibc = None  # jemalloc preloaded, or not glibc: post_fork leaves it unset
    conf.post_request(None, None, {}, None)  # nothing to call, nothing raised


def test_post_fork_finds_glibc(monkeypatch):
    conf = load(monkeypatch)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    log = SimpleNamespace(warning=lambda *a: pytest.fail(f"mallopt refused: {a}"))
    conf._mallopt(log)  # in this (test) process: the same calls a worker makes after the fork
    assert conf._glibc is not None
    assert conf._glibc.malloc_trim(0) in (0, 1)


_REUSE_PROBE = """
import importlib.util, resource, sys, types
spec = importlib.util.spec_from_file_location("conf", sys.argv[1])
conf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conf)
conf._mallopt(types.SimpleNamespace(warning=lambda *a: sys.exit(f"mallopt refused: {a}")))
size = 1536 * 1024  # a 512x512 RGBA buffer and a half: the size of a small miss's pixels
buf = bytearray(size); del buf  # the heap grows to hold it once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    buf = bytearray(size)
    buf[::4096] = bytes(len(range(0, size, 4096)))  # touch every page
    del buf
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_default_allocator_reuses_a_miss_sized_buffer(monkeypatch):
    """With the shipped thresholds a freed buffer of a small miss's size stays in the heap for the next
    request: with the mmap threshold at 1 MiB (or the trim threshold at glibc's 128 KiB) every such
    buffer was mapped and unmapped, or the heap shrunk, and each of its 384 pages faulted in again
    (7,700 faults over these 20 buffers)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIAPROXY_") and k != "LD_PRELOAD"}
    env.update(MEDIAPROXY_DEMO="1", MEDIAPROXY_STORAGE=str(ROOT / "tests"), VIPS_CONCURRENCY="1",
               MEDIAPROXY_METRICS_DIR=str(Path(tempfile.gettempdir()) / "mediaproxy-test-conf-metrics"))
    out = subprocess.run([sys.executable, "-c", _REUSE_PROBE, str(CONF)], env=env, capture_output=True,
                         text=True, check=True, cwd=ROOT)
    faults = int(out.stdout.split()[-1])
    assert faults < 384, f"{faults} page faults over 20 buffers of 384 pages"


def _worker_process(conf, limit: int, out, go) -> None:
    """One worker after the fork: post_fork, then requests until gunicorn would restart it."""
    worker = SimpleNamespace(nr=0, max_requests=limit, cfg=SimpleNamespace(max_requests=limit))
    conf.post_fork(SimpleNamespace(log=SimpleNamespace(warning=lambda *a: None)), worker)
    go.wait()
    while worker.nr < worker.max_requests:  # gunicorn's own test, after the hook
        conf.pre_request(worker, SimpleNamespace(req_number=1, must_close=False))
        worker.nr += 1
        time.sleep(0.001)
    out.put((os.getpid(), time.monotonic(), worker.nr))


def test_recycles_never_coincide(monkeypatch):
    """Three workers reaching the same limit together restart one at a time, at least the spacing apart."""
    conf = load(monkeypatch, MEDIAPROXY_RECYCLE_SPACING="1.5", MEDIAPROXY_MAX_REQUESTS="50")
    ctx = multiprocessing.get_context("fork")
    out, go = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_worker_process, args=(conf, 50, out, go)) for _ in range(3)]
    for p in procs:
        p.start()
    go.set()
    done = sorted(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(10)
    times = sorted(t for _, t, _ in done)
    assert all(b - a >= 1.4 for a, b in itertools.pairwise(times)), times  # (1.5 s, measured after the grant)
    assert all(nr >= 50 for _, _, nr in done)  # nobody restarted before its limit


def test_a_lone_worker_recycles_at_its_limit(monkeypatch):
    conf = load(monkeypatch, MEDIAPROXY_RECYCLE_SPACING="30")
    worker = SimpleNamespace(nr=0, max_requests=7, cfg=SimpleNamespace(max_requests=7))
    conf.post_fork(SimpleNamespace(log=None), worker)
    assert worker.max_requests > 10**9  # gunicorn's own restart is off: the hook decides
    while worker.nr < worker.max_requests:
        conf.pre_request(worker, SimpleNamespace(req_number=1, must_close=False))
        worker.nr += 1
    assert worker.nr == 7

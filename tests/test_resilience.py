"""Resilience over real HTTP: concurrent faults never change an answer, gunicorn's own
error pages follow the error contract, storage failures fail fast and trip a breaker,
hits are served while misses are stuck, a broken cache disk costs nothing, slow clients
hold no thread. Each scenario of bench/resilience.py, shortened."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from mediaproxy.settings import Settings

from . import media
from .cdnutil import hash_, jpeg640, snowflake
from .server import Dribble, MotoS3, Server, eventually


def _hammer(urls: list[str], clients: int, per_client: int, timeout: float = 60) -> collections.Counter:
    """``clients`` threads, each with its own keep-alive session, cycling over ``urls``."""
    counts: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def run(i: int) -> None:
        with requests.Session() as s:
            for n in range(per_client):
                r = s.get(urls[(i + n) % len(urls)], timeout=timeout)
                with lock:
                    counts[r.status_code] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def test_concurrent_corrupt_inputs_are_always_400(server):
    # libvips keeps one error buffer per process: deciding 400-or-500 from its text let
    # one thread's sniff() turn another's 400 into a 500 (110 of 300 before the fix).
    data = jpeg640()
    paths = []
    for cut in (0.3, 0.5, 0.7, 0.9):
        u, h = snowflake(), hash_()
        server.put("cdn", f"avatars/{u}/{h}", data[: int(len(data) * cut)])
        paths.append(f"/avatars/{u}/{h}")
    g, h = snowflake(), hash_()
    server.put("cdn", f"avatars/{g}/{h}", b"not an image at all" * 10)  # refused by sniff() itself
    urls = [server.url(f"{p}.{ext}?size=64") for p in paths for ext in ("webp", "png")]
    urls.append(server.url(f"/avatars/{g}/{h}.png"))
    counts = _hammer(urls, clients=8, per_client=30)
    assert counts == {400: 8 * 30}, counts


def _raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(120)) + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n", 400),
        (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    ],
    ids=["uri-too-long", "too-many-headers", "header-too-large", "bad-header", "tls-on-plain", "bad-version"],
)
def test_gunicorn_error_pages_follow_the_error_contract(local_server, request_bytes, status):
    code, headers, body = _parse(_raw(local_server.port, request_bytes))
    assert code == status
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["access-control-allow-origin"] == "*"
    assert headers["cache-control"] == "no-store"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body) and 0 < len(body) < 100
    assert b"<html" not in body
    assert local_server.get("/_health").status_code == 200  # and the worker is fine


@contextmanager
def frozen(proc):
    """The process stopped (SIGSTOP): its sockets stay open and accept, nothing answers."""
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(proc.pid, signal.SIGCONT)


@pytest.fixture
def private_s3(tmp_path):
    """A moto of this test's own (the session one must never be frozen) and a server on it."""
    moto = MotoS3()
    srv = None
    try:
        srv = Server("s3", tmp_path, moto, workers=1, threads=12, env={
            "MEDIAPROXY_STORAGE_BREAKER_FAILURES": "3", "MEDIAPROXY_STORAGE_BREAKER_COOLDOWN": "5",
            # the default deadline (tests/server.py relaxes it for the other tests)
            "MEDIAPROXY_S3_READ_TIMEOUT": str(Settings().s3_read_timeout)})
        yield moto, srv
    finally:
        os.kill(moto.proc.pid, signal.SIGCONT)
        if srv is not None:
            srv.stop()
        moto.stop()


def _timed(fn):
    t = time.monotonic()
    r = fn()
    return r, time.monotonic() - t


def test_frozen_storage_fails_fast_trips_the_breaker_and_recovers(private_s3):
    moto, srv = private_s3
    u = snowflake()
    hashes = [hash_() for _ in range(12)]
    for h in hashes:
        srv.put("cdn", f"avatars/{u}/{h}", media.jpeg(64, 64))
    hit = f"/avatars/{u}/{hashes[0]}.png?size=32"
    assert srv.get(hit).status_code == 200 and srv.get(hit).headers["X-Cache"] == "HIT"
    misses = iter(f"/avatars/{u}/{h}.webp?size=32" for h in hashes[1:])

    with frozen(moto.proc):
        # 8 misses at once (more than the worker's miss share): each one 503 or 504, fast,
        # and meanwhile hits and /_health are answered at once.
        results: list[tuple[int, float]] = []
        first = [next(misses) for _ in range(4)] * 2

        def miss(path: str) -> None:
            r, took = _timed(lambda: srv.get(path, headers={"Connection": "close"}, timeout=60))
            results.append((r.status_code, took))

        threads = [threading.Thread(target=miss, args=(p,)) for p in first]
        for t in threads:
            t.start()
        time.sleep(0.3)
        hit_times = []
        while any(t.is_alive() for t in threads):
            for path in (hit, "/_health"):
                r, took = _timed(lambda p=path: srv.get(p, timeout=60))
                assert r.status_code == 200
                hit_times.append(took)
        for t in threads:
            t.join()
        assert sorted({s for s, _ in results}) <= [503, 504] and len(results) == 8, results
        # it once took 30 s; the target is 3 s (the 2 s read timeout, never retried)
        assert max(took for _, took in results) < 8, results
        assert max(hit_times) < 2, hit_times  # never behind the stuck misses (was 28 s)
        # the breaker is open now (or after a few more failures, when a loaded machine let
        # fewer of the 8 reach storage): a miss is then refused at once, with Retry-After
        for _ in range(5):
            r, took = _timed(lambda: srv.get(next(misses)))
            if r.status_code == 503 and took < 1.5:
                break
            assert r.status_code in (503, 504), (r.status_code, r.text)
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1, (r.status_code, r.text)
        assert took < 1.5
        assert srv.get(hit).status_code == 200
    # storage is back: within a cooldown and a probe, misses succeed again, no restart
    deadline = time.monotonic() + 20
    path = next(misses)
    while True:
        r = srv.get(path)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        assert r.status_code in (503, 504)
        time.sleep(0.2)
    assert r.status_code == 200 and r.headers["X-Cache"] == "MISS"
    assert srv.get(next(misses)).status_code == 200


@pytest.mark.parametrize("queued", [0, 2])
def test_hits_are_answered_while_every_miss_slot_is_busy(make_server, origin, queued):
    # One worker; 8 misses stuck on a slow origin for 3 s. Six hold the worker's miss
    # share; the other two wait for a place when the queue takes them (then succeed),
    # else are refused at once (503, Retry-After); the two threads left beyond misses
    # and queued misses answer hits, 304s and /_health meanwhile.
    from .test_external import ext

    srv = make_server("local", env={"MEDIAPROXY_FETCH_TIMEOUT": "10", "MEDIAPROXY_MAX_QUEUED_MISSES": str(queued)},
                      workers=1, threads=8 + queued)
    u, h = snowflake(), hash_()
    srv.put("cdn", f"avatars/{u}/{h}", media.jpeg(64, 64))
    hit = f"/avatars/{u}/{h}.png?size=32"
    etag = srv.get(hit).headers["ETag"]
    slow = [origin.add(f"/bulkhead-{i}.png", media.png(8, 8), delay=3.0) for i in range(8)]
    results: list[int] = []
    threads = [threading.Thread(target=lambda p=p: results.append(srv.get(ext(p), timeout=30).status_code))
               for p in slow]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 10
        while sum(origin.hits(f"/bulkhead-{i}.png") for i in range(8)) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        waits = []
        for _ in range(10):
            for path, headers, status in ((hit, {}, 200), (hit, {"If-None-Match": etag}, 304), ("/_health", {}, 200)):
                r, took = _timed(lambda p=path, hd=headers: srv.get(p, headers=hd, timeout=30))
                assert r.status_code == status
                waits.append(took)
        assert max(waits) < 1.5, [round(w, 2) for w in waits]
    finally:
        for t in threads:
            t.join()
    assert sorted(results) == ([200] * 8 if queued else [200] * 6 + [503] * 2), results


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 4 MiB tmpfs of this test's own (needs root; skipped where mount is not allowed)."""
    mnt = tmp_path / "cachefs"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _with_cache_open(srv: Server, database: Path) -> int:
    """How many of the server's workers hold the cache's database open."""
    found = 0
    for pid in srv.worker_pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            found += any(os.readlink(f"/proc/{pid}/fd/{fd}") == os.path.realpath(database) for fd in fds)
        except OSError:  # a worker (or one of its descriptors) went away meanwhile
            pass
    return found


def test_full_then_read_only_cache_disk_costs_no_request_more_than_its_work(make_server, small_tmpfs):
    srv = make_server("local", env={"MEDIAPROXY_CACHE_DIR": str(small_tmpfs / "cache")}, workers=2)
    u = snowflake()
    hashes = [hash_() for _ in range(4)]
    for h in hashes:
        srv.put("cdn", f"avatars/{u}/{h}", media.jpeg(640, 640))
    first = srv.get(f"/avatars/{u}/{hashes[0]}.png?size=64")
    assert first.status_code == 200, (first.status_code, first.text[:200])  # database and locks exist
    # Both workers have opened the cache before the disk fills: opening it writes (diskcache
    # records its settings), so a worker still starting then would serve without a cache, and the
    # hit below would depend on which worker answers. (Opening a read-only cache: further down.)
    eventually(lambda: _with_cache_open(srv, small_tmpfs / "cache" / "cache.db") == 2, timeout=60)
    with open(small_tmpfs / "filler", "wb", buffering=0) as f:  # fill the disk to the last byte
        for block in (65536, 4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * block)
            except OSError:
                pass

    def burst(size: int) -> list[tuple[int, float]]:
        # concurrent misses of the same few URLs: the coalescing path, each time
        out: list[tuple[int, float]] = []

        def one(h: str) -> None:
            r, took = _timed(lambda: srv.get(f"/avatars/{u}/{h}.webp?size={size}", timeout=60))
            out.append((r.status_code, took))

        threads = [threading.Thread(target=one, args=(h,)) for h in hashes[1:] for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    for size in (128, 256):
        got = burst(size)
        assert {s for s, _ in got} == {200}, got
        assert max(t for _, t in got) < 5, got  # the work is ~0.05 s; the coalescing wait is 10 s
    assert srv.get(f"/avatars/{u}/{hashes[0]}.png?size=64").headers["X-Cache"] == "HIT"  # stored before
    # The same cache, read-only (a bind mount remounted ro: a tmpfs with open files
    # cannot be remounted), under a second server.
    ro = small_tmpfs.parent / "ro"
    ro.mkdir()
    subprocess.run(["mount", "--bind", str(small_tmpfs / "cache"), str(ro)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True)
        srv = srv2 = make_server(
            "local", env={"MEDIAPROXY_CACHE_DIR": str(ro), "MEDIAPROXY_STORAGE": str(srv.storage_dir)}, workers=2
        )
        for size in (160, 240):
            got = burst(size)
            assert {s for s, _ in got} == {200}, got
            assert max(t for _, t in got) < 5, got
        assert srv2.get(f"/avatars/{u}/{hashes[0]}.png?size=64").status_code == 200
        srv2.stop()
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


def _log_text(srv: Server) -> str:
    srv.log.flush()
    return (Path(srv.log.name)).read_text(errors="replace")


def test_corrupt_input_is_one_warning_line_with_libvips_warnings_folded_in(make_server):
    srv = make_server("local")
    data = media.jpeg(1024, 1024)
    broken = data[: len(data) // 2] + bytes(400) + data[len(data) // 2 + 400 :]  # decodes, with tile errors
    cut = data[: len(data) // 3]
    u = snowflake()
    paths = []
    for body in (broken, cut):
        h = hash_()
        srv.put("cdn", f"avatars/{u}/{h}", body)
        paths.append(f"/avatars/{u}/{h}")
    before = len(_log_text(srv).splitlines())
    assert srv.get(f"{paths[1]}.webp?size=1024").status_code == 400
    srv.get(f"{paths[0]}.webp?size=1024")  # libvips warns per tile (answered 200 or 400)
    assert srv.get(f"{paths[1]}.png?size=1024").status_code == 400

    def logged() -> list[str] | None:  # the fault lines of both refused requests, and libvips' folded in
        lines = _log_text(srv).splitlines()[before:]
        done = len([line for line in lines if paths[1] in line]) >= 2 and any("libvips:" in line for line in lines)
        return lines if done else None

    lines = eventually(logged)
    assert not any("error in tile" in line and "libvips:" not in line for line in lines), lines
    faults = [line for line in lines if f"/avatars/{u}/" in line]
    assert faults and all("400 undecodable image" in line for line in faults if paths[1] in line), lines
    assert len([line for line in faults if paths[1] in line]) == 2  # one line per request
    assert "Traceback" not in "\n".join(lines)
    assert any("libvips:" in line for line in lines), lines


def test_storage_cut_mid_body_closes_the_connection_with_one_warning_line(private_s3):
    moto, srv = private_s3
    size = 32 * 1024 * 1024
    key = f"attachments/{snowflake()}/{snowflake()}/big.bin"
    srv.put("cdn", key, os.urandom(1024 * 1024) * 32)
    before = len(_log_text(srv).splitlines())
    with requests.get(srv.url("/" + key), stream=True, timeout=30) as r:
        assert r.status_code == 200 and int(r.headers["Content-Length"]) == size
        got = len(next(r.iter_content(65536)))
        with frozen(moto.proc):
            try:
                for chunk in r.iter_content(65536):
                    got += len(chunk)
            except requests.exceptions.RequestException:
                pass
    assert got < size  # the client can tell: fewer bytes than Content-Length, connection closed
    eventually(lambda: key in _log_text(srv).split("\n", before)[-1])
    lines = _log_text(srv).splitlines()[before:]
    warned = [line for line in lines if key in line]
    assert len(warned) == 1 and "storage timeout after" in warned[0], lines
    assert "Traceback" not in "\n".join(lines), lines
    assert srv.get("/_health").status_code == 200


class Slowloris(Dribble):
    """Connections that send a request's headers one byte at a time, never finishing."""

    LINE = b"GET /_health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 10_000

    def __init__(self, port: int, n: int, interval: float = 0.5):
        super().__init__(port, [b""] * n, interval)

    def next_byte(self, i: int) -> bytes | None:
        return self.LINE[i : i + 1] if i < len(self.LINE) else None


def test_slow_request_headers_hold_no_thread_and_time_out(make_server):
    srv = make_server("local", env={"MEDIAPROXY_HEADER_TIMEOUT": "4"}, workers=1, threads=2)
    u, h = snowflake(), hash_()
    srv.put("cdn", f"avatars/{u}/{h}", media.jpeg(64, 64))
    hit = f"/avatars/{u}/{h}.png?size=32"
    assert srv.get(hit).status_code == 200
    loris = Slowloris(srv.port, 20)
    try:
        time.sleep(1.5)  # every slow connection has started its headers
        waits = []
        for _ in range(10):
            for path in (hit, "/_health"):
                r, took = _timed(lambda p=path: srv.get(p, headers={"Connection": "close"}, timeout=30))
                assert r.status_code == 200
                waits.append(took)
        assert max(waits) < 1.5, [round(w, 2) for w in waits]  # stock gthread: 0 of 4 served
        # past the header deadline each slow connection is answered 408 and closed: read until then
        s = loris.socks[0]
        s.settimeout(15)
        answer = b""
        try:
            while chunk := s.recv(4096):
                answer += chunk
        except OSError:
            pass
        assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    finally:
        loris.close()
    assert "request headers from 127.0.0.1 incomplete" in _log_text(srv)


def test_headers_split_over_several_packets_are_served(local_server):
    with socket.create_connection(("127.0.0.1", local_server.port), timeout=10) as s:
        for part in (b"GET /_hea", b"lth HTTP/1.1\r\nHo", b"st: x\r\n", b"\r\n"):
            s.sendall(part)
            time.sleep(0.2)
        code, headers, body = _parse(s.recv(65536))
        assert code == 200 and body.startswith(b"OK") and headers["connection"] != "close"
        s.sendall(b"GET /_health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")  # kept alive: again
        rest = b""
        while chunk := s.recv(65536):
            rest += chunk
        assert _parse(rest)[0] == 200


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_client_that_stops_reading_loses_the_response_not_a_thread(make_server, backend):
    srv = make_server(backend, env={"MEDIAPROXY_SEND_TIMEOUT": "2"}, workers=1, threads=2)
    key = f"attachments/{snowflake()}/{snowflake()}/big.bin"
    size = 16 * 1024 * 1024
    srv.put("cdn", key, b"\0" * size)
    stalled = []
    for _ in range(4):  # twice the threads: all stuck at once with stock gthread, forever
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(f"GET /{key} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        stalled.append(s)
    try:
        time.sleep(0.5)
        r, took = _timed(lambda: srv.get("/_health", timeout=30))
        assert r.status_code == 200 and took < 2 * 2 + 3, took  # a thread is free again within two deadlines
        for s in stalled:  # each was cut off: fewer bytes than Content-Length, then EOF
            got = 0
            try:
                while chunk := s.recv(1 << 20):
                    got += len(chunk)
            except OSError:
                pass
            assert got < size
    finally:
        for s in stalled:
            s.close()
    text = _log_text(srv)
    assert "took nothing for 2 s: response abandoned" in text and "Traceback" not in text


def _noise_jpeg(n: int) -> bytes:
    """An image that compresses badly: its PNG at n×n is megabytes."""
    import pyvips

    grey = pyvips.Image.gaussnoise(n, n, mean=128, sigma=60).cast("uchar")
    return grey.bandjoin([grey.rot180(), grey.fliphor()]).jpegsave_buffer(Q=95)


def _slow_socket(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    return s


def _read_http(s: socket.socket, pace: float = 0.0) -> tuple[int, dict[str, str], bytes]:
    """One response from a raw socket, its body read to Content-Length (``pace`` s between reads)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, buf[:200]
        buf += chunk
    head, _, first = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    need = int(headers.get("content-length", "0"))
    parts, got = [first], len(first)
    while got < need:
        chunk = s.recv(min(65536, need - got))
        assert chunk, f"cut after {got} of {need} bytes"
        parts.append(chunk)
        got += len(chunk)
        if pace:
            time.sleep(pace)
    return int(lines[0].split()[1]), headers, b"".join(parts)


def test_slow_readers_of_files_and_cached_results_hold_no_thread(make_server):
    # Two threads, seven clients that take nothing of a multi-MiB body (a local attachment
    # and a cached transform result: files; a result just computed: bytes in memory). The
    # event loop holds their bodies, so hits,
    # /_health, a whole download, HEAD and Range are answered at once; then each slow
    # client gets every byte and its connection is kept alive for another request.
    # (Before, the first two held both threads for the whole send deadline.)
    srv = make_server("local", env={"MEDIAPROXY_SEND_TIMEOUT": "30"}, workers=1, threads=2)
    key = f"attachments/{snowflake()}/{snowflake()}/big.bin"
    blob = os.urandom(8 * 1024 * 1024)
    srv.put("cdn", key, blob)
    u, h = snowflake(), hash_()
    srv.put("cdn", f"avatars/{u}/{h}", _noise_jpeg(1024))
    big_hit = f"/avatars/{u}/{h}.png?size=1024"
    srv.put("cdn", f"avatars/{u}/{h}0", media.jpeg(64, 64))
    hit = f"/avatars/{u}/{h}0.png?size=32"
    assert srv.get(hit).status_code == 200
    srv.get(big_hit)
    r = srv.get(big_hit)
    png = r.content
    assert r.status_code == 200 and r.headers["x-cache"] == "HIT" and len(png) > 1024 * 1024
    want = {f"/{key}": blob, big_hit: png}
    srv.put("cdn", f"avatars/{u}/{h}1", _noise_jpeg(1024))
    big_miss = f"/avatars/{u}/{h}1.png?size=1024"  # computed for this reader: a buffer in memory
    slow = []
    try:
        s = _slow_socket(srv.port)
        s.sendall(f"GET {big_miss} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        slow.append((s, big_miss))
        assert s.recv(12, socket.MSG_PEEK) == b"HTTP/1.1 200"  # computed, its headers sent
        for path in [f"/{key}", big_hit] * 3:
            s = _slow_socket(srv.port)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            slow.append((s, path))
        time.sleep(1.0)  # every slow response has started and filled its socket
        waits = []
        for _ in range(3):
            for path in (hit, "/_health", big_hit):
                r, took = _timed(lambda p=path: srv.get(p, headers={"Connection": "close"}, timeout=30))
                assert r.status_code == 200 and r.content == want.get(path, r.content)
                waits.append(took)
        r, took = _timed(lambda: srv.get(f"/{key}", timeout=30))
        assert r.status_code == 200 and r.content == blob
        waits.append(took)
        r, took = _timed(lambda: srv.get(f"/{key}", headers={"Range": "bytes=100-300099"}, timeout=30))
        assert r.status_code == 206 and r.content == blob[100:300100]
        assert r.headers["content-range"] == f"bytes 100-300099/{len(blob)}"
        waits.append(took)
        r, took = _timed(lambda: srv.head(f"/{key}", timeout=30))
        assert r.status_code == 200 and r.headers["content-length"] == str(len(blob)) and not r.content
        waits.append(took)
        assert max(waits) < 10, [round(w, 2) for w in waits]  # stuck behind the readers: the 30 s timeout
        r = srv.get(big_miss)
        assert r.headers["x-cache"] == "HIT" and len(r.content) > 1024 * 1024
        want[big_miss] = r.content

        results: dict[int, object] = {}

        def drain(i: int, s: socket.socket, path: str) -> None:
            try:
                code, headers, body = _read_http(s, pace=0.002)
                assert (code, headers["connection"], body == want[path]) == (200, "keep-alive", True)
                s.sendall(b"GET /_health HTTP/1.1\r\nHost: x\r\n\r\n")  # the same connection, again
                results[i] = _read_http(s)[:1]
            except BaseException as exc:  # reported by the main thread
                results[i] = exc

        readers = [threading.Thread(target=drain, args=(i, s, p)) for i, (s, p) in enumerate(slow)]
        for t in readers:
            t.start()
        for t in readers:
            t.join(120)
        assert results == {i: (200,) for i in range(len(slow))}, results
    finally:
        for s, _ in slow:
            s.close()
    assert "Traceback" not in _log_text(srv)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_streams_past_their_share_are_refused_and_hits_go_on(make_server, backend):
    # An S3 body is sent by a thread, within the stream share; a local file is handed to
    # the event loop with its headers, which gives the share back at once: none refused.
    srv = make_server(backend, env={"MEDIAPROXY_MAX_CONCURRENT_STREAMS": "2", "MEDIAPROXY_SEND_TIMEOUT": "30"},
                      workers=1)
    key = f"attachments/{snowflake()}/{snowflake()}/big.bin"
    srv.put("cdn", key, b"\0" * (16 * 1024 * 1024))
    u, h = snowflake(), hash_()
    srv.put("cdn", f"avatars/{u}/{h}", media.jpeg(64, 64))
    hit = f"/avatars/{u}/{h}.png?size=32"
    assert srv.get(hit).status_code == 200
    stalled, statuses = [], []
    try:
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(f"GET /{key} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            statuses.append(int(s.recv(64).split()[1]))
            stalled.append(s)
        assert sorted(statuses) == ([200, 200, 503, 503] if backend == "s3" else [200] * 4), statuses
        for path in (hit, "/_health"):
            r, took = _timed(lambda p=path: srv.get(p, timeout=30))
            assert r.status_code == 200 and took < 2
    finally:
        for s in stalled:
            s.close()
    deadline = time.monotonic() + 20  # the places come back when the stalled bodies end
    while srv.get(f"/{key}", headers={"Range": "bytes=0-9"}).status_code != 206:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_a_request_body_that_stalls_is_a_408_without_a_trace(make_server):
    """A client that stops sending its declared body: 408 once it falls under the minimum rate
    after the grace (the event loop reads small bodies), the connection closed, one WARNING line
    and no stack trace (it was a 500 with a traceback)."""
    srv = make_server("local", env={"MEDIAPROXY_BODY_GRACE": "1"}, workers=1)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    try:
        s.sendall(b"POST /_metadata HTTP/1.1\r\nHost: x\r\nX-Internal-Secret: test-secret-key\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"url\": \"s3://")
        head = s.recv(4096).decode("latin-1")
        assert head.startswith("HTTP/1.1 408"), head
        assert "connection: close" in head.lower()
    finally:
        s.close()
    assert srv.get("/_health").status_code == 200
    text = _log_text(srv)
    assert "request body from 127.0.0.1: 14 bytes in " in text and "under 10240 bytes/s: 408, closed" in text
    assert "Traceback" not in text

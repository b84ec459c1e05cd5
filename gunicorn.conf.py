"""gunicorn settings for mediaproxy. Every knob comes from the environment
(``MEDIAPROXY_*``); gunicorn's own command-line flags still win.

The defaults were chosen by measurement on a 2-core machine: see
docs/performance.md "Tuning" for the numbers and bench/tune.py to redo them.
"""

import ctypes
import ctypes.util
import gc
import multiprocessing
import os
import time


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


cores = multiprocessing.cpu_count()

bind = os.environ.get("MEDIAPROXY_BIND", "127.0.0.1:8000")
# One process per core: 2 workers measured 2.0x one worker on misses (1 thread
# each); a third worker on 2 cores gave nothing (hits 12.8k vs 13.2k req/s,
# misses 195 vs 202 req/s) and costs another ~72 MiB (docs/performance.md).
workers = _int("MEDIAPROXY_WORKERS", cores)
# Threads per worker (measured with 4 transform slots): hits are GIL-bound, libvips releases the GIL. On loopback
# 4 measured best on misses (202 req/s; 1: 182, 2: 176, 8: 188 with p99 81 ms);
# hits 11.2k (1), 10.7k (2), 13.2k (4), 14.2k (8). 4 also keeps a worker busy
# while others wait on S3.
# 12 threads: misses (storage, transforms) may hold MEDIAPROXY_MAX_CONCURRENT_MISSES (6),
# stored bodies being sent MEDIAPROXY_MAX_CONCURRENT_STREAMS (4); the other two always
# answer cache hits, 304s and /_health, however stuck storage, the transforms or the
# clients reading attachments are (docs/resilience.md). A blocked thread costs no CPU.
threads = _int("MEDIAPROXY_THREADS", 12)
# gthread that accepts a connection only while it has a thread free: with
# stock gthread the worker already awake wins every accept race, and in 3 of
# 16 fresh starts one worker held all 16 of wrk's connections (mediaproxy/worker.py).
worker_class = os.environ.get("MEDIAPROXY_WORKER_CLASS", "mediaproxy.worker.ThreadWorker")
timeout = _int("MEDIAPROXY_TIMEOUT", 60)
# Slow clients (mediaproxy/worker.py, docs/resilience.md). Request headers are read by
# the worker's event loop, and a thread is taken only once they are complete: a
# client gets this many seconds to send them (then 408). A response send that
# makes no progress for MEDIAPROXY_SEND_TIMEOUT seconds (a client that stopped
# reading, or reads a 256 KiB chunk slower than that) is abandoned. 0: off.
header_timeout = float(os.environ.get("MEDIAPROXY_HEADER_TIMEOUT", "").strip() or 10.0)
send_timeout = float(os.environ.get("MEDIAPROXY_SEND_TIMEOUT", "").strip() or 10.0)
graceful_timeout = _int("MEDIAPROXY_GRACEFUL_TIMEOUT", 30)
# Behind a CDN or load balancer connections are reused: keep them longer than
# the balancer's idle timeout would be pointless, shorter wastes handshakes.
keepalive = _int("MEDIAPROXY_KEEPALIVE", 5)
# Requests served on one kept-alive connection before the response says
# "Connection: close" (nginx's keepalive_requests, same default). A busy
# connection is never idle long enough for the keep-alive timeout, so without
# this the connections a recycled worker dropped would stay piled on the
# others for good. 0: no limit.
keepalive_requests = _int("MEDIAPROXY_KEEPALIVE_REQUESTS", 1000)
# Recycling a worker costs a cold start (~1 s of imports) and a cold memory tier;
# with the mallopt settings below RSS stays bounded (bench/memory.py), so this
# is a safety net only, jittered so the workers never restart together.
max_requests = _int("MEDIAPROXY_MAX_REQUESTS", 100_000)
max_requests_jitter = _int("MEDIAPROXY_MAX_REQUESTS_JITTER", 10_000)
backlog = _int("MEDIAPROXY_BACKLOG", 2048)
accesslog = None  # mediaproxy logs one structured line per request itself
errorlog = "-"
loglevel = os.environ.get("MEDIAPROXY_LOG_LEVEL", "info").lower()

# libvips threads per operation: the workers already use every core; 2 measured
# no faster on misses (203 vs 202 req/s, 2 x 4 threads, p99 67 vs 65 ms).
vips_concurrency = _int("MEDIAPROXY_VIPS_CONCURRENCY", _int("VIPS_CONCURRENCY", 1))
os.environ["VIPS_CONCURRENCY"] = str(vips_concurrency)  # read by libvips when a worker imports pyvips

# glibc malloc arenas. libvips' worker threads each get an arena by default
# (8 x cores), and freed image buffers then stay spread over them: RSS creeps.
# The environment variable MALLOC_ARENA_MAX only works if set before the
# process starts (glibc reads it once), so a value set here would be ignored;
# instead every worker calls mallopt(M_ARENA_MAX) right after the fork, before
# any thread exists. 0 leaves glibc's default. jemalloc is the other answer
# (start gunicorn with LD_PRELOAD=.../libjemalloc.so.2; mallopt is then
# skipped): bench/memory.py measures all three, docs/performance.md has the table.
malloc_arena_max = _int("MEDIAPROXY_MALLOC_ARENA_MAX", 2)
# Image buffers over this size are mmap()ed and so go back to the system when
# freed. glibc otherwise raises the threshold after each large free (up to
# 32 MiB), and later pixel buffers land in the heap and pin it. 0: glibc's default.
malloc_mmap_threshold = _int("MEDIAPROXY_MALLOC_MMAP_THRESHOLD", 1024 * 1024)
# Seconds between malloc_trim(0) calls, made after a request at most this often
# (0: never). Freed memory inside the heap stays resident until trimmed: an
# AVIF-heavy mix held 92-109 MiB of heap per worker without it and 48-66 MiB
# with it. A trim takes about 0.1 ms, 5 ms when it has 70 MiB to hand back;
# ctypes drops the GIL for it and it runs after the response went out.
malloc_trim_interval = float(os.environ.get("MEDIAPROXY_MALLOC_TRIM_INTERVAL", "").strip() or 1.0)
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # from glibc's malloc.h
_glibc = None  # set in each worker when the allocator is glibc's
_next_trim = 0.0


def _mallopt(log) -> None:
    global _glibc
    if "jemalloc" in os.environ.get("LD_PRELOAD", ""):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        for option, value in ((_M_ARENA_MAX, malloc_arena_max), (_M_MMAP_THRESHOLD, malloc_mmap_threshold)):
            if value > 0 and libc.mallopt(option, value) != 1:
                log.warning("mallopt(%d, %d) refused", option, value)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        _glibc = libc
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        pass


def pre_request(worker, req) -> None:
    # Replaces gunicorn's default hook (a debug line per request).
    if keepalive_requests and req.req_number >= keepalive_requests:
        req.must_close = True


def post_request(worker, req, environ, resp) -> None:
    global _next_trim
    if _glibc is None or malloc_trim_interval <= 0:
        return
    now = time.monotonic()
    if now >= _next_trim:  # two threads may both pass: a second trim is harmless and cheap
        _next_trim = now + malloc_trim_interval
        _glibc.malloc_trim(0)


def post_fork(server, worker) -> None:
    _mallopt(server.log)
    if hasattr(worker, "header_timeout"):  # mediaproxy's worker class (not stock gthread)
        worker.header_timeout, worker.send_timeout = header_timeout, send_timeout


def post_worker_init(worker) -> None:
    # The app is loaded: its objects live as long as the worker, so keep the
    # cyclic GC from walking them again and again on every full collection.
    gc.freeze()

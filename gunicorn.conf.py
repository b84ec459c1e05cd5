"""gunicorn settings for mediaproxy. Every knob comes from the environment
(``MEDIAPROXY_*``); gunicorn's own command-line flags still win.

The defaults were chosen by measurement on a 2-core machine: see
docs/performance.md "Tuning" for the numbers and bench/tune.py to redo them.
"""

import ctypes
import ctypes.util
import gc
import glob
import multiprocessing
import os
import shutil
import sys
import tempfile
import time

from mediaproxy.errors import ConfigError
from mediaproxy.settings import Settings

# Every setting, the application's included, is validated here in the master,
# before anything forks: a bad value stops gunicorn at once with one line
# naming the variable (exit status 2), instead of workers failing one after
# another. Settings other modules add to Settings.from_env are covered for free.
try:
    settings = Settings.from_env(os.environ)
    from mediaproxy.storage import prepare as _prepare_storage

    _storage_notes = _prepare_storage(settings)
except ConfigError as _exc:
    sys.stderr.write(f"mediaproxy: configuration error: {_exc}\n")
    sys.stderr.flush()
    sys.exit(2)
srv = settings.server


def _metrics_dir() -> tuple[str, bool]:
    """prometheus_client's multiprocess directory, set before any worker imports the client.

    Emptied at start (files of a previous run would be summed in); on a reload
    (SIGHUP) this file runs again in the same master and the live files stay."""
    if os.environ.get("_MEDIAPROXY_METRICS_MASTER") == str(os.getpid()):
        return os.environ["PROMETHEUS_MULTIPROC_DIR"], False
    path = srv.metrics_dir or tempfile.mkdtemp(prefix="mediaproxy-metrics-")
    try:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
    except OSError as exc:
        sys.stderr.write(f"mediaproxy: configuration error: MEDIAPROXY_METRICS_DIR={path!r}: {exc.strerror}\n")
        sys.exit(2)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    os.environ["_MEDIAPROXY_METRICS_MASTER"] = str(os.getpid())
    return path, not srv.metrics_dir


metrics_dir, _metrics_dir_is_ours = _metrics_dir()

bind = srv.bind
# gunicorn 25+ opens a control socket for `gunicornc` at one path per user
# (~/.gunicorn/gunicorn.ctl), so every instance on a machine (the two hosts of
# scripts/serve, test servers) took over the others'. Off unless
# MEDIAPROXY_CONTROL_SOCKET names a path for this instance.
control_socket_disable = not srv.control_socket
if srv.control_socket:
    control_socket = srv.control_socket
# One process per core (the CPUs this process may use: affinity mask and
# cgroup quota, so a container limited to 2 CPUs on a big host runs 2): 2
# workers doubled one worker's misses; a third worker on 2 cores gave nothing
# and costs another worker's memory (figures: docs/performance.md, Tuning).
workers = srv.workers
# Threads per worker (measured with 4 transform slots): hits are GIL-bound, libvips
# releases the GIL; with one share of threads for all work, 4 measured best on misses
# (docs/performance.md, Tuning). 18 threads: misses (storage, transforms) may hold
# MEDIAPROXY_MAX_CONCURRENT_MISSES (6) and MEDIAPROXY_MAX_QUEUED_MISSES (6) more waiting
# for a place, stored bodies being
# sent MEDIAPROXY_MAX_CONCURRENT_STREAMS (4); the other two always
# answer cache hits, 304s and /_health, however stuck storage, the transforms or the
# clients reading attachments are (docs/resilience.md). A blocked thread costs no CPU.
threads = srv.threads
# gthread that accepts a connection only while it has a thread free: with
# stock gthread the worker already awake wins every accept race, and in 3 of
# 16 fresh starts one worker held all 16 of wrk's connections (mediaproxy/worker/thread_worker.py).
worker_class = srv.worker_class
timeout = srv.timeout
# Slow clients (mediaproxy/worker/, docs/resilience.md). Request headers are read by
# the worker's event loop, and a thread is taken only once they are complete: a
# client gets MEDIAPROXY_HEADER_TIMEOUT seconds to send them (then 408). A response
# send that makes no progress for MEDIAPROXY_SEND_TIMEOUT seconds (a client that
# stopped reading, or reads a 256 KiB chunk slower than that) is abandoned. 0: off.
header_timeout = srv.header_timeout
# Request bodies up to MEDIAPROXY_SMALL_BODY_MAX are read by the event loop too; every body
# must keep MEDIAPROXY_BODY_MIN_RATE after MEDIAPROXY_BODY_GRACE and end within MEDIAPROXY_BODY_TIMEOUT.
send_timeout = srv.send_timeout
graceful_timeout = srv.graceful_timeout
# Behind a CDN or load balancer connections are reused: keep them longer than
# the balancer's idle timeout would be pointless, shorter wastes handshakes.
keepalive = srv.keepalive
# Requests served on one kept-alive connection before the response says
# "Connection: close" (nginx's keepalive_requests, same default). A busy
# connection is never idle long enough for the keep-alive timeout, so without
# this the connections a recycled worker dropped would stay piled on the
# others for good. 0: no limit.
keepalive_requests = srv.keepalive_requests
# Recycling a worker costs a cold start (its imports) and a cold memory tier;
# with the mallopt settings below RSS stays bounded (bench/memory.py), so this
# is a safety net only. gunicorn's jitter alone does not keep workers apart: with
# the load split evenly, two workers given 100k +- 10k reach their limits a few
# seconds apart at best, and both restarted within one second in a hit benchmark
# (p99 5 -> 390 ms). So gunicorn gets the limit and jitter (its worker draws its
# own limit) but the recycle itself is decided here: a worker past its limit
# restarts only when no sibling did for MEDIAPROXY_RECYCLE_SPACING seconds
# (``_recycle_due``), and otherwise keeps serving and asks again a second later.
max_requests = srv.max_requests
max_requests_jitter = srv.max_requests_jitter
recycle_spacing = srv.recycle_spacing
backlog = srv.backlog
accesslog = None  # mediaproxy logs one structured line per request itself
errorlog = "-"
loglevel = srv.log_level

# libvips threads per operation: the workers already use every core; 2 measured
# no faster on misses, with a higher p99 (docs/performance.md, Tuning).
vips_concurrency = srv.vips_concurrency
os.environ["VIPS_CONCURRENCY"] = str(vips_concurrency)  # read by libvips when a worker imports pyvips

# glibc malloc arenas. libvips' worker threads each get an arena by default
# (8 x cores), and freed image buffers then stay spread over them: RSS creeps.
# The environment variable MALLOC_ARENA_MAX only works if set before the
# process starts (glibc reads it once), so a value set here would be ignored;
# instead every worker calls mallopt(M_ARENA_MAX) right after the fork, before
# any thread exists. 0 leaves glibc's default. jemalloc is the other answer
# (start gunicorn with LD_PRELOAD=.../libjemalloc.so.2; mallopt is then
# skipped): bench/memory.py measures all three, docs/performance.md has the table.
malloc_arena_max = srv.malloc_arena_max
# Image buffers over this size (4 MiB) are mmap()ed and so go back to the system when
# freed. glibc otherwise raises the threshold after each large free (up to
# 32 MiB), and later pixel buffers land in the heap and pin it. Buffers under it stay in
# the heap from one request to the next: at 1 MiB a 512² RGBA source's buffers were mapped,
# faulted in page by page and unmapped on every miss (docs/performance.md, "The miss path
# over HTTP"). 0: glibc's default.
malloc_mmap_threshold = srv.malloc_mmap_threshold
# Setting the mmap threshold also fixes glibc's trim threshold at its 128 KiB default (glibc raises
# both together only while neither is set): every request's freed buffers then shrank the heap
# at once and the next request faulted the pages in again (a 64 px WebP from a 512² PNG: 575 page
# faults and 2.7 ms of system time per request). So the heap's top is handed back by free() only
# past 4 MiB, which a miss's buffers stay under; the periodic malloc_trim(0) below returns the rest
# of the main heap, but not the top of the second arena: at 32 MiB that top stayed resident, and a
# worker's RSS grew by ~10 % over a mixed run instead of ~3 %. 0: glibc's 128 KiB.
malloc_trim_threshold = srv.malloc_trim_threshold
# Seconds between malloc_trim(0) calls, made after a request at most this often
# (0: never). Freed memory inside the heap stays resident until trimmed: an
# AVIF-heavy mix held about twice the heap without it (docs/performance.md,
# Memory). A trim is short; ctypes drops the GIL for it and it runs after the
# response went out.
malloc_trim_interval = srv.malloc_trim_interval
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # from glibc's malloc.h
_glibc = None  # set in each worker when the allocator is glibc's
_next_trim = 0.0


def _mallopt(log) -> None:
    global _glibc
    if "jemalloc" in os.environ.get("LD_PRELOAD", ""):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        for option, value in ((_M_ARENA_MAX, malloc_arena_max), (_M_MMAP_THRESHOLD, malloc_mmap_threshold),
                              (_M_TRIM_THRESHOLD, malloc_trim_threshold)):
            if value > 0 and libc.mallopt(option, value) != 1:
                log.warning("mallopt(%d, %d) refused", option, value)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        _glibc = libc
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        pass


# The time of the last recycle of any worker (CLOCK_MONOTONIC is one clock for every
# process), in memory shared by the master's children; made here, before any fork.
_last_recycle = multiprocessing.RawValue("d", float("-inf"))
_recycle_lock = multiprocessing.Lock()
_own_limit = 0  # this worker's request limit (gunicorn's draw), set in post_fork
_next_ask = 0.0


def _recycle_due(now: float) -> bool:
    """Whether this worker may restart now: no sibling did for ``recycle_spacing`` seconds
    (which it then claims). A lock held by a worker that died is not waited for."""
    if not _recycle_lock.acquire(timeout=0.05):
        return False
    try:
        if now - _last_recycle.value < recycle_spacing:
            return False
        _last_recycle.value = now
        return True
    finally:
        _recycle_lock.release()


def pre_request(worker, req) -> None:
    # Replaces gunicorn's default hook (a debug line per request).
    global _next_ask
    if keepalive_requests and req.req_number >= keepalive_requests:
        req.must_close = True
    # gunicorn counts this request right after this hook (worker.nr += 1), then restarts
    # the worker when the count reaches worker.max_requests: lowered to the count only
    # once the turn to restart is ours.
    if _own_limit and worker.nr + 1 >= _own_limit and worker.max_requests > worker.nr + 1:
        now = time.monotonic()
        if now >= _next_ask:
            _next_ask = now + 1.0
            if _recycle_due(now):
                worker.max_requests = worker.nr + 1


def post_request(worker, req, environ, resp) -> None:
    global _next_trim
    if _glibc is None or malloc_trim_interval <= 0:
        return
    now = time.monotonic()
    if now >= _next_trim:  # two threads may both pass: a second trim is harmless and cheap
        _next_trim = now + malloc_trim_interval
        _glibc.malloc_trim(0)


def on_starting(server) -> None:
    for level, message in _storage_notes:
        getattr(server.log, level)("mediaproxy: %s", message)
    for message in settings.warnings():
        server.log.warning("mediaproxy: WARNING: %s", message)
    if settings.cache_dir is not None:
        # Open the result cache once before the workers: the first open after an upgrade builds
        # its tag index, which must not race the workers' own opens (theirs wait 1 s at most).
        from mediaproxy.cache import ResultCache

        ResultCache(settings.cache_dir, settings.cache_size, timeout=60.0).close()


def when_ready(server) -> None:
    if not srv.metrics_bind:
        return
    from mediaproxy import metrics

    try:
        metrics.serve(srv.metrics_bind, lambda: list(server.WORKERS), settings.cache_dir)
    except OSError as exc:
        server.log.error("mediaproxy: configuration error: MEDIAPROXY_METRICS_BIND=%r: %s", srv.metrics_bind, exc)
        on_exit(server)
        sys.exit(2)
    server.log.info("mediaproxy: metrics on http://%s/metrics (from the master)", srv.metrics_bind)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # its live gauges (transforms in flight) stop counting


def on_exit(server) -> None:
    if _metrics_dir_is_ours:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def post_fork(server, worker) -> None:
    global _own_limit, _next_ask
    _mallopt(server.log)
    if worker.cfg.max_requests > 0:  # the limit gunicorn drew (flags included): ours to enforce
        _own_limit, _next_ask = worker.max_requests, 0.0
        worker.max_requests = sys.maxsize
    if hasattr(worker, "header_timeout"):  # mediaproxy's worker class (not stock gthread)
        worker.header_timeout, worker.send_timeout = header_timeout, send_timeout
        worker.small_body_max, worker.body_min_rate = srv.small_body_max, srv.body_min_rate
        worker.body_grace, worker.body_timeout = srv.body_grace, srv.body_timeout
        worker.next_request_wait = srv.next_request_wait


def post_worker_init(worker) -> None:
    # The app is loaded: its objects live as long as the worker, so keep the
    # cyclic GC from walking them again and again on every full collection.
    gc.freeze()

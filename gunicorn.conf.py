"""gunicorn settings for mediaproxy. Every knob comes from the environment
(``MEDIAPROXY_*``); gunicorn's own command-line flags still win.

The defaults were chosen by measurement on a 2-core machine: see
docs/performance.md "Tuning" for the numbers and bench/tune.sh to redo them.
"""

import ctypes
import ctypes.util
import gc
import multiprocessing
import os


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


cores = multiprocessing.cpu_count()

bind = os.environ.get("MEDIAPROXY_BIND", "127.0.0.1:8000")
# One process per core: libvips work is CPU-bound and releases the GIL, and
# 2 workers measured 1.9x one worker on misses; a third worker on 2 cores
# only added context switches (docs/performance.md).
workers = _int("MEDIAPROXY_WORKERS", cores)
# Threads per worker: hits are short and GIL-bound, misses wait on storage and
# on libvips (GIL released). 4 beat 2 on hits and matched 8 with less memory.
threads = _int("MEDIAPROXY_THREADS", 4)
worker_class = os.environ.get("MEDIAPROXY_WORKER_CLASS", "gthread")
timeout = _int("MEDIAPROXY_TIMEOUT", 60)
graceful_timeout = _int("MEDIAPROXY_GRACEFUL_TIMEOUT", 30)
# Behind a CDN or load balancer connections are reused: keep them longer than
# the balancer's idle timeout would be pointless, shorter wastes handshakes.
keepalive = _int("MEDIAPROXY_KEEPALIVE", 5)
# Recycling a worker costs a cold start (~1 s of imports): RSS measured flat
# over 20,000 mixed requests (bench/memory.py), so it is a safety net only.
max_requests = _int("MEDIAPROXY_MAX_REQUESTS", 100_000)
max_requests_jitter = _int("MEDIAPROXY_MAX_REQUESTS_JITTER", 10_000)
backlog = _int("MEDIAPROXY_BACKLOG", 2048)
accesslog = None  # mediaproxy logs one structured line per request itself
errorlog = "-"
loglevel = os.environ.get("MEDIAPROXY_LOG_LEVEL", "info").lower()

# libvips threads per operation: the workers already use every core, and one
# thread per image measured fastest for thumbnail-sized work.
vips_concurrency = _int("MEDIAPROXY_VIPS_CONCURRENCY", _int("VIPS_CONCURRENCY", 1))
os.environ["VIPS_CONCURRENCY"] = str(vips_concurrency)  # read by libvips when a worker imports pyvips

# glibc malloc arenas. libvips' worker threads each get an arena by default
# (8 x cores), and freed image buffers then stay spread over them: RSS creeps.
# The environment variable MALLOC_ARENA_MAX only works if set before the
# process starts (glibc reads it once), so a value set here would be ignored;
# instead every worker calls mallopt(M_ARENA_MAX) right after the fork, before
# any thread exists. 0 leaves glibc's default. jemalloc is the other answer:
# scripts/serve preloads it (LD_PRELOAD) when MEDIAPROXY_JEMALLOC=1 and it is
# installed, and then mallopt is skipped.
malloc_arena_max = _int("MEDIAPROXY_MALLOC_ARENA_MAX", 2)
_M_ARENA_MAX = -8  # from glibc's malloc.h


def _mallopt_arena_max(log) -> None:
    if malloc_arena_max <= 0 or "jemalloc" in os.environ.get("LD_PRELOAD", ""):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.mallopt(_M_ARENA_MAX, malloc_arena_max) != 1:
            log.warning("mallopt(M_ARENA_MAX, %d) refused", malloc_arena_max)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        pass


def post_fork(server, worker) -> None:
    _mallopt_arena_max(server.log)


def post_worker_init(worker) -> None:
    # The app is loaded: its objects live as long as the worker, so keep the
    # cyclic GC from walking them again and again on every full collection.
    gc.freeze()

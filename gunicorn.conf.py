"""gunicorn settings for mediaproxy. Every knob comes from the environment
(``GUNICORN_*``/``MEDIAPROXY_*``); gunicorn's own command-line flags still win.
The defaults suit a small (2-core) machine; see README "Tuning"."""

import multiprocessing
import os


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


cores = multiprocessing.cpu_count()

bind = os.environ.get("MEDIAPROXY_BIND", "127.0.0.1:8000")
workers = _int("MEDIAPROXY_WORKERS", cores)
threads = _int("MEDIAPROXY_THREADS", 4)
worker_class = os.environ.get("MEDIAPROXY_WORKER_CLASS", "gthread")
timeout = _int("MEDIAPROXY_TIMEOUT", 60)
graceful_timeout = _int("MEDIAPROXY_GRACEFUL_TIMEOUT", 30)
keepalive = _int("MEDIAPROXY_KEEPALIVE", 5)
max_requests = _int("MEDIAPROXY_MAX_REQUESTS", 0)
max_requests_jitter = _int("MEDIAPROXY_MAX_REQUESTS_JITTER", 0)
backlog = _int("MEDIAPROXY_BACKLOG", 2048)
accesslog = None  # mediaproxy logs one structured line per request itself
errorlog = "-"
loglevel = os.environ.get("MEDIAPROXY_LOG_LEVEL", "info").lower()

# libvips threads per operation: the workers already use every core.
os.environ.setdefault("VIPS_CONCURRENCY", os.environ.get("MEDIAPROXY_VIPS_CONCURRENCY", "1"))
# glibc malloc arenas: libvips' many short-lived threads fragment the heap otherwise.
os.environ.setdefault("MALLOC_ARENA_MAX", os.environ.get("MEDIAPROXY_MALLOC_ARENA_MAX", "2"))

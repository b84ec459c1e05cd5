"""Prometheus metrics (``prometheus_client``), in its multiprocess mode under gunicorn.

gunicorn.conf.py points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory
before any worker imports this module, so each worker's counters live in
memory-mapped files there; the master serves the sum of all of them on
``MEDIAPROXY_METRICS_BIND`` (a listener of its own, so a scrape is answered
even while every worker thread is busy) and marks a worker's files dead when
it exits. Without that directory (tests building the app in-process, another
WSGI server) the same metrics count in this process only.

Every name follows Prometheus' conventions: ``mediaproxy_…_total`` counters,
``_seconds`` and ``_bytes`` units. Label values are bounded sets (route
families, methods, statuses, formats, reasons): nothing a client sends becomes
a label.

What each update costs is a lock and a write to a mmap: label children are
looked up once and kept (``_child``), so a request pays two updates.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger("mediaproxy.storage")

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"))

REQUESTS = Counter(
    "mediaproxy_http_requests_total", "HTTP requests answered, by route family, method and status.",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "mediaproxy_http_request_duration_seconds",
    "Time from the request reaching the application to its response starting, by route family.",
    ["route"], buckets=LATENCY_BUCKETS,
)
RESPONSE_BYTES = Counter(
    "mediaproxy_http_response_bytes_total", "Response body bytes (Content-Length) by route family.", ["route"]
)
RESULT_CACHE = Counter(
    "mediaproxy_result_cache_requests_total", "Result-cache lookups of transformed images, by outcome (hit, miss).",
    ["outcome"],
)
RESULT_CACHE_HIT_BYTES = Counter("mediaproxy_result_cache_hit_bytes_total", "Bytes of results served from the cache.")
RESULT_CACHE_STORED_BYTES = Counter(
    "mediaproxy_result_cache_stored_bytes_total", "Bytes written into the result cache."
)
TRANSFORM_SECONDS = Histogram(
    "mediaproxy_transform_duration_seconds", "Image transform time (decode, resize, encode) by output format.",
    ["format"], buckets=LATENCY_BUCKETS,
)
TRANSFORMS_IN_FLIGHT = Gauge(
    "mediaproxy_transforms_in_flight", "Transforms running now (all workers).", multiprocess_mode="livesum"
)
OVERLOADED = Counter(
    "mediaproxy_overloaded_total",
    "Requests shed with 503 because a bulkhead (transforms, misses, storage reads) had no place in time.",
    ["bulkhead"],
)
STORAGE_SECONDS = Histogram(
    "mediaproxy_storage_request_duration_seconds", "Storage calls by backend and operation (to the first byte).",
    ["backend", "operation"], buckets=LATENCY_BUCKETS,
)
STORAGE_ERRORS = Counter(
    "mediaproxy_storage_errors_total", "Storage calls that failed, by backend, operation and kind.",
    ["backend", "operation", "kind"],
)
ORIGIN_SECONDS = Histogram(
    "mediaproxy_origin_fetch_duration_seconds", "External origin fetches (/external, /_metadata URLs), whole body.",
    buckets=LATENCY_BUCKETS,
)
ORIGIN_ERRORS = Counter("mediaproxy_origin_errors_total", "External fetches that failed, by kind.", ["kind"])
FETCH_REFUSALS = Counter(
    "mediaproxy_fetch_refusals_total", "External fetch targets refused before connecting, by reason.", ["reason"]
)

_children: dict[tuple, object] = {}
_children_lock = threading.Lock()


def _child(metric, *labels: str):
    key = (id(metric), labels)
    child = _children.get(key)
    if child is None:
        with _children_lock:
            child = _children.setdefault(key, metric.labels(*labels))
    return child


def route_family(template: str | None) -> str:
    """A bounded label for a Falcon URI template: ``/avatars/{user_id}/{filename}`` → ``avatars``,
    ``/guilds/{guild_id}/users/{user_id}/banners/{filename}`` → ``member-banners``, none → ``unmatched``."""
    family = _families.get(template)
    if family is None:
        if not template:
            family = "unmatched"
        else:
            parts = [p for p in template.strip("/").split("/") if p]
            if len(parts) >= 5 and parts[0] == "guilds" and parts[2] == "users":
                family = "member-" + parts[4]
            else:
                family = (parts[0].lstrip("_") if parts else "root").split(".")[0] or "root"
        _families[template] = family
    return family


_families: dict[str | None, str] = {}


# The two updates every request makes (its count and its latency; a fast-path
# hit also counts a cache hit) are tallied in this process's memory under one
# lock, bucket already chosen, and written to the shared values by a
# background thread once a second (and at exit): a scrape sees them up to a
# second late, and a hit pays ~1 us instead of ~6 us of prometheus_client calls.
FLUSH_INTERVAL = 1.0
_pending: dict[tuple, float] = {}
_pending_lock = threading.Lock()
_flusher_started = False
_LATENCY_INF = len(LATENCY_BUCKETS)  # index of the +Inf bucket


def _forked() -> None:
    global _flusher_started, _pending
    _flusher_started, _pending = False, {}  # a forked child starts its own thread; counts are the parent's


os.register_at_fork(after_in_child=_forked)


def _start_flusher() -> None:
    global _flusher_started
    with _pending_lock:
        if _flusher_started:
            return
        _flusher_started = True

    def loop() -> None:
        while True:
            time.sleep(FLUSH_INTERVAL)
            flush()

    threading.Thread(target=loop, name="mediaproxy-metrics", daemon=True).start()
    atexit.register(flush)


def flush() -> None:
    """Write the tallied updates into the metric values (the flusher thread calls it).

    Counters take the tally through their public ``inc(amount)``. A histogram has no public
    way to add a count to one bucket: the tallied bucket counts and sum go to the child's
    ``_buckets[i]`` and ``_sum`` values (prometheus_client internals, listed in
    tests/test_package_internals.py). Replaying each tallied request through the public
    ``observe()`` instead costs 11.7 µs per request in multiprocess mode (9.8 µs through the
    values: docs/performance.md), ~150 ms of CPU a second at 13,000 hits/s; this is one value
    write per bucket and second."""
    global _pending
    with _pending_lock:
        pending, _pending = _pending, {}
    for (metric, labels, part), amount in pending.items():
        child = _child(metric, *labels) if labels else metric
        if part is None:
            child.inc(amount)
        elif part < 0:
            child._sum.inc(amount)
        else:
            child._buckets[part].inc(amount)


def observe_request(template: str | None, method: str, status: int, seconds: float, length: int,
                    hit_bytes: int | None = None) -> None:
    """Count one request; with ``hit_bytes`` (the fast path's hits) its cache hit too, under the same lock."""
    keys = _request_keys.get((template, method, status))
    if keys is None:
        keys = _request_keys_for(template, method, status)
    req, lat, total, nbytes = keys
    bucket = (REQUEST_SECONDS, lat, bisect_left(LATENCY_BUCKETS, seconds))
    if not _flusher_started:
        _start_flusher()
    with _pending_lock:
        p = _pending
        p[req] = p.get(req, 0) + 1
        p[bucket] = p.get(bucket, 0) + 1
        p[total] = p.get(total, 0.0) + seconds
        if length:
            p[nbytes] = p.get(nbytes, 0) + length
        if hit_bytes is not None:
            p[_HIT] = p.get(_HIT, 0) + 1
            if hit_bytes:
                p[_HIT_BYTES] = p.get(_HIT_BYTES, 0) + hit_bytes


# The tally keys of a (route template, method, status): built once, not per request.
_request_keys: dict[tuple, tuple] = {}
_REQUEST_KEYS_MAX = 4096  # templates, methods and statuses are bounded sets; this only caps a surprise


def _request_keys_for(template: str | None, method: str, status: int) -> tuple:
    family = _families.get(template) or route_family(template)
    lat = (family,)
    keys = ((REQUESTS, (family, method if method in METHODS else "other", str(status)), None), lat,
            (REQUEST_SECONDS, lat, -1), (RESPONSE_BYTES, lat, None))
    if len(_request_keys) >= _REQUEST_KEYS_MAX:
        _request_keys.clear()
    _request_keys[(template, method, status)] = keys
    return keys


_HIT, _MISS = (RESULT_CACHE, ("hit",), None), (RESULT_CACHE, ("miss",), None)
_HIT_BYTES = (RESULT_CACHE_HIT_BYTES, (), None)


def cache_outcome(hit: bool, length: int = 0) -> None:
    with _pending_lock:
        p = _pending
        key = _HIT if hit else _MISS
        p[key] = p.get(key, 0) + 1
        if hit and length:
            p[_HIT_BYTES] = p.get(_HIT_BYTES, 0) + length


def transform_done(content_type: str, seconds: float) -> None:
    """One transform's time, labelled by the output format (``image/webp`` → ``webp``)."""
    fmt = _formats.get(content_type)
    if fmt is None:
        fmt = _formats.setdefault(content_type, content_type.split(";")[0].rpartition("/")[2] or "unknown")
    _child(TRANSFORM_SECONDS, fmt).observe(seconds)


_formats: dict[str, str] = {}


def refused(reason: str) -> None:
    _child(FETCH_REFUSALS, reason).inc()


def origin_failed(exc: BaseException) -> None:
    _child(ORIGIN_ERRORS, error_kind(exc)).inc()


def error_kind(exc: BaseException) -> str:
    status = getattr(exc, "status", 500)
    return {404: "not_found", 413: "too_large", 416: "range", 504: "timeout", 400: "bad_content", 403: "refused"}.get(
        status, "error"
    )


class InstrumentedStorage:
    """A storage backend with each call timed and each failure counted (the interface is unchanged)."""

    def __init__(self, inner, backend: str):
        self._inner = inner
        self.backend = backend

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def _call(self, op: str, fn: Callable, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            kind = error_kind(exc)
            _child(STORAGE_ERRORS, self.backend, op, kind).inc()
            if kind in ("error", "timeout"):  # the store misbehaves (a missing object is no news)
                # INFO: the request it fails says so in its one WARNING line (logs.FaultLog); this
                # line adds which call on which key, with the same request id
                where = "/".join(str(a) for a in args[:2])
                log.info("storage %s %s %s failed: %s", self.backend, op, where, getattr(exc, "reason", exc))
            raise
        finally:
            _child(STORAGE_SECONDS, self.backend, op).observe(time.perf_counter() - t0)

    def head(self, bucket, key):
        return self._call("head", self._inner.head, bucket, key)

    def get(self, bucket, key, max_bytes=None):
        return self._call("get", self._inner.get, bucket, key, max_bytes)

    def open(self, bucket, key, start=0, end=None):
        return self._call("open", self._inner.open, bucket, key, start, end)

    def put(self, bucket, key, data, content_type=None):
        return self._call("put", self._inner.put, bucket, key, data, content_type)

    def ping(self, bucket):
        return self._call("ping", self._inner.ping, bucket)


# ---- collection (the master's listener, or /metrics on a worker) ----


def _rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class ProcessCollector:
    """Gauges read at scrape time: each worker's RSS, and the result cache's size on disk."""

    def __init__(self, worker_pids: Callable[[], Iterable[int]], cache_dir: str | None):
        self.worker_pids = worker_pids
        self.cache_dir = cache_dir

    def collect(self):
        rss = GaugeMetricFamily(
            "mediaproxy_worker_resident_memory_bytes", "Resident memory of each gunicorn worker.", labels=["pid"]
        )
        for pid in sorted(self.worker_pids()):
            value = _rss_bytes(pid)
            if value is not None:
                rss.add_metric([str(pid)], value)
        yield rss
        if self.cache_dir:
            size = _cache_volume(self.cache_dir)
            if size is not None:
                yield GaugeMetricFamily(
                    "mediaproxy_result_cache_size_bytes", "Bytes held by the shared result cache.", value=size
                )


_volume_readers: dict[str, object] = {}
_volume_readers_lock = threading.Lock()


def _cache_volume(directory: str) -> int | None:
    """The cache's size on disk, by diskcache's own ``volume()``: one Cache object per directory
    and process, opened at the first scrape (opening one writes its settings: too much per scrape)
    and never where there is no cache yet (the master must not create one)."""
    import sqlite3

    import diskcache

    with _volume_readers_lock:
        reader = _volume_readers.get(directory)
        if reader is None:
            if not os.path.exists(os.path.join(directory, "cache.db")):
                return None
            try:
                reader = _volume_readers[directory] = diskcache.Cache(directory, timeout=1.0)
            except (sqlite3.Error, OSError, diskcache.Timeout):
                return None
    try:
        return int(reader.volume())  # type: ignore[attr-defined]
    except (sqlite3.Error, OSError, diskcache.Timeout):
        return None


def sibling_workers() -> list[int]:
    """The pids of this worker and its siblings (the master's children; Linux)."""
    ppid = os.getppid()
    try:
        with open(f"/proc/{ppid}/task/{ppid}/children") as f:
            pids = [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        pids = []
    return pids or [os.getpid()]


def registry(worker_pids: Callable[[], Iterable[int]], cache_dir: str | None) -> CollectorRegistry:
    """Every worker's metrics (multiprocess mode) plus the scrape-time gauges."""
    from prometheus_client import multiprocess

    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg)
    reg.register(ProcessCollector(worker_pids, cache_dir))
    return reg


def exposition(worker_pids: Callable[[], Iterable[int]], cache_dir: str | None) -> bytes:
    """The text format: all workers' metrics under gunicorn, else this process's."""
    from prometheus_client import REGISTRY, generate_latest

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest(registry(worker_pids, cache_dir))
    extra = CollectorRegistry()
    extra.register(ProcessCollector(worker_pids, cache_dir))
    return generate_latest(REGISTRY) + generate_latest(extra)


def serve(bind: str, worker_pids: Callable[[], Iterable[int]], cache_dir: str | None):
    """Start the metrics listener (a daemon thread of the calling process: the gunicorn master)."""
    from prometheus_client import start_http_server

    host, _, port = bind.rpartition(":")
    return start_http_server(int(port), host.strip("[]"), registry(worker_pids, cache_dir))

"""Content-addressed disk cache shared by every gunicorn worker (diskcache).

One entry is the exact bytes to send plus a small JSON header (content type,
ETag, Last-Modified) kept in diskcache's ``tag`` column, so a hit needs one
SQLite read and, for large values, one ``open()`` handed to sendfile.

Concurrent misses for one key are computed once across processes: the first
worker takes a lock entry (``Cache.add`` is atomic across processes), the
others poll for the result; a holder that dies leaves a lock that expires.

The cache never turns into an error: a full disk, a corrupt database or a
lock timeout is logged and the request is served without caching.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import diskcache
import orjson

log = logging.getLogger("mediaproxy.cache")

_FAILURES = (sqlite3.Error, OSError, diskcache.Timeout, ValueError, orjson.JSONDecodeError)


@dataclass(slots=True)
class Entry:
    """What is sent: the body (bytes, or an open file for large entries) and its headers."""

    content_type: str
    etag: str
    last_modified: float
    length: int
    body: bytes | None = None
    file: BinaryIO | None = None
    extra: dict | None = None

    def meta(self) -> bytes:
        return orjson.dumps(
            {"ct": self.content_type, "et": self.etag, "lm": self.last_modified, "n": self.length, "x": self.extra}
        )

    @classmethod
    def from_stored(cls, value: bytes | BinaryIO, tag: bytes) -> Entry:
        m = orjson.loads(tag)
        entry = cls(m["ct"], m["et"], m["lm"], m["n"], extra=m.get("x"))
        if isinstance(value, (bytes, bytearray, memoryview)):
            entry.body = bytes(value)
        else:
            entry.file = value
        return entry

    def read_all(self) -> bytes:
        if self.body is not None:
            return self.body
        assert self.file is not None
        with self.file:
            self.body = self.file.read()
        self.file = None
        return self.body

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class ResultCache:
    """The disk cache, or a no-op when ``directory`` is None (caching disabled)."""

    def __init__(self, directory: str | None, size_limit: int, lock_ttl: float = 60.0, timeout: float = 1.0):
        self.enabled = directory is not None
        self.lock_ttl = lock_ttl
        self._last_warning = 0.0
        self._cache: diskcache.Cache | None = None
        if directory is not None:
            try:
                self._cache = diskcache.Cache(
                    directory,
                    size_limit=size_limit,
                    # Least-recently-*stored*: a hit stays a pure read (LRU would write on every get).
                    eviction_policy="least-recently-stored",
                    timeout=timeout,
                    disk_min_file_size=64 * 1024,
                    cull_limit=10,
                    statistics=0,
                    sqlite_mmap_size=2**26,
                    # SQLite's page cache is per connection, and diskcache opens one per
                    # thread: its default (8,192 pages, 32 MiB) let each worker's heap creep
                    # up as the database grew. Reads come through the mmap above anyway.
                    sqlite_cache_size=256,
                )
            except _FAILURES as exc:
                self._warn("cache unavailable, serving without it", exc)
                self.enabled = False

    def _warn(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_warning > 60:
            self._last_warning = now
            log.warning("%s: %s: %s", what, type(exc).__name__, exc)

    def get(self, key: str) -> Entry | None:
        if self._cache is None:
            return None
        try:
            value, tag = self._cache.get(key, default=None, read=True, tag=True, retry=False)
            if value is None or tag is None:
                return None
            return Entry.from_stored(value, tag)
        except _FAILURES as exc:
            self._warn("cache read failed", exc)
            return None

    def put(self, key: str, entry: Entry) -> None:
        if self._cache is None or entry.body is None:
            return
        try:
            self._cache.set(key, entry.body, tag=entry.meta(), retry=False)
        except _FAILURES as exc:
            self._warn("cache write failed", exc)

    def get_or_compute(self, key: str, compute: Callable[[], Entry], wait: float) -> tuple[Entry, bool]:
        """The cached entry, or one computed by exactly one worker. Returns (entry, hit)."""
        entry = self.get(key)
        if entry is not None:
            return entry, True
        if self._cache is None:
            return compute(), False
        lock = "lock:" + key
        deadline = time.monotonic() + wait
        delay = 0.002
        while True:
            try:
                owner = self._cache.add(lock, os.getpid(), expire=self.lock_ttl, retry=False)
            except _FAILURES as exc:
                self._warn("cache lock failed", exc)
                return compute(), False
            if owner:
                try:
                    entry = self.get(key)  # someone finished between our miss and our lock
                    if entry is not None:
                        return entry, True
                    entry = compute()
                    self.put(key, entry)
                    return entry, False
                finally:
                    try:
                        self._cache.delete(lock, retry=False)
                    except _FAILURES as exc:
                        self._warn("cache unlock failed", exc)
            # Another worker is computing it: wait for its result.
            time.sleep(delay)
            delay = min(delay * 1.5, 0.05)
            entry = self.get(key)
            if entry is not None:
                return entry, True
            if time.monotonic() > deadline:
                return compute(), False

    def stats(self) -> dict[str, int]:
        if self._cache is None:
            return {"enabled": 0}
        try:
            return {"enabled": 1, "bytes": self._cache.volume(), "entries": len(self._cache)}
        except _FAILURES:
            return {"enabled": 1}

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()

    # -- the library: forgetting every result of one stored object -------------------------------

    def remember(self, source: str, rkey: str) -> None:
        """Note that ``rkey`` was rendered from ``source`` (``bucket/key``), for ``purge_source``."""
        if self._cache is None:
            return
        idx = "src:" + source
        try:
            with self._cache.transact(retry=False):
                keys = self._cache.get(idx, default=None, retry=False) or []
                if rkey not in keys:
                    self._cache.set(idx, [*keys, rkey][-256:], retry=False)
        except _FAILURES as exc:
            self._warn("cache index write failed", exc)

    def purge_source(self, bucket: str, key: str, *extra_keys: str) -> int:
        """Drop every entry noted for ``bucket/key`` (and ``extra_keys``); returns how many."""
        if self._cache is None:
            return 0
        idx = f"src:{bucket}/{key}"
        n = 0
        try:
            keys = self._cache.pop(idx, default=None, retry=False) or []
            for k in (*keys, *extra_keys):
                n += bool(self._cache.delete(k, retry=False))
        except _FAILURES as exc:
            self._warn("cache purge failed", exc)
        return n

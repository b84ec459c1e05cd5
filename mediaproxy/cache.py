"""Content-addressed disk cache shared by every gunicorn worker (diskcache).

One entry is a small JSON header (content type, ETag, Last-Modified) followed
by the exact bytes to send, stored as one value, so a hit needs one SQLite
read and, for large values, one ``open()`` handed to sendfile (from the
offset where the body starts). diskcache's ``tag`` column names the object
the entry was made from (``bucket/key``), indexed, so purging an object's
entries is ``Cache.evict(tag)``: an index lookup, not a scan of the cache.

Concurrent misses for one key are computed once across processes: the first
request takes the key's lock, the others wait for its result. The locks are
``flock``s on a fixed set of lock files (one per stripe of the key space,
opened for each compute and closed after it) plus a thread lock per stripe in
use, never rows of the database: a lock entry in
SQLite had to be written and deleted, and on a full disk the delete failed
and left the lock behind, so the next request for that key waited the whole
transform wait (10 s) for a result nobody was computing. An ``flock`` needs
no disk space, still works on a disk remounted read-only, and is released
the moment its holder finishes or dies (no expiry to wait out).

The cache never turns into an error: a full disk, a corrupt database or a
lock timeout is logged and the request is served without caching.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import diskcache
import orjson

from . import metrics

log = logging.getLogger("mediaproxy.cache")

_FAILURES = (sqlite3.Error, OSError, diskcache.Timeout, ValueError, orjson.JSONDecodeError)
# lock files, created as first used: unrelated keys share one with probability ~ concurrent misses /
# 65536. A miss that shares a stripe waits for the other compute; with 256 stripes, while the store
# stalled (each miss 2 s, to its read timeout) one miss in ~100 waited 2 s behind an unrelated key
# before its own 2 s (bench/resilience.py: 4.2 s against the 3 s target)
_STRIPES = 65536


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

    def header(self) -> bytes:
        """What a stored value starts with; the body follows it."""
        meta = orjson.dumps({"ct": self.content_type, "et": self.etag, "lm": self.last_modified, "n": self.length,
                             "x": self.extra})
        return b"".join((_FORMAT, len(meta).to_bytes(4, "big"), meta))

    @classmethod
    def from_stored(cls, value: bytes | BinaryIO) -> Entry | None:
        """The entry a stored value holds; None for a value of another format (an older release's
        entries: a miss, overwritten by the next store)."""
        if isinstance(value, (bytes, bytearray, memoryview)):
            head = bytes(value[:_HEAD])
            if head[:4] != _FORMAT:
                return None
            end = _HEAD + int.from_bytes(head[4:], "big")
            entry = cls._from_meta(bytes(value[_HEAD:end]))
            entry.body = bytes(value[end:])
            return entry
        # unbuffered from here: a buffered reader's read-ahead would leave the descriptor's offset
        # (where sendfile starts) past the body's start, and a seek inside its buffer moves no offset
        detach = getattr(value, "detach", None)
        if detach is not None:
            value = detach()
        try:
            head = value.read(_HEAD)
            if head[:4] != _FORMAT or len(head) < _HEAD:
                value.close()
                return None
            size = int.from_bytes(head[4:], "big")
            entry = cls._from_meta(value.read(size))
        except BaseException:
            value.close()
            raise
        entry.file = _BodyFile(value, _HEAD + size)  # type: ignore[assignment]
        return entry

    @classmethod
    def _from_meta(cls, meta: bytes) -> Entry:
        m = orjson.loads(meta)
        return cls(m["ct"], m["et"], m["lm"], m["n"], extra=m.get("x"))

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


_MIN_FILE_SIZE = 64 * 1024  # values from this size on are files (sendfile), smaller ones rows
_FORMAT = b"mpc1"  # a stored value starts with this, then the header's length (4 bytes), the header, the body
_HEAD = 8


class _BodyFile:
    """A stored value's file seen from where the body starts: ``seek`` is relative to the body,
    ``fileno`` is the file's own (gunicorn's sendfile starts at the current offset, which a seek
    here sets to the body's byte)."""

    __slots__ = ("_f", "_start")

    def __init__(self, f: BinaryIO, start: int):
        self._f = f
        self._start = start

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 0:
            return self._f.seek(self._start + pos) - self._start
        return self._f.seek(pos, whence) - self._start

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)

    def fileno(self) -> int:
        return self._f.fileno()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> _BodyFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


class _Pieces:
    """The header and the body read as one file (what ``Cache.set(..., read=True)`` reads from)."""

    __slots__ = ("_parts",)

    def __init__(self, *parts: bytes):
        self._parts = [memoryview(p) for p in parts if p]

    def read(self, n: int = -1) -> bytes:
        if not self._parts:
            return b""
        part = self._parts[0]
        if n < 0 or n >= len(part):
            self._parts.pop(0)
            return bytes(part)
        self._parts[0] = part[n:]
        return bytes(part[:n])


def source_tag(bucket: str, key: str) -> str:
    """The tag of every entry made from ``bucket``/``key`` (bucket names hold no ``/``)."""
    return f"{bucket}/{key}"


class ResultCache:
    """The disk cache, or a no-op when ``directory`` is None (caching disabled)."""

    def __init__(self, directory: str | None, size_limit: int, timeout: float = 1.0):
        self.enabled = directory is not None
        self._last_warning = 0.0
        self._cache: diskcache.Cache | None = None
        self._lock_dir = os.path.join(directory, "locks") if directory is not None else None
        # stripe -> [its thread lock, computes using it]: only stripes in use have one
        self._thread_locks: dict[int, list] = {}
        self._thread_locks_guard = threading.Lock()
        self._held = threading.local()  # stripes this thread holds (nested computes)
        if directory is not None:
            try:
                self._cache = diskcache.Cache(
                    directory,
                    size_limit=size_limit,
                    # Least-recently-*stored*: a hit stays a pure read (LRU would write on every get).
                    eviction_policy="least-recently-stored",
                    timeout=timeout,
                    disk_min_file_size=_MIN_FILE_SIZE,
                    cull_limit=10,
                    statistics=0,
                    sqlite_mmap_size=2**26,
                    # SQLite's page cache is per connection, and diskcache opens one per
                    # thread: its default (8,192 pages, 32 MiB) let each worker's heap creep
                    # up as the database grew. Reads come through the mmap above anyway.
                    sqlite_cache_size=256,
                    # an index on the tag column: purging an object's entries is an index lookup
                    tag_index=True,
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
            value = self._cache.get(key, default=None, read=True, retry=False)
            if value is None:
                return None
            return Entry.from_stored(value)
        except _FAILURES as exc:
            self._warn("cache read failed", exc)
            return None

    def put(self, key: str, entry: Entry, source: tuple[str, str] | None = None) -> None:
        """Store one entry; ``source`` (bucket, object key) is recorded with it for ``purge``."""
        if self._cache is None or entry.body is None:
            return
        try:
            tag = None if source is None else source_tag(*source)
            head, body = entry.header(), entry.body
            if len(head) + len(body) < _MIN_FILE_SIZE:  # kept in the database: one value
                self._cache.set(key, head + body, tag=tag, retry=False)
            else:  # a file: written from the pieces, never joined in memory (an original may be large)
                self._cache.set(key, _Pieces(head, body), read=True, tag=tag, retry=False)
            metrics.RESULT_CACHE_STORED_BYTES.inc(entry.length)
        except _FAILURES as exc:
            self._warn("cache write failed", exc)

    def purge(self, bucket: str, key_or_prefix: str, prefix: bool = False) -> int:
        """Delete every entry made from ``bucket``/``key_or_prefix`` (results and the cached
        original), or from every key under the prefix; returns how many.

        One object's entries are found through the tag index. A prefix has no index to use:
        every entry's tag is read (the command line's ``purge --prefix``, never a request).
        A fast-path worker may keep serving a purged small entry from its memory tier for up
        to 5 seconds."""
        if not prefix:
            return self.purge_keys([(bucket, key_or_prefix)])
        if self._cache is None:
            return 0
        wanted = source_tag(bucket, key_or_prefix)
        tags = set()
        for ckey in self._cache.iterkeys():
            try:
                value, tag = self._cache.get(ckey, read=True, tag=True, retry=True)
            except _FAILURES as exc:
                self._warn("cache purge failed", exc)
                continue
            if hasattr(value, "close"):
                value.close()
            if isinstance(tag, str) and tag.startswith(wanted):
                tags.add(tag)
        return self._evict(tags)

    def purge_keys(self, sources: Iterable[tuple[str, str]]) -> int:
        """``purge`` of several (bucket, key) objects (a media and its variants)."""
        return self._evict({source_tag(*s) for s in sources})

    def _evict(self, tags: Iterable[str]) -> int:
        if self._cache is None:
            return 0
        removed = 0
        for tag in tags:
            try:
                removed += self._cache.evict(tag, retry=True)
            except _FAILURES as exc:
                self._warn("cache purge failed", exc)
        return removed

    def _lock_fd(self, stripe: int) -> int | None:
        """A new fd of the stripe's lock file (created on first use), None if unusable. Each compute
        opens its own (flock is per open file, so no fd is ever shared with a forked child) and
        closes it when done: 65,536 stripes must not become 65,536 open files."""
        if self._lock_dir is None:
            return None
        path = os.path.join(self._lock_dir, f"{stripe:04x}")
        try:
            try:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # works on a read-only disk too
            except FileNotFoundError:
                os.makedirs(self._lock_dir, exist_ok=True)
                return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            self._warn("cache lock unavailable, misses are not coalesced", exc)
            return None

    @contextmanager
    def _thread_lock(self, stripe: int) -> Iterator[threading.Lock]:
        """The stripe's thread lock (not taken), kept while a compute uses it, then dropped."""
        with self._thread_locks_guard:
            slot = self._thread_locks.setdefault(stripe, [threading.Lock(), 0])
            slot[1] += 1
        try:
            yield slot[0]
        finally:
            with self._thread_locks_guard:
                slot[1] -= 1
                if not slot[1]:
                    del self._thread_locks[stripe]

    def get_or_compute(
        self, key: str, compute: Callable[[], Entry], wait: float, source: tuple[str, str] | None = None
    ) -> tuple[Entry, bool]:
        """The cached entry, or one computed by exactly one worker. Returns (entry, hit).

        Waiting for another request's result is bounded by ``wait``; past it
        (or when the lock cannot be used) the entry is computed here too.
        """
        entry = self.get(key)
        if entry is not None:
            return entry, True
        if self._cache is None:
            return compute(), False
        stripe = zlib.crc32(key.encode()) % _STRIPES
        held: set[int] = self._held.__dict__.setdefault("stripes", set())
        if stripe in held:  # a nested compute that hashes to a stripe this thread holds
            return self._compute_uncoalesced(key, compute, source), False
        deadline = time.monotonic() + wait
        with self._thread_lock(stripe) as tlock:
            if not tlock.acquire(timeout=max(wait, 0.0)):
                return self._compute_uncoalesced(key, compute, source), False
            try:
                return self._compute_locked(key, compute, source, stripe, deadline, held)
            finally:
                tlock.release()

    def _compute_locked(self, key: str, compute: Callable[[], Entry], source: tuple[str, str] | None,
                        stripe: int, deadline: float, held: set[int]) -> tuple[Entry, bool]:
        """With the stripe's thread lock: its file lock, then the entry (another worker's) or a compute."""
        held.add(stripe)
        fd = self._lock_fd(stripe)
        try:
            delay = 0.002
            while fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:  # another worker computes something of this stripe
                    pass
                except OSError as exc:
                    self._warn("cache lock failed", exc)
                    break
                entry = self.get(key)
                if entry is not None:
                    return entry, True
                if time.monotonic() > deadline:
                    return self._compute_uncoalesced(key, compute, source), False
                time.sleep(delay)
                delay = min(delay * 1.5, 0.05)
            entry = self.get(key)  # someone finished while we waited for the lock
            if entry is not None:
                return entry, True
            entry = compute()
            self.put(key, entry, source)
            return entry, False
        finally:
            held.discard(stripe)
            if fd is not None:
                os.close(fd)  # releases the flock too

    def _compute_uncoalesced(self, key: str, compute: Callable[[], Entry],
                             source: tuple[str, str] | None) -> Entry:
        """Compute without the stripe's lock (another request holds it, or this thread does, in a
        nested compute: an external original inside its variant's render), and still keep the
        result: it is as good as any, and the next request must not compute it again."""
        entry = compute()
        self.put(key, entry, source)
        return entry

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

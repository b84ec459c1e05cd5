"""Bulkheads and a circuit breaker: bounded concurrency for each kind of slow work,
and fast failure while a dependency is down.

A worker has a fixed number of threads. Anything that can be slow (a transform,
a storage read, a storage that stopped answering) gets its own bounded number
of them, waits a bounded time for one, and is refused (``503`` with
``Retry-After``) past that, so the threads that are left keep answering what
needs none of it: cache hits, ``304``s, ``/_health``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from . import metrics
from .errors import Overloaded, StorageUnavailable


class Bulkhead:
    """At most ``limit`` holders at once; a caller waits at most ``wait`` seconds for a place,
    and at most ``max_waiters`` callers wait at once (None: any number) — the rest are refused
    at once, so a burst queues briefly but waiting never takes every thread.

    ``with bulkhead.slot():`` holds a place for the block. Every miss takes three of these
    (the miss, the storage read, the transform): a free place is one lock round, without the
    Python-level semaphore, condition and generator a place cost before (docs/performance.md,
    "The miss path beside Falcon")."""

    def __init__(self, name: str, limit: int, wait: float, max_waiters: int | None = None):
        self.name = name
        self.limit = limit
        self.wait = wait
        self.max_waiters = max_waiters
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self.in_use = 0
        self.waiting = 0
        self.refused = 0

    def _has_room(self) -> bool:
        return self.in_use < self.limit

    def acquire(self) -> None:
        """Take a place or raise ``Overloaded``; pair with ``release()`` (or use ``slot()``)."""
        with self._lock:
            if self.in_use < self.limit:
                self.in_use += 1
                return
            if self.wait > 0 and (self.max_waiters is None or self.waiting < self.max_waiters):
                self.waiting += 1
                try:
                    room = self._freed.wait_for(self._has_room, timeout=self.wait)
                finally:
                    self.waiting -= 1
                if room:
                    self.in_use += 1
                    return
            self.refused += 1
        metrics.OVERLOADED.labels(self.name).inc()
        raise Overloaded(f"too many {self.name} in progress", headers={"Retry-After": "1"})

    def release(self) -> None:
        with self._lock:
            if self.in_use <= 0:
                raise ValueError(f"{self.name}: a place given back that was not taken")
            self.in_use -= 1
            if self.waiting:
                self._freed.notify()

    def slot(self) -> Bulkhead:
        """A place for the ``with`` block (the bulkhead is its own context manager: it keeps no
        state per holder, so one object serves every thread and nesting)."""
        return self

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def hold(self, stream):
        """Take a place for as long as ``stream`` (a response body) is open."""
        self.acquire()
        return HeldStream(stream, self.release)


class PerHolder:
    """At most ``limit`` places per holder (a client, an address) at once, refused at once past it:
    one holder cannot take every thread, whatever it sends. Per process."""

    def __init__(self, limit: int):
        self.limit = limit
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}

    def try_acquire(self, holder: str) -> bool:
        with self._lock:
            n = self._held.get(holder, 0)
            if n >= self.limit:
                return False
            self._held[holder] = n + 1
            return True

    def release(self, holder: str) -> None:
        with self._lock:
            n = self._held.get(holder, 0) - 1
            if n > 0:
                self._held[holder] = n
            else:
                self._held.pop(holder, None)

    def held(self, holder: str) -> int:
        with self._lock:
            return self._held.get(holder, 0)


class HeldStream:
    """A response body that gives its bulkhead place back when closed (once; or when collected).

    ``fileno`` is passed through only if the inner stream has one, so a file
    still goes to sendfile."""

    def __init__(self, inner, release: Callable[[], None]):
        self._inner = inner
        self._release: Callable[[], None] | None = release

    def read(self, n: int = -1) -> bytes:
        return self._inner.read(n)

    def __getattr__(self, name: str):
        if name == "fileno":
            return self._inner.fileno
        raise AttributeError(name)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()

    def __del__(self) -> None:
        if self._release is not None:  # never closed (an error after the body was set): no leak
            self._release()
            self._release = None


class Breaker:
    """A circuit breaker over consecutive failures, per process.

    closed: calls go through; ``threshold`` failures in a row open it.
    open: calls are refused at once (``StorageUnavailable``, 503 with the
    seconds left as ``Retry-After``) for ``cooldown`` seconds.
    half-open: after the cooldown one call goes through as a probe (the others
    are still refused); its success closes the breaker, its failure opens it
    for another cooldown. So recovery needs no restart and costs at most one
    probe's wait plus one cooldown.
    """

    def __init__(self, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic):
        self.threshold = threshold  # 0: never opens
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until = 0.0
        self._probing = False
        self.opened = 0  # times it opened, for tests and logs

    @property
    def state(self) -> str:
        with self._lock:
            if self._failures < self.threshold or not self.threshold:
                return "closed"
            return "half-open" if self._probing or self._clock() >= self._open_until else "open"

    def before(self) -> bool:
        """Admit one call or raise; True when the call is the probe of a half-open breaker."""
        if not self.threshold:
            return False
        with self._lock:
            if self._failures < self.threshold:
                return False
            now = self._clock()
            if now >= self._open_until and not self._probing:
                self._probing = True
                return True
            left = max(self._open_until - now, 0.0) if not self._probing else self.cooldown
        raise StorageUnavailable(headers={"Retry-After": str(max(1, math.ceil(left)))})

    def success(self, probe: bool) -> None:
        with self._lock:
            self._failures = 0
            if probe:
                self._probing = False

    def failure(self, probe: bool) -> bool:
        """Count one failure; True when this one opened the breaker."""
        with self._lock:
            if probe:
                self._probing = False
            self._failures += 1
            if self.threshold and (probe or self._failures == self.threshold):
                self._open_until = self._clock() + self.cooldown
                self.opened += 1
                return True
            return False

    def abandon(self, probe: bool) -> None:
        """The call ended without telling whether the store is healthy (e.g. refused by a bulkhead)."""
        if probe:
            with self._lock:
                self._probing = False

"""Storage behind a bulkhead and a circuit breaker, with at most one retry.

Wraps either backend (``Context.build`` puts it around the store). Each call (``head``,
``get``, ``open`` up to the first byte, ``put``) takes a storage slot (at most
``MEDIAPROXY_MAX_CONCURRENT_STORAGE`` per worker, waiting at most
``MEDIAPROXY_STORAGE_WAIT`` seconds, else ``503``); a failure of the store
itself counts towards the breaker: a fast one (refused, reset, 5xx:
``UpstreamError``) after one immediate retry, a timeout (``UpstreamTimeout``)
at once, since it has already spent the time a retry would need. Answers that come from
a healthy store (``404``, ``416``, ``413``) count as successes. While the
breaker is open every call is refused at once with ``503`` and
``Retry-After``; cache hits never reach storage and are served throughout.
Reading a stream after ``open`` returned is the caller's and is not counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import BinaryIO, TypeVar

from ..bulkhead import Breaker, Bulkhead
from ..errors import Overloaded, UpstreamError, UpstreamTimeout
from . import ObjectInfo, Storage

log = logging.getLogger("mediaproxy.storage")
T = TypeVar("T")
_STORE_FAULTS = (UpstreamError, UpstreamTimeout)


class GuardedStorage:
    def __init__(self, inner: Storage, bulkhead: Bulkhead, breaker: Breaker):
        self.inner = inner
        self.bulkhead = bulkhead
        self.breaker = breaker

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        probe = self.breaker.before()
        try:
            with self.bulkhead.slot():
                try:
                    result = fn()
                except UpstreamError as exc:
                    if probe:
                        raise  # a probe is not retried: the breaker decides
                    log.info("storage %s failed (%s), retrying once", what, exc.reason)
                    result = fn()
        except _STORE_FAULTS as exc:
            if self.breaker.failure(probe):
                log.warning(
                    "storage circuit open after %s: misses answer 503 for %.1f s until a probe succeeds",
                    "a failed probe" if probe else f"{self.breaker.threshold} failures in a row",
                    self.breaker.cooldown,
                )
            raise exc from None
        except Overloaded:
            self.breaker.abandon(probe)  # refused by the bulkhead: says nothing about the store
            raise
        except Exception:
            self.breaker.success(probe)  # 404, 416, 413...: the store answered
            raise
        self.breaker.success(probe)
        if probe:
            log.warning("storage circuit closed: a probe succeeded")
        return result

    def head(self, bucket: str, key: str) -> ObjectInfo:
        return self._call("head", lambda: self.inner.head(bucket, key))

    def get(self, bucket: str, key: str, max_bytes: int | None = None) -> tuple[ObjectInfo, bytes]:
        return self._call("get", lambda: self.inner.get(bucket, key, max_bytes))

    def open(self, bucket: str, key: str, start: int = 0, end: int | None = None) -> tuple[ObjectInfo, BinaryIO]:
        return self._call("open", lambda: self.inner.open(bucket, key, start, end))

    def put(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> None:
        return self._call("put", lambda: self.inner.put(bucket, key, data, content_type))

    def ping(self, bucket: str) -> None:
        """Readiness asks the store itself, past the breaker and the bulkhead: it reports the store's state."""
        ping = getattr(self.inner, "ping", None)
        if ping is not None:
            ping(bucket)

    def __getattr__(self, name: str):
        # The rest of the interface (the library's writes, deletes, listings, presigning) is
        # not on the miss path this guard protects: straight to the store.
        return getattr(self.inner, name)

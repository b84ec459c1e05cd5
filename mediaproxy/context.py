"""The per-process services every resource shares, built once from Settings."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from . import metrics
from .bulkhead import Breaker, Bulkhead, HeldStream
from .cache import ResultCache
from .media.pipeline import Limits
from .settings import Settings
from .storage import Storage, make_storage
from .storage.guard import GuardedStorage


@dataclass
class Context:
    settings: Settings
    storage: Storage
    cache: ResultCache
    limits: Limits
    transforms: Bulkhead = field(repr=False, default=None)  # type: ignore[assignment]
    breaker: Breaker = field(repr=False, default=None)  # type: ignore[assignment]
    misses: Bulkhead = field(repr=False, default=None)  # type: ignore[assignment]
    streams: Bulkhead = field(repr=False, default=None)  # type: ignore[assignment]
    # what /_ready asks besides storage: (name, call that raises when that part is not usable)
    ready_checks: list[tuple[str, Callable[[], None]]] = field(repr=False, default_factory=list)
    _held: threading.local = field(repr=False, default_factory=threading.local)

    @classmethod
    def build(cls, settings: Settings, storage: Storage | None = None) -> Context:
        breaker = Breaker(settings.storage_breaker_failures, settings.storage_breaker_cooldown)
        storage_slots = Bulkhead("storage reads", settings.max_concurrent_storage, settings.storage_wait)
        return cls(
            settings=settings,
            storage=GuardedStorage(storage or make_storage(settings), storage_slots, breaker),
            cache=ResultCache(settings.cache_dir, settings.cache_size),
            limits=Limits(settings.max_pixels, settings.max_frames, settings.max_animation_pixels),
            transforms=Bulkhead("transforms", settings.max_concurrent_transforms, settings.transform_wait),
            breaker=breaker,
            # A burst past this share queues (at most max_queued_misses of them, for at most
            # the transform wait); past that a miss is answered 503 at once, so the threads
            # left over (gunicorn.conf.py: threads > misses + queued + streams) stay free for hits.
            misses=Bulkhead("misses", settings.max_concurrent_misses, settings.transform_wait,
                            settings.max_queued_misses),
            # Stored bodies streamed to clients (attachments, themes, Lottie): a thread
            # each for as long as the client reads, so a bounded share too.
            streams=Bulkhead("streams", settings.max_concurrent_streams, 0.0),
        )

    def miss_slot(self) -> MissSlot:
        """Work that needs storage or a transform (a miss, a stream, an internal call) holds
        one of ``max_concurrent_misses`` places per worker; nested calls share the outer one."""
        return MissSlot(self)

    def open_stream(self, bucket: str, key: str, start: int, end: int):
        """A stored object's bytes as a response body, holding a stream place until closed."""
        self.streams.acquire()
        try:
            _, body = self.storage.open(bucket, key, start, end)
        except BaseException:
            self.streams.release()
            raise
        return HeldStream(body, self.streams.release)

    def transform_slot(self) -> TransformSlot:
        """Bound the CPU-heavy work a worker takes on; past the wait, shed load (503)."""
        return TransformSlot(self.transforms)


class MissSlot:
    """``Context.miss_slot``: a place among the misses, or the one this thread already holds."""

    __slots__ = ("ctx", "outer")

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.outer = False

    def __enter__(self) -> None:
        held = self.ctx._held
        if getattr(held, "miss", False):
            return
        self.ctx.misses.acquire()
        held.miss = self.outer = True

    def __exit__(self, *exc) -> None:
        if self.outer:
            self.ctx._held.miss = self.outer = False
            self.ctx.misses.release()


class TransformSlot:
    """``Context.transform_slot``: a transform place, counted in the in-flight gauge while held."""

    __slots__ = ("transforms",)

    def __init__(self, transforms: Bulkhead):
        self.transforms = transforms

    def __enter__(self) -> None:
        self.transforms.acquire()
        metrics.TRANSFORMS_IN_FLIGHT.inc()

    def __exit__(self, *exc) -> None:
        metrics.TRANSFORMS_IN_FLIGHT.dec()
        self.transforms.release()

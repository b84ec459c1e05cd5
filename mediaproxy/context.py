"""The per-process services every resource shares, built once from Settings."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import metrics
from .cache import ResultCache
from .errors import Overloaded
from .media.pipeline import Limits
from .settings import Settings
from .storage import Storage, make_storage


@dataclass
class Context:
    settings: Settings
    storage: Storage
    cache: ResultCache
    limits: Limits
    _gate: threading.BoundedSemaphore = field(repr=False, default=None)  # type: ignore[assignment]

    @classmethod
    def build(cls, settings: Settings, storage: Storage | None = None) -> Context:
        ctx = cls(
            settings=settings,
            storage=storage or make_storage(settings),
            cache=ResultCache(settings.cache_dir, settings.cache_size),
            limits=Limits(settings.max_pixels, settings.max_frames, settings.max_animation_pixels),
        )
        ctx._gate = threading.BoundedSemaphore(settings.max_concurrent_transforms)
        return ctx

    @contextmanager
    def transform_slot(self) -> Iterator[None]:
        """Bound the CPU-heavy work a worker takes on; past the wait, shed load (503)."""
        if not self._gate.acquire(timeout=self.settings.transform_wait):
            metrics.OVERLOADED.inc()
            raise Overloaded("too many transforms in progress", headers={"Retry-After": "1"})
        metrics.TRANSFORMS_IN_FLIGHT.inc()
        try:
            yield
        finally:
            metrics.TRANSFORMS_IN_FLIGHT.dec()
            self._gate.release()

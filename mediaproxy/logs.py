"""Log hygiene: an expected fault is one WARNING line with the request's context, and
libvips' own warnings are folded into such a line instead of printed one per tile.

libvips reports a corrupt input as a warning per tile it fails to decode ("VIPS:
error in tile 0 x 40", thousands for one large image), from its own worker
threads, so they cannot be tied to the request that caused them. They are
counted instead (the first message kept) and the count is added to the next
fault line this process writes ("libvips: 1,204 warnings, first: ...").
"""

from __future__ import annotations

import logging
import threading

import falcon

log = logging.getLogger("mediaproxy")

# 4xx answers that are faults of the media itself (worth a line), not of the URL.
_MEDIA_FAULTS = ("undecodable", "unsupported image", "unsupported media", "source too large", "over the")


class VipsWarnings(logging.Filter):
    """Swallows libvips' warnings from the ``pyvips`` logger, counting them."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._count = 0
        self._first = ""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING:
            return True  # errors and worse stay as they are
        with self._lock:
            self._count += 1
            if not self._first:
                self._first = record.getMessage()[:160]
        return False

    def take(self) -> str:
        """``"; libvips: N warnings, first: ..."`` for what was counted since the last call, or ""."""
        with self._lock:
            count, first = self._count, self._first
            self._count, self._first = 0, ""
        if not count:
            return ""
        return f"; libvips: {count:,} warning{'s' if count != 1 else ''}, first: {first!r}"


vips_warnings = VipsWarnings()


def install() -> None:
    """Fold libvips' warnings (idempotent)."""
    logger = logging.getLogger("pyvips")
    if vips_warnings not in logger.filters:
        logger.addFilter(vips_warnings)


def fault(method: str, path: str, what: str) -> None:
    """One WARNING line for one expected fault of one request."""
    log.warning("%s %s: %s%s", method, path, what, vips_warnings.take())


class FaultLog:
    """Falcon middleware: a 5xx, or a 4xx the media caused, is one WARNING line.

    An unexpected exception is logged by app.py's handler (with its stack trace,
    as a bug should be) and marks the request so it is not logged twice.
    """

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        status = int(resp.status_code)
        if status < 400 or req.context.get("logged"):
            return
        reason = (resp.data or b"").decode("utf-8", "replace").strip()[:200]
        if status >= 500 or any(f in reason for f in _MEDIA_FAULTS):
            fault(req.method, req.path, f"{status} {reason}")

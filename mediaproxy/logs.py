"""Logging: one JSON object per line, each carrying the id of the request it belongs
to, and log hygiene: an expected fault is one WARNING line with the request's
context, and libvips' own warnings are folded into such a line instead of
printed one per tile.

The request id lives in a context variable set by the outermost WSGI layer
(``mediaproxy/observe.py``) for the duration of the request, so any line a
module logs while serving it (a cache warning, an unhandled error) names the
request without the id being passed around.

libvips reports a corrupt input as a warning per tile it fails to decode ("VIPS:
error in tile 0 x 40", thousands for one large image), from its own worker
threads, so they cannot be tied to the request that caused them. They are
counted instead (the first message kept) and the count is added to the next
fault line this process writes ("libvips: 1,204 warnings, first: ...").
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from contextvars import ContextVar

import falcon
import orjson

REQUEST_ID: ContextVar[str | None] = ContextVar("mediaproxy_request_id", default=None)


def utc_timestamp(ts: float) -> str:
    """ISO 8601 UTC with milliseconds: ``2026-01-31T12:34:56.789Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "request_id"?, "exc"?}``; an access
    record (``record.access``, a dict) is written as that dict after ``ts``."""

    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        if access is not None:
            return orjson.dumps({"ts": utc_timestamp(record.created), **access}).decode()
        out: dict[str, object] = {
            "ts": utc_timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = REQUEST_ID.get()
        if rid is not None:
            out["request_id"] = rid
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure(level: str = "info") -> None:
    """Send every log line to stderr as JSON (called once per worker by mediaproxy.wsgi)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # MEDIAPROXY_ACCESS_LOG alone decides about access lines, whatever the level.
    logging.getLogger("mediaproxy.access").setLevel(logging.INFO)
    # Alembic narrates every migration step (and its plugins) at INFO: keep its warnings only.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))

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

"""Logging: one JSON object per line, each carrying the id of the request it belongs to.

The request id lives in a context variable set by the outermost WSGI layer
(``mediaproxy/observe.py``) for the duration of the request, so any line a
module logs while serving it (a cache warning, an unhandled error) names the
request without the id being passed around.
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar

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

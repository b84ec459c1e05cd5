"""One exception hierarchy; app.py maps it to status codes in one place. What any other exception
answers is here too (``unexpected_answer``), for app.py's handler and the image routes' fast path."""

from __future__ import annotations

import logging

log = logging.getLogger("mediaproxy")


class MediaError(Exception):
    """Base error: carries an HTTP status and a short plain-text reason."""

    status = 500
    reason = "processing error"

    def __init__(self, reason: str | None = None, *, headers: dict[str, str] | None = None):
        super().__init__(reason or self.reason)
        if reason:
            self.reason = reason
        self.headers = headers or {}


class BadRequest(MediaError):
    status = 400
    reason = "bad request"


class Unauthorized(MediaError):
    status = 401
    reason = "unauthorized"


class Forbidden(MediaError):
    status = 403
    reason = "forbidden"


class NotFound(MediaError):
    status = 404
    reason = "not found"


class Conflict(MediaError):
    status = 409
    reason = "conflict"


class TooLarge(MediaError):
    status = 413
    reason = "source too large"


class UnsupportedType(MediaError):
    status = 415
    reason = "unsupported media type"


class RangeNotSatisfiable(MediaError):
    status = 416
    reason = "range not satisfiable"


class TooManyRequests(MediaError):
    status = 429
    reason = "too many requests"


class ProcessingError(MediaError):
    status = 500
    reason = "processing error"


class UpstreamError(MediaError):
    """Storage or external origin failed (unreachable, 5xx, protocol error)."""

    status = 502
    reason = "upstream failure"


class Overloaded(MediaError):
    status = 503
    reason = "overloaded"


class StorageUnavailable(Overloaded):
    """Storage failed repeatedly: refused at once until a probe succeeds (the circuit breaker)."""

    reason = "storage unavailable"


class UpstreamTimeout(MediaError):
    status = 504
    reason = "upstream timeout"


class Degraded(Exception):
    """A readiness check's part works in a reduced way (e.g. jobs wait in the outbox): ready, said so."""


class ConfigError(Exception):
    """Invalid settings at start-up; the message is meant for the operator."""


def unexpected_answer(method: str, path: str, exc: BaseException) -> tuple[int, str, bool]:
    """(status, reason, close the connection) for an exception that is no MediaError, logged once.

    Storage and origin timeouts arrive as MediaError (504); a bare socket timeout is the client's
    request body stalling past MEDIAPROXY_SEND_TIMEOUT: its fault, one line, no trace, and the
    connection closed (what is left of the body must not be read as the next request). Anything
    else is a bug: 500, and its stack trace is the line. app.py's Falcon handler and the image
    routes' fast path (fastpath.py) answer with this."""
    if isinstance(exc, TimeoutError):
        log.warning("%s %s: 408 the request body stalled", method, path)
        return 408, "request body timed out", True
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return 500, "internal error", False

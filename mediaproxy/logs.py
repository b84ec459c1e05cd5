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
import os
import sys
import threading
import time
from contextvars import ContextVar

import falcon
import orjson

REQUEST_ID: ContextVar[str | None] = ContextVar("mediaproxy_request_id", default=None)

_second: tuple[int, str] = (-1, "")


def utc_timestamp(ts: float) -> str:
    """ISO 8601 UTC with milliseconds: ``2026-01-31T12:34:56.789Z``."""
    global _second
    whole = int(ts)
    sec, text = _second
    if sec != whole:  # strftime once a second, not once a line
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, text)
    return f"{text}.{int(ts * 1000) % 1000:03d}Z"


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


class JsonLines(logging.Handler):
    """The process's log stream: JSON lines, written in batches when ``interval`` > 0.

    Lines wait in memory and a background thread writes them every ``interval``
    seconds (or as soon as ``batch_bytes`` are waiting); a WARNING or worse is
    written at once, with everything before it, so the order of lines is kept.
    What is left is written at exit (``logging.shutdown`` flushes every handler).
    A cache hit takes ~100 µs of a worker; a write per access line is a system
    call that also hands the GIL to another thread, and the logging module's
    record for it cost more than the hit itself (docs/performance.md, "Cache
    hits"). nginx buffers its access log the same way (``buffer=``, ``flush=``).
    A worker killed with SIGKILL loses at most ``interval`` seconds of lines.
    """

    def __init__(self, stream, interval: float = 0.0, batch_bytes: int = 64 * 1024):
        super().__init__()
        self.stream = stream
        self.interval = interval
        self.batch_bytes = batch_bytes
        self._lines: list[bytes] = []
        self._size = 0
        self._take = threading.Lock()  # the waiting lines
        self._write = threading.Lock()  # one writer at a time, so batches keep their order
        self._flusher_running = False  # in this process (a forked child starts its own)
        self._wake = threading.Event()  # a full batch: the flusher writes it now
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        self._flusher_running = False
        self._lines, self._size = [], 0  # the parent's lines are the parent's to write
        self._take, self._write = threading.Lock(), threading.Lock()
        self._wake = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record).encode() + b"\n"
        except Exception:
            self.handleError(record)
            return
        self.write_line(line, urgent=record.levelno >= logging.WARNING)

    def write_line(self, line: bytes, urgent: bool = False) -> None:
        """One encoded line (ending in a newline), written now or with the next batch."""
        if self.interval <= 0:
            urgent = True
        elif not self._flusher_running:
            self._start_flusher()
        with self._take:
            self._lines.append(line)
            self._size += len(line)
            size = self._size
        if urgent:
            self.flush()
        elif size >= self.batch_bytes:
            # A full batch is the flusher thread's to write: the caller may be the worker's event
            # loop (a hit answered there), which must not wait on the stream. Only a stream that
            # keeps the flusher from catching up (4 batches waiting) makes the callers write.
            if self._flusher_running and size < 4 * self.batch_bytes:
                self._wake.set()
            else:
                self.flush()

    def flush(self) -> None:
        with self._write:
            with self._take:
                if not self._lines:
                    return
                lines, self._lines, self._size = self._lines, [], 0
            try:
                self.stream.write(b"".join(lines).decode("utf-8", "replace"))
                self.stream.flush()
            except (OSError, ValueError):  # a closed or broken stream: nothing else can be told
                pass

    def _start_flusher(self) -> None:
        with self._take:
            if self._flusher_running:
                return
            self._flusher_running = True

        def loop() -> None:
            while True:
                self._wake.wait(self.interval)
                self._wake.clear()
                self.flush()

        threading.Thread(target=loop, name="mediaproxy-log", daemon=True).start()


_handler: JsonLines | None = None
_root = logging.getLogger()
access_logger = logging.getLogger("mediaproxy.access")
_mediaproxy_logger = logging.getLogger("mediaproxy")


def configure(level: str = "info", batch_interval: float = 0.0) -> None:
    """Send every log line to stderr as JSON (called once per worker by mediaproxy.wsgi, in
    batches every ``batch_interval`` seconds; the command line writes each line at once)."""
    global _handler
    handler = JsonLines(sys.stderr, batch_interval)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    _handler = handler
    # MEDIAPROXY_ACCESS_LOG alone decides about access lines, whatever the level.
    access_logger.setLevel(logging.INFO)
    # Alembic narrates every migration step (and its plugins) at INFO: keep its warnings only.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))


def access_line(fields: dict) -> None:
    """One access-log line on logger ``mediaproxy.access``: ``fields`` (``"ts"`` first, from ``utc_timestamp``).

    When logging is as ``configure`` left it (the JSON handler alone, nothing added
    to the access logger), the line is encoded and queued directly: the LogRecord,
    caller lookup and handler dispatch the logging module makes cost ~3x the line.
    Any other set-up (a handler or filter added, logging disabled) gets a record."""
    h = _handler
    if (h is not None and not access_logger.handlers and not access_logger.filters and access_logger.propagate
            and not _mediaproxy_logger.handlers and not _root.filters and len(_root.handlers) == 1
            and _root.handlers[0] is h and access_logger.isEnabledFor(logging.INFO)):
        h.write_line(orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE))
    else:
        access_logger.info("access", extra={"access": {k: v for k, v in fields.items() if k != "ts"}})

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
        error_answered(req.method, req.path, status, (resp.data or b"").decode("utf-8", "replace"))


def error_answered(method: str, path: str, status: int, body: str) -> None:
    """The WARNING line of an error answer that is worth one: a 5xx, or a 4xx the media caused."""
    reason = body.strip()[:200]
    if status >= 500 or any(f in reason for f in _MEDIA_FAULTS):
        fault(method, path, f"{status} {reason}")

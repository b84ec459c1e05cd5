"""Request bodies: a small one is read by the event loop before the request takes a thread; every
body must keep a minimum rate and a deadline; a body still on the network when the response
starts makes that response ``Connection: close`` (docs/resilience.md "Slow clients get no thread").

A body of at most ``small_body_max`` bytes (a login, JSON, a small form) is read by the event
loop, so the request holds a thread only with its body in memory (the application is told so:
``BODY_IN_MEMORY`` in the WSGI environ). A larger one (an upload) is read by the thread once the
application has checked who sends it (which also limits the uploads arriving per client), each
``recv`` waiting only until the body would fall under the minimum rate (``PacedUnreader``).
"""

from __future__ import annotations

import re
import selectors
import threading
import time
from functools import partial

from gunicorn.http.unreader import SocketUnreader

from .errors import error_page
from .headers import header_end
from .loop import recv_nowait, unregister

_FRAMING_FIELDS = re.compile(rb"content-length|transfer-encoding|expect", re.IGNORECASE)
_BODY_SCAN_EVERY = 0.25  # seconds between two checks of the bodies the event loop is reading
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# WSGI environ keys the worker sets for the application (mediaproxy/http.py reads them):
# True when the whole request body was read before the request took a thread (so the
# application reads it from memory), False when the rest is still on the network.
BODY_IN_MEMORY = "mediaproxy.body_in_memory"
SMALL_BODY_MAX = "mediaproxy.small_body_max"  # the worker's limit for bodies read by the event loop


def body_framing(block: bytes | bytearray) -> tuple[int | None, bool, bool] | None:
    """(Content-Length or None, chunked, Expect: 100-continue) of a request's header block, or
    None when the framing is unclear (the parser then refuses the request without reading a body).
    Only used to decide how long the event loop waits; gunicorn's parser stays the judge."""
    if _FRAMING_FIELDS.search(block) is None:  # most requests (a GET): no field to look at
        return None, False, False
    length: int | None = None
    chunked = expect = False
    for line in bytes(block).split(b"\n")[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            if length is not None or not value.isdigit() or len(value) > 18:
                return None
            length = int(value)
        elif name == b"transfer-encoding":
            if chunked or not value.endswith(b"chunked"):
                return None
            chunked = True
        elif name == b"expect":
            expect = value == b"100-continue"
    if chunked and length is not None:
        return None
    return length, chunked, expect


def chunked_end(buf: bytes | bytearray, pos: int) -> tuple[int | None, int]:
    """Scan a chunked body from ``pos`` (the start of a chunk-size line): (the offset just past
    the body's end or None when it is not all here or is malformed, where to resume scanning)."""
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None, pos
        size_field = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
        try:
            size = int(size_field, 16) if size_field else -1
        except ValueError:
            size = -1
        if size < 0:
            return None, -1  # malformed: the parser will say so
        if size == 0:
            at = eol + 2
            while True:  # trailer fields, up to the blank line
                end = buf.find(b"\r\n", at)
                if end < 0:
                    return None, pos
                if end == at:
                    return end + 2, pos
                at = end + 2
        nxt = eol + 2 + size + 2
        if nxt > len(buf):
            return None, pos
        pos = nxt


class BodyPace:
    """A request body must arrive at ``min_rate`` bytes/s on average once ``grace`` seconds have
    passed, and be complete within ``timeout`` seconds, counted from when its headers ended."""

    __slots__ = ("got", "grace", "min_rate", "start", "timeout")

    def __init__(self, start: float, min_rate: float, grace: float, timeout: float, got: int = 0):
        self.start, self.min_rate, self.grace, self.timeout, self.got = start, min_rate, grace, timeout, got

    def due(self) -> float:
        """The moment this body is too slow unless more of it arrives."""
        due = self.start + self.timeout if self.timeout > 0 else float("inf")
        if self.min_rate > 0:
            due = min(due, self.start + self.grace + self.got / self.min_rate)
        return due

    def why(self, now: float) -> str:
        elapsed = now - self.start
        if self.timeout > 0 and elapsed >= self.timeout:
            return f"not complete after {self.timeout:g} s"
        return f"{self.got} bytes in {elapsed:.0f} s, under {self.min_rate:g} bytes/s"


class BodyTooSlow(TimeoutError):
    """The request body arrives slower than MEDIAPROXY_BODY_MIN_RATE or past MEDIAPROXY_BODY_TIMEOUT
    (a TimeoutError: the application answers 408 and closes the connection)."""


class PacedUnreader(SocketUnreader):
    """gunicorn's socket reader, with a pace for the body a thread reads (``pace``: None while no
    body is read): every ``recv`` waits at most until the body would be too slow, then
    ``BodyTooSlow``. A client that sends a byte now and then no longer holds a thread."""

    pace: BodyPace | None = None

    def chunk(self, size_hint=None):
        pace = self.pace
        if pace is None:
            return super().chunk(size_hint)
        now = time.monotonic()
        # Past due, what the socket already holds still counts (the thread may have been busy
        # elsewhere, writing a part to storage, while the client kept sending): one look, no wait.
        wait = max(0.0, pace.due() - now)
        prior = self.sock.gettimeout()
        self.sock.settimeout(wait)
        try:
            data = super().chunk(size_hint)
        except (TimeoutError, BlockingIOError):
            raise BodyTooSlow(f"request body too slow: {pace.why(time.monotonic())}") from None
        finally:
            self.sock.settimeout(prior)
        pace.got += len(data)
        return data


class BodyInput:
    """``wsgi.input`` for a body still on the network: it knows whether the application read all
    of it. If not when the response starts, the response says ``Connection: close`` (what is left
    would otherwise have to be read, by a thread, before the next request)."""

    def __init__(self, body, length: int | None):
        self._body = body
        self._left = length  # None: chunked, ends with an empty read
        self.done = length == 0

    def _count(self, data: bytes, size) -> bytes:
        if self._left is not None:
            self._left -= len(data)
            self.done = self._left <= 0
        elif not data and size != 0:
            self.done = True
        return data

    def read(self, size=None) -> bytes:
        return self._count(self._body.read(size), size)

    def readline(self, size=None) -> bytes:
        return self._count(self._body.readline(size), size)

    def readlines(self, hint=None) -> list[bytes]:
        lines = self._body.readlines(hint)
        for line in lines:
            self._count(line, None)
        self._count(b"", None)
        return lines

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class RequestBodies:
    """Worker part, after the header part (``_headers_done``): small bodies read by the event
    loop, the pace of every body, and what the application is told about its body.

    ``sweep_bodies`` is called by the worker's periodic sweep."""

    small_body_max = 64 * 1024  # MEDIAPROXY_SMALL_BODY_MAX: bodies the event loop reads before a thread
    body_min_rate = 10240.0  # MEDIAPROXY_BODY_MIN_RATE (bytes/s, after the grace)
    body_grace = 10.0  # MEDIAPROXY_BODY_GRACE
    body_timeout = 600.0  # MEDIAPROXY_BODY_TIMEOUT: the whole body, however fast

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bodies: dict[int, object] = {}  # small request bodies the event loop is reading
        self._bodies_checked = 0.0
        self._body_tls = threading.local()  # (in memory, Content-Length) of a thread's request

    # --- on the event loop: small bodies -------------------------------------------------

    def _headers_done(self, conn) -> None:
        """A body of at most ``small_body_max`` bytes is read here, so the request holds a thread
        only with its body in memory; a larger one (an upload) is read by the thread, paced
        (``PacedUnreader``), once the application has checked who sends it."""
        head = conn.head
        end = header_end(head)
        framing = body_framing(head[:end]) if end >= 0 else None
        conn.body_whole = False  # a chunked body in memory: only once found whole (_body_here)
        if framing is None:
            return self._to_thread(conn)  # no blank line within HEADERS_MAX, or unclear framing
        length, chunked, expect = framing
        if not chunked and (not length or length > self.small_body_max):
            return self._to_thread(conn)
        conn.body_at = end
        conn.body_need = None if chunked else end + length
        conn.chunk_scan = end
        conn.pace = BodyPace(time.monotonic(), self.body_min_rate, self.body_grace, self.body_timeout,
                             len(head) - end)
        if self._body_here(conn):
            return None
        if expect and len(head) == end:
            try:
                conn.sock.send(_CONTINUE)  # 25 bytes on a socket that has sent nothing yet
            except OSError:
                pass
        self.bodies[id(conn)] = conn
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_body_bytes, conn))
        return None

    def _body_here(self, conn) -> bool:
        """The body is all here (to a thread), or turned out larger than a small body (to a thread, unread)."""
        head = conn.head
        if conn.body_need is not None:
            if len(head) < conn.body_need:
                return False
        else:
            end, conn.chunk_scan = chunked_end(head, conn.chunk_scan)
            if end is None and conn.chunk_scan >= 0 and len(head) - conn.body_at <= self.small_body_max:
                return False
            conn.body_whole = end is not None and end - conn.body_at <= self.small_body_max
        self._stop_body(conn)
        conn.pace = None
        self._to_thread(conn)
        return True

    def _on_body_bytes(self, conn, sock) -> None:
        data = recv_nowait(sock)
        if data is None:
            return
        if not data:
            self._stop_body(conn)
            self.nr_conns -= 1
            conn.close()
            return
        conn.head += data
        conn.pace.got += len(data)
        self._body_here(conn)

    def _stop_body(self, conn) -> None:
        if self.bodies.pop(id(conn), None) is not None:
            unregister(self.poller, conn.sock)

    def sweep_bodies(self, now: float) -> None:
        """408 and close for every body the event loop reads that is too slow (or the worker stops)."""
        if not self.bodies or (now - self._bodies_checked < _BODY_SCAN_EVERY and self.alive):
            return
        self._bodies_checked = now
        for conn in [c for c in self.bodies.values() if c.pace.due() <= now or not self.alive]:
            self._stop_body(conn)
            self.nr_conns -= 1
            if self.alive:
                self.log.warning("request body from %s: %s: 408, closed", (conn.client or ("",))[0],
                                 conn.pace.why(now))
                try:
                    conn.sock.send(error_page(408, "Request Timeout"))
                except OSError:
                    pass
            conn.close(graceful=True)  # lingers: the client sees the 408 and a FIN, not a reset

    # --- on a thread: a larger body, paced ------------------------------------------------

    def _prepare_parser(self, conn) -> None:
        if type(conn.parser.unreader) is SocketUnreader:  # once per connection
            conn.parser.unreader = PacedUnreader(conn.sock)

    def _keepalive_after(self, conn, keepalive):
        try:
            return super()._keepalive_after(conn, keepalive)
        except BodyTooSlow:
            return False

    @staticmethod
    def _body_left(req, conn) -> int | None:
        """Bytes of this request's body not yet in memory (0: all here or none; None: a chunked body still arriving)."""
        length = None
        for name, value in req.headers:
            if name == "TRANSFER-ENCODING":
                return 0 if getattr(conn, "body_whole", False) else None
            if name == "CONTENT-LENGTH":
                length = int(value)  # checked by the parser
        if not length:
            return 0
        with conn.parser.unreader.buf.getbuffer() as held:
            buffered = held.nbytes
        return max(0, length - buffered)

    def handle_request(self, req, conn):
        self._body_tls.body = None  # (in memory, Content-Length) for _with_body_state
        unreader = conn.parser.unreader
        if isinstance(unreader, PacedUnreader):
            left = self._body_left(req, conn)
            length = next((int(v) for n, v in req.headers if n == "CONTENT-LENGTH"), None)
            self._body_tls.body = (left == 0, length)
            if left != 0:  # an upload (or a chunked body over the small-body limit): read at a pace
                unreader.pace = BodyPace(time.monotonic(), self.body_min_rate, self.body_grace, self.body_timeout)
        conn.body_whole = False
        try:
            return super().handle_request(req, conn)
        finally:
            if isinstance(unreader, PacedUnreader):
                unreader.pace = None

    # --- what the application is told ------------------------------------------------------

    def load_wsgi(self) -> None:
        super().load_wsgi()
        if not self.cfg.is_ssl:
            self.wsgi = partial(self._with_body_state, self.wsgi)

    def _with_body_state(self, app, environ, start_response):
        """The application learns whether the request body is in memory already
        (``BODY_IN_MEMORY``); one still on the network is counted as it is read, and a response
        that starts before all of it was read says ``Connection: close``."""
        known = getattr(self._body_tls, "body", None)
        if known is not None:
            in_memory, length = known
            environ[BODY_IN_MEMORY] = in_memory
            environ[SMALL_BODY_MAX] = self.small_body_max
            if not in_memory:
                tracked = environ["wsgi.input"] = BodyInput(environ["wsgi.input"], length)
                resp = getattr(start_response, "__self__", None)
                if resp is not None and hasattr(resp, "force_close"):
                    def start(status, headers, exc_info=None, _start=start_response):
                        if not tracked.done:
                            resp.force_close()
                        return _start(status, headers, exc_info)

                    start.__self__ = resp  # type: ignore[attr-defined]  # for the layers that ask for it
                    start_response = start
        return app(environ, start_response)

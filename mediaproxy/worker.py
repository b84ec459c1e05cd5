"""The gunicorn worker class: gthread that accepts a connection only when it has a thread free for it.

All workers share one listening socket (held by the arbiter, so connections
wait in its backlog while a worker restarts). Stock gthread accepts whatever
arrives and queues it for its thread pool, and the worker that is already
awake wins the accept race against one sleeping in epoll: in 3 of 16 fresh
starts all 16 of wrk's keep-alive connections landed on one worker, which
then served 3.4k req/s while the other idled (14k when they were split).
The busier a worker, the likelier it wins, so the pile-up feeds itself.

Here a worker stops accepting while every thread has work and starts again
when one finishes, so a new connection goes to a worker that can serve it
now, and otherwise waits in the shared backlog for the first that can. Kept-
alive connections it already holds are still served as they become readable.

SO_REUSEPORT (gunicorn's ``reuse_port``) would balance too, by hashing, but
each worker then owns its socket: connections queued on a recycled worker's
socket are reset, and while every worker restarts nothing listens at all.
Measured under worker recycling: 0 errors this way, 129-9,000 with reuse_port
(docs/performance.md).
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import ssl
import struct
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from functools import partial

from gunicorn import util
from gunicorn.http import errors as gerrors
from gunicorn.http.unreader import SocketUnreader
from gunicorn.http.wsgi import Response as _GResponse
from gunicorn.workers.gthread import TConn
from gunicorn.workers.gthread import ThreadWorker as _GThreadWorker

_HEADERS_MAX = 1024 * 1024  # past this without a blank line, the parser gets it (and answers 431)
_LINGER = 2.0  # seconds a closed connection is drained for the peer's FIN (gunicorn's close_graceful)
_LINGER_MAX = 4096  # connections lingering at once; past it they are closed at once
# Bytes a lingering connection is drained of at most: a client still sending a body the answer
# refused unread (Connection: close) then sees the answer and a FIN, not a reset. The event loop
# reads them, no thread; past this (or _LINGER) the connection is closed as it is.
_LINGER_DRAIN = 1024 * 1024
_HANDOFF_MIN = 64 * 1024  # bodies up to this are written by the thread, as gunicorn does
_PUSH_MAX = 4 * 1024 * 1024  # bytes one writable event sends at most (others' turn next)
_BODY_SCAN_EVERY = 0.25  # seconds between two checks of the bodies the event loop is reading

# WSGI environ keys the worker sets for the application (mediaproxy/http.py reads them):
# True when the whole request body was read before the request took a thread (so the
# application reads it from memory), False when the rest is still on the network.
BODY_IN_MEMORY = "mediaproxy.body_in_memory"
SMALL_BODY_MAX = "mediaproxy.small_body_max"  # the worker's limit for bodies read by the event loop
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Conn(TConn):
    """gunicorn's connection, closed gracefully by the event loop instead of blocking it.

    gunicorn's ``close_graceful`` (half-close, then read until the peer closes,
    up to 2 s) runs on the worker's main thread: every client that does not
    close promptly after a ``Connection: close`` answer stalled the whole event
    loop (accepts, keep-alives, every finished request) for up to 2 s.
    """

    worker: ThreadWorker | None = None
    abort = False  # an abandoned response: reset, dropping what the kernel still queues for the client

    def close(self, graceful: bool = False) -> None:
        if self.abort:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            super().close()
        elif graceful and self.worker is not None:
            self.worker.linger(self)
        else:
            super().close()

def header_end(head: bytes | bytearray) -> int:
    """Where the body starts (after the blank line ending the headers), -1 if not there yet."""
    crlf, lf = head.find(b"\r\n\r\n"), head.find(b"\n\n")
    ends = [i + n for i, n in ((crlf, 4), (lf, 2)) if i >= 0]
    return min(ends) if ends else -1


def body_framing(block: bytes | bytearray) -> tuple[int | None, bool, bool] | None:
    """(Content-Length or None, chunked, Expect: 100-continue) of a request's header block, or
    None when the framing is unclear (the parser then refuses the request without reading a body).
    Only used to decide how long the event loop waits; gunicorn's parser stays the judge."""
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


class Handoff:
    """The rest of a response body, written by the event loop: a file range (sendfile from
    a duplicate of its descriptor, at an explicit offset) or bytes already in memory."""

    __slots__ = ("client", "data", "deadline", "fd", "keepalive", "left", "offset", "what")

    def __init__(self, fd: int | None, data: memoryview | None, offset: int, left: int, what: str, client: str):
        self.fd = fd
        self.data = data
        self.offset = offset  # in the file, or in data
        self.left = left
        self.what = what  # "GET /path", for the log
        self.client = client
        self.keepalive = False
        self.deadline = 0.0

    def push(self, sock) -> int:
        """Send what the socket takes now (non-blocking); the bytes sent. Raises OSError
        if the peer is gone, or EOFError if the file ended before the body did."""
        sent = 0
        while self.left > 0 and sent < _PUSH_MAX:
            want = min(self.left, _PUSH_MAX - sent)
            try:
                if self.fd is not None:
                    n = os.sendfile(sock.fileno(), self.fd, self.offset, want)
                    if n == 0:
                        raise EOFError("the file ended before its Content-Length")
                else:
                    n = sock.send(self.data[self.offset : self.offset + want])
            except (BlockingIOError, InterruptedError):
                break
            self.offset += n
            self.left -= n
            sent += n
        return sent

    def close(self) -> None:
        fd, self.fd, self.data = self.fd, None, None
        if fd is not None:
            os.close(fd)


# gunicorn's parser errors → (status, reason), as gunicorn's own handle_error
# maps them; the first match wins, anything else from the parser is a 400.
_PARSER_ERRORS: tuple[tuple[type[BaseException], int, str], ...] = (
    ((gerrors.InvalidResponseHeader, gerrors.InvalidResponseHeaderName), 500, "Internal Server Error"),
    (gerrors.LimitRequestLine, 414, "URI Too Long"),
    (gerrors.LimitRequestHeaders, 431, "Request Header Fields Too Large"),
    (gerrors.ExpectationFailed, 417, "Expectation Failed"),
    (gerrors.UnsupportedTransferCoding, 501, "Not Implemented"),
    (gerrors.ConfigurationProblem, 500, "Internal Server Error"),
    ((gerrors.ForbiddenProxyRequest, ssl.SSLError), 403, "Forbidden"),
    (gerrors.ParseException, 400, "Bad Request"),
)


def classify_error(exc: BaseException) -> tuple[int, str]:
    for kinds, status, reason in _PARSER_ERRORS:
        if isinstance(exc, kinds):
            return status, reason
    return 500, "Internal Server Error"


def error_page(status: int, reason: str) -> bytes:
    """A response for an error found before the application ran, in the project's error
    format (short plain text, no-store, nosniff, CORS) instead of gunicorn's HTML page."""
    body = reason.lower().encode() + b"\n"
    return (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Access-Control-Allow-Origin: *\r\n"
        "\r\n"
    ).encode("latin-1") + body


class ThreadWorker(_GThreadWorker):
    """gthread, plus: a thread only for a request whose headers are all here, a header
    deadline, a send deadline, large bodies written by the event loop, and error
    answers in the project's format.

    Slow clients (docs/resilience.md): gthread hands a connection to a thread as
    soon as a byte is readable, and the thread then blocks in the parser until the
    headers are complete; 20 clients sending one byte a second held every thread.
    Here the event loop reads request headers itself, non-blocking, into a buffer
    per connection, and only a connection whose headers are complete (a blank
    line) goes to a thread, the buffered bytes handed to its parser. Headers not
    complete within ``header_timeout`` seconds get a 408 and the connection is
    closed. While a thread writes a response, a socket timeout of
    ``send_timeout`` seconds bounds every send: a client that takes nothing for
    that long (or reads a 256 KiB chunk slower than that) loses the response and
    its connection, and the thread is free again. A body over 64 KiB from a file
    (sendfile) or from memory is not written by the thread at all: it sends the
    headers and what the socket takes at once, and the event loop writes the
    rest as the socket turns writable (``Handoff``), under the same deadline,
    then keeps the connection alive or closes it as gunicorn would.
    """

    header_timeout = 10.0  # set from MEDIAPROXY_HEADER_TIMEOUT by gunicorn.conf.py's post_fork
    send_timeout = 10.0  # MEDIAPROXY_SEND_TIMEOUT
    small_body_max = 64 * 1024  # MEDIAPROXY_SMALL_BODY_MAX: bodies the event loop reads before a thread
    body_min_rate = 10240.0  # MEDIAPROXY_BODY_MIN_RATE (bytes/s, after the grace)
    body_grace = 10.0  # MEDIAPROXY_BODY_GRACE
    body_timeout = 600.0  # MEDIAPROXY_BODY_TIMEOUT: the whole body, however fast

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.busy = 0  # connections handed to the thread pool and not finished
        self.reading: OrderedDict[int, object] = OrderedDict()  # id(conn) -> conn, oldest deadline first
        self.lingering: OrderedDict[int, object] = OrderedDict()  # closed by us, waiting for the peer's FIN
        self.sending: OrderedDict[int, object] = OrderedDict()  # bodies the event loop writes, oldest deadline first
        self.bodies: dict[int, object] = {}  # small request bodies the event loop is reading
        self._bodies_checked = 0.0
        self._tls = threading.local()  # the handoff a thread's request left for the event loop

    def _loop_reads_headers(self) -> bool:
        return not self.cfg.is_ssl and self.header_timeout > 0

    # --- request headers, read by the event loop -----------------------------

    def accept(self, listener) -> None:
        if not self._loop_reads_headers():
            return super().accept(listener)
        try:
            client_sock, client_addr = listener.accept()
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = Conn(self.cfg, client_sock, client_addr, listener.getsockname())
        conn.worker = self
        self._read_headers(conn)

    def on_client_socket_readable(self, conn, client) -> None:
        # A kept-alive connection starts its next request: its headers too are read here.
        if not self._loop_reads_headers():
            return super().on_client_socket_readable(conn, client)
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._read_headers(conn)

    def _read_headers(self, conn, pending: bytes = b"") -> None:
        conn.sock.setblocking(False)
        conn.head = bytearray(pending)  # a pipelined request's first bytes, already read
        conn.head_deadline = time.monotonic() + self.header_timeout
        self.reading[id(conn)] = conn
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_header_bytes, conn))
        if pending and self._headers_here(conn, 0):
            return
        self._on_header_bytes(conn, conn.sock)  # bytes may be here already

    def _recv(self, conn, sock) -> bytes | None:
        """What the socket has (b"": the peer closed or failed), None: nothing yet."""
        try:
            return sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""

    def _on_header_bytes(self, conn, sock) -> None:
        data = self._recv(conn, sock)
        if data is None:
            return
        if not data:  # closed before a whole request arrived
            self._stop_reading(conn)
            self.nr_conns -= 1
            conn.close()
            return
        start = max(0, len(conn.head) - 3)
        conn.head += data
        self._headers_here(conn, start)

    def _headers_here(self, conn, start: int) -> bool:
        """The headers are complete (or too long): on to the body, or to a thread."""
        head = conn.head
        if head.find(b"\r\n\r\n", start) < 0 and head.find(b"\n\n", start) < 0 and len(head) < _HEADERS_MAX:
            return False
        self._stop_reading(conn)
        self._read_body(conn)
        return True

    # --- small request bodies, read by the event loop too ------------------------

    def _read_body(self, conn) -> None:
        """A body of at most ``small_body_max`` bytes (a login, JSON, a small form) is read here,
        so the request holds a thread only with its body in memory; a larger one (an upload) is
        read by the thread, paced (``PacedUnreader``), once the application has checked who sends it."""
        head = conn.head
        end = header_end(head)
        framing = body_framing(head[:end]) if end >= 0 else None
        conn.body_whole = False  # a chunked body in memory: only once found whole (_body_here)
        if framing is None:
            return self._to_thread(conn)  # no blank line within _HEADERS_MAX, or unclear framing
        length, chunked, expect = framing
        if not chunked and not length:
            return self._to_thread(conn)
        if not chunked and length > self.small_body_max:
            conn.body_whole = False
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
        self._to_thread(conn)
        return True

    def _on_body_bytes(self, conn, sock) -> None:
        data = self._recv(conn, sock)
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
            self._unregister(conn)

    def _check_bodies(self, now: float) -> None:
        """408 and close for every body the event loop reads that is too slow (or the worker stops)."""
        if now - self._bodies_checked < _BODY_SCAN_EVERY and self.alive:
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

    def _to_thread(self, conn) -> None:
        conn.data_ready = True
        conn.prebuf = bytes(conn.head)
        conn.head = conn.pace = None
        self.enqueue_req(conn)

    def _stop_reading(self, conn) -> None:
        self.reading.pop(id(conn), None)
        self._unregister(conn)

    def _unregister(self, conn) -> None:
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def linger(self, conn) -> None:
        """Half-close now; drain what the peer still sends from the event loop; close on its FIN."""
        sock = conn.sock
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        if len(self.lingering) >= _LINGER_MAX or not self.alive:
            sock.close()
            return
        sock.setblocking(False)
        conn.linger_until = time.monotonic() + _LINGER
        conn.drained = 0
        self.lingering[id(conn)] = conn
        self.poller.register(sock, selectors.EVENT_READ, partial(self._on_linger, conn))

    def _on_linger(self, conn, sock) -> None:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.drained += len(data)
        if not data or conn.drained > _LINGER_DRAIN:
            self._end_linger(conn)

    def _end_linger(self, conn) -> None:
        self.lingering.pop(id(conn), None)
        self._unregister(conn)
        conn.sock.close()

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        if self.bodies:
            self._check_bodies(now)
        while self.sending:
            conn = next(iter(self.sending.values()))
            if conn.out.deadline > now:
                break
            self.log.warning("%s: client %s took nothing for %.0f s: response abandoned, connection closed",
                             conn.out.what, conn.out.client, self.send_timeout)
            self._end_send(conn, abort=True)
        while self.lingering:
            conn = next(iter(self.lingering.values()))
            if conn.linger_until > now and self.alive:
                break
            self._end_linger(conn)
        while self.reading:
            conn = next(iter(self.reading.values()))
            if conn.head_deadline > now and self.alive:
                break
            self._stop_reading(conn)
            self.nr_conns -= 1
            if conn.head:  # it started a request: say why it ends
                self.log.warning("request headers from %s incomplete after %.0f s: 408, closed",
                                 (conn.client or ("",))[0], self.header_timeout)
                try:
                    conn.sock.send(error_page(408, "Request Timeout"))
                except OSError:
                    pass
            conn.close()

    def handle(self, conn):
        prebuf = getattr(conn, "prebuf", None)
        if prebuf is not None:  # headers (and a small body) the event loop read: the parser starts with them
            conn.prebuf = None
            conn.sock.setblocking(True)
            conn.init()
            if type(conn.parser.unreader) is SocketUnreader:  # once per connection
                conn.parser.unreader = PacedUnreader(conn.sock)
            conn.parser.unreader.unread(prebuf)
        return super().handle(conn)

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

    # --- the response: a deadline on every send --------------------------------

    def handle_request(self, req, conn):
        if self.send_timeout > 0:
            conn.sock.settimeout(self.send_timeout)
        self._tls.handoff = None
        self._tls.body = None  # (in memory, Content-Length) for _respond
        unreader = conn.parser.unreader
        if isinstance(unreader, PacedUnreader):
            left = self._body_left(req, conn)
            length = next((int(v) for n, v in req.headers if n == "CONTENT-LENGTH"), None)
            self._tls.body = (left == 0, length)
            if left != 0:  # an upload (or a chunked body over the small-body limit): read at a pace
                unreader.pace = BodyPace(time.monotonic(), self.body_min_rate, self.body_grace, self.body_timeout)
        conn.body_whole = False
        out = None
        try:
            keepalive = super().handle_request(req, conn)
            out = self._tls.handoff
            return keepalive
        except TimeoutError:
            self.log.warning("%s %s: client %s took nothing for %.0f s: response abandoned, connection closed",
                             req.method, req.path, (conn.client or ("",))[0], self.send_timeout)
            conn.abort = True  # closed with a reset: the megabytes queued for it are dropped too
            return False
        finally:
            if isinstance(unreader, PacedUnreader):
                unreader.pace = None
            left, self._tls.handoff = self._tls.handoff, None
            if left is not None and left is not out:  # the request failed after handing off: nothing to send
                left.close()
            conn.handoff = out

    # --- large bodies: written by the event loop, not a thread ------------------

    def load_wsgi(self) -> None:
        super().load_wsgi()
        if not self.cfg.is_ssl:
            self.wsgi = partial(self._respond, self.wsgi)

    def _respond(self, app, environ, start_response):
        """The application, then: a large body in a file or in memory is handed to the event loop.

        Before it: the application learns whether the request body is in memory already
        (``BODY_IN_MEMORY``); one still on the network is counted as it is read, and a response
        that starts before all of it was read says ``Connection: close``."""
        known = getattr(self._tls, "body", None)
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
        body = app(environ, start_response)
        try:
            out = self._hand_off(environ, getattr(start_response, "__self__", None), body)
        except BaseException:
            if hasattr(body, "close"):
                body.close()
            raise
        if out is None:
            return body
        if hasattr(body, "close"):  # gives back the stream place and the file: the loop has its own descriptor
            body.close()
        return []

    def _hand_off(self, environ, resp, body) -> Handoff | None:
        """Send the headers and what the socket takes now; leave the rest as a ``Handoff``
        for the event loop (``self._tls.handoff``). None: gunicorn sends the body itself."""
        if (type(resp) is not _GResponse or resp.status is None or resp.headers_sent or resp.chunked
                or resp.upgrade or resp._omits_body or resp.response_length is None
                or resp.response_length <= _HANDOFF_MIN):
            return None
        sock = environ.get("gunicorn.socket")
        length = resp.response_length
        wrapper = environ.get("wsgi.file_wrapper")
        fd = data = None
        offset = 0
        if (wrapper is not None and isinstance(body, wrapper) and self.cfg.sendfile is not False
                and util.has_fileno(body.filelike)):
            fileno = body.filelike.fileno()
            try:
                offset = os.lseek(fileno, 0, os.SEEK_CUR)  # gunicorn's sendfile starts here too
                if os.fstat(fileno).st_size - offset < length:
                    return None  # a file shorter than its Content-Length: gunicorn's own path
                fd = os.dup(fileno)
            except OSError:
                return None
        elif isinstance(body, (list, tuple)) and len(body) == 1 and isinstance(body[0], bytes):
            if len(body[0]) < length:
                return None
            data = memoryview(body[0])[:length]
        else:
            return None
        what = f"{environ.get('REQUEST_METHOD', '')} {environ.get('PATH_INFO', '')}"
        out = Handoff(fd, data, offset, length, what, str(environ.get("REMOTE_ADDR", "")))
        try:
            resp.send_headers()  # blocking, under the send deadline like any thread's send
            sock.setblocking(False)
            try:
                out.push(sock)
            finally:
                sock.settimeout(self.send_timeout if self.send_timeout > 0 else None)
        except BaseException:
            out.close()
            raise
        resp.sent = length  # for the access log: the body is sent (or abandoned, which is logged)
        if out.left:
            self._tls.handoff = out
        else:
            out.close()
        return out

    def _send_rest(self, conn, out: Handoff) -> None:
        conn.out = out
        out.deadline = time.monotonic() + self.send_timeout if self.send_timeout > 0 else float("inf")
        self.sending[id(conn)] = conn
        try:
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_WRITE, partial(self._on_writable, conn))
        except (OSError, ValueError, KeyError):
            self._end_send(conn, abort=True)

    def _on_writable(self, conn, sock) -> None:
        out = conn.out
        try:
            sent = out.push(sock)
        except (OSError, EOFError) as exc:
            self.log.debug("%s: sending to %s failed: %s", out.what, out.client, exc)
            self._end_send(conn, abort=True)
            return
        if not out.left:
            self._end_send(conn)
        elif sent and self.send_timeout > 0:
            out.deadline = time.monotonic() + self.send_timeout
            self.sending.move_to_end(id(conn))

    def _end_send(self, conn, abort: bool = False) -> None:
        """The body is sent (the connection is kept alive or closed as gunicorn would), or abandoned (reset)."""
        self.sending.pop(id(conn), None)
        self._unregister(conn)
        out, conn.out = conn.out, None
        out.close()
        if abort:
            conn.abort = True
            self.nr_conns -= 1
            conn.close()
            return
        self._after_response(conn, out.keepalive)

    def _after_response(self, conn, keepalive: bool) -> None:
        """Keep the connection alive or close it as gunicorn does; but a next request already
        buffered (pipelined, or read ahead while a body was drained) goes through the event loop's
        header and body reading too, not straight to a thread."""
        if keepalive and self.alive and self._loop_reads_headers() and conn.parser is not None:
            pending = conn.parser.unreader.take_buffered()
            if pending:
                self._read_headers(conn, pending)
                return
        done: Future = Future()
        done.set_result(keepalive)
        _GThreadWorker.finish_request(self, conn, done)

    def set_accept_enabled(self, enabled: bool) -> None:
        # Called by the main loop whenever its own test (a connection limit)
        # differs from the current state; add ours: a thread must be free.
        super().set_accept_enabled(enabled and self.busy < self.cfg.threads)

    def enqueue_req(self, conn) -> None:
        self.busy += 1  # main thread only, as is finish_request: no lock needed
        if self.busy >= self.cfg.threads:
            super().set_accept_enabled(False)
        super().enqueue_req(conn)

    def finish_request(self, conn, fs) -> None:
        self.busy -= 1
        out = getattr(conn, "handoff", None)
        try:
            keepalive = not fs.cancelled() and fs.result() is True
        except Exception:
            keepalive = False
        if out is None:
            if keepalive:
                return self._after_response(conn, True)
            return super().finish_request(conn, fs)
        conn.handoff = None  # the thread is free; the event loop sends the rest, then keeps alive or closes
        out.keepalive = keepalive
        self._send_rest(conn, out)

    def handle_error(self, req, client, addr, exc) -> None:
        """gunicorn's own error answers (414, 431, 400 from its parser…) in our error format."""
        status, reason = classify_error(exc)
        ip = (addr or ("", -1))[0]
        if status == 500:
            what = f"{req.method} {req.uri}" if hasattr(req, "method") and hasattr(req, "uri") else "(no request)"
            self.log.exception("error handling request %s from %s", what, ip)
        else:  # the client's fault: one line, no stack trace
            self.log.warning("invalid request from %s: %d %s: %s", ip, status, reason, str(exc)[:200])
        try:
            util.write_nonblock(client, error_page(status, reason))
        except Exception:
            self.log.debug("failed to send an error answer")

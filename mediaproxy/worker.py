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
from gunicorn.http.wsgi import Response as _GResponse
from gunicorn.workers.gthread import TConn
from gunicorn.workers.gthread import ThreadWorker as _GThreadWorker

_HEADERS_MAX = 1024 * 1024  # past this without a blank line, the parser gets it (and answers 431)
_LINGER = 2.0  # seconds a closed connection is drained for the peer's FIN (gunicorn's close_graceful)
_LINGER_MAX = 4096  # connections lingering at once; past it they are closed at once
_HANDOFF_MIN = 64 * 1024  # bodies up to this are written by the thread, as gunicorn does
_PUSH_MAX = 4 * 1024 * 1024  # bytes one writable event sends at most (others' turn next)


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

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.busy = 0  # connections handed to the thread pool and not finished
        self.reading: OrderedDict[int, object] = OrderedDict()  # id(conn) -> conn, oldest deadline first
        self.lingering: OrderedDict[int, object] = OrderedDict()  # closed by us, waiting for the peer's FIN
        self.sending: OrderedDict[int, object] = OrderedDict()  # bodies the event loop writes, oldest deadline first
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

    def _read_headers(self, conn) -> None:
        conn.sock.setblocking(False)
        conn.head = bytearray()
        conn.head_deadline = time.monotonic() + self.header_timeout
        self.reading[id(conn)] = conn
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_header_bytes, conn))
        self._on_header_bytes(conn, conn.sock)  # bytes may be here already

    def _on_header_bytes(self, conn, sock) -> None:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # closed before a whole request arrived
            self._stop_reading(conn)
            self.nr_conns -= 1
            conn.close()
            return
        head = conn.head
        start = max(0, len(head) - 3)
        head += data
        if head.find(b"\r\n\r\n", start) < 0 and head.find(b"\n\n", start) < 0 and len(head) < _HEADERS_MAX:
            return
        self._stop_reading(conn)
        conn.data_ready = True
        conn.prebuf = bytes(head)
        conn.head = None
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
        if not data or conn.drained > 65536:
            self._end_linger(conn)

    def _end_linger(self, conn) -> None:
        self.lingering.pop(id(conn), None)
        self._unregister(conn)
        conn.sock.close()

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
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
        if prebuf is not None:  # headers the event loop read: the parser starts with them
            conn.prebuf = None
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(prebuf)
        return super().handle(conn)

    # --- the response: a deadline on every send --------------------------------

    def handle_request(self, req, conn):
        if self.send_timeout > 0:
            conn.sock.settimeout(self.send_timeout)
        self._tls.handoff = None
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
        """The application, then: a large body in a file or in memory is handed to the event loop."""
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
        done: Future = Future()
        done.set_result(out.keepalive)
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
        if out is None:
            return super().finish_request(conn, fs)
        conn.handoff = None  # the thread is free; the event loop sends the rest, then keeps alive or closes
        try:
            out.keepalive = bool(not fs.cancelled() and fs.result())
        except Exception:
            out.keepalive = False
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

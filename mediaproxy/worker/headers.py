"""Request headers read by the event loop, and 408 past the header deadline.

Stock gthread hands a connection to a thread as soon as a byte is readable, and the thread then
blocks in gunicorn's parser until the headers are complete: 20 clients sending one byte a second
held every thread. Here the event loop reads request headers itself, non-blocking, into a buffer
per connection (a kept-alive connection's next request, and a pipelined one, too), and only a
connection whose headers are complete (a blank line) goes on: to the request-body part, then to a
thread, whose parser starts from the buffered bytes. Headers not complete within
``header_timeout`` seconds get a 408 and the connection is closed.
"""

from __future__ import annotations

import errno
import selectors
import time
from collections import OrderedDict
from concurrent.futures import Future
from functools import partial

from gunicorn.workers.gthread import ThreadWorker as _GThreadWorker

from .errors import error_page
from .linger import Conn
from .loop import kept_alive, recv_nowait, unregister

HEADERS_MAX = 1024 * 1024  # past this without a blank line, the parser gets it (and answers 431)


def header_end(head: bytes | bytearray) -> int:
    """Where the body starts (after the blank line ending the headers), -1 if not there yet."""
    crlf, lf = head.find(b"\r\n\r\n"), head.find(b"\n\n")
    ends = [i + n for i, n in ((crlf, 4), (lf, 2)) if i >= 0]
    return min(ends) if ends else -1


class HeaderReading:
    """Worker part (over gunicorn's gthread worker): ``accept`` and ``on_client_socket_readable``
    read headers on the event loop, ``handle`` starts the thread's parser from them, and
    ``finish_request`` sends a kept-alive connection's next request through them again.

    ``_request_here(conn)`` is called once a connection's headers are here, and calls
    ``_headers_done(conn)`` for whatever the event loop does not answer itself (here: a thread;
    the request-body part reads a small body first); ``_prepare_parser(conn)`` may swap the
    parser's socket reader before the buffered bytes go in. ``sweep_headers`` is called by the
    worker's periodic sweep."""

    header_timeout = 10.0  # set from MEDIAPROXY_HEADER_TIMEOUT by gunicorn.conf.py's post_fork

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reading: OrderedDict[int, Conn] = OrderedDict()  # id(conn) -> conn, oldest deadline first

    def _loop_reads_headers(self) -> bool:
        return not self.cfg.is_ssl and self.header_timeout > 0

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
        # The socket is non-blocking already (gunicorn's connection starts so, a kept-alive one is
        # left so), but for a pipelined request, whose caller sets it.
        conn.head = bytearray(pending)  # a pipelined request's first bytes, already read
        conn.head_deadline = time.monotonic() + self.header_timeout
        self.reading[id(conn)] = conn
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_header_bytes, conn))
        if pending and self._headers_here(conn, 0):
            return
        if self._read_now():
            self._on_header_bytes(conn, conn.sock)  # bytes may be here already

    def _read_now(self) -> bool:
        """Whether ``_read_headers`` reads the socket at once (else: when the selector says so)."""
        return True

    def _on_header_bytes(self, conn, sock) -> None:
        if conn.head is None:  # a kept-alive connection (``_keep_alive``) starts its next request
            self.keepalived_conns.remove(conn)
            conn.head = bytearray()
            conn.head_deadline = time.monotonic() + self.header_timeout
            self.reading[id(conn)] = conn
        data = recv_nowait(sock)
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
        """The headers are complete (or too long): on to ``_headers_done``."""
        head = conn.head
        if head.find(b"\r\n\r\n", start) < 0 and head.find(b"\n\n", start) < 0 and len(head) < HEADERS_MAX:
            return False
        self._stop_reading(conn)
        self._request_here(conn)
        return True

    def _request_here(self, conn) -> None:
        """A complete header block is here: the loop-answer part may answer it on the event loop
        (mediaproxy/worker/answers.py); otherwise, and here, on to ``_headers_done``."""
        self._headers_done(conn)

    def _headers_done(self, conn) -> None:
        self._to_thread(conn)

    def _to_thread(self, conn) -> None:
        """The bytes read so far (``conn.head``) go to a thread's parser."""
        conn.data_ready = True
        conn.prebuf = bytes(conn.head)
        conn.head = None
        self.enqueue_req(conn)

    def _stop_reading(self, conn) -> None:
        self.reading.pop(id(conn), None)
        unregister(self.poller, conn.sock)

    def _keep_alive(self, conn) -> None:
        """Wait for the connection's next request, as gunicorn's keep-alive does (its list, its
        timeout), but registered for ``_on_header_bytes`` at once: gunicorn's own callback would
        be swapped for it (two more selector calls) when the first byte arrives."""
        conn.head = None
        conn.set_timeout()
        self.keepalived_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_header_bytes, conn))

    def sweep_headers(self, now: float) -> None:
        """408 and close for every connection whose headers are not complete in time (an idle
        one that sent nothing is just closed); all of them once the worker stops."""
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
            conn.init()  # gunicorn's handle() makes the socket blocking before it reads or writes
            self._prepare_parser(conn)
            conn.parser.unreader.unread(prebuf)
        return super().handle(conn)

    def _prepare_parser(self, conn) -> None:
        """Before the bytes the event loop read go into a connection's parser."""

    def finish_request(self, conn, fs) -> None:
        if kept_alive(fs):
            return self._after_response(conn, True)
        return super().finish_request(conn, fs)

    def _after_response(self, conn, keepalive: bool) -> None:
        """Keep the connection alive or close it as gunicorn does; but a next request already
        buffered (pipelined, or read ahead while a body was drained) goes through the event loop's
        header and body reading too, not straight to a thread."""
        if keepalive and self.alive and self._loop_reads_headers() and conn.parser is not None:
            pending = conn.parser.unreader.take_buffered()
            conn.sock.setblocking(False)
            if pending:
                self._read_headers(conn, pending)
            else:
                self._keep_alive(conn)
            return
        done: Future = Future()
        done.set_result(keepalive)
        _GThreadWorker.finish_request(self, conn, done)

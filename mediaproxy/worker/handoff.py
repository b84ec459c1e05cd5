"""Responses: a send deadline on every send a thread makes, and large bodies written by the event
loop instead of a thread.

While a thread writes a response, a socket timeout of ``send_timeout`` seconds bounds every send:
a client that takes nothing for that long (or reads a 256 KiB chunk slower than that) loses the
response and its connection (reset), and the thread is free again. A body over 64 KiB from a file
(sendfile) or from memory is not written by the thread at all: it sends the headers and what the
socket takes at once, and the event loop writes the rest as the socket turns writable
(``Handoff``), under the same deadline, then keeps the connection alive or closes it as gunicorn
would.
"""

from __future__ import annotations

import os
import selectors
import threading
import time
from collections import OrderedDict
from functools import partial

from gunicorn import util
from gunicorn.http.wsgi import Response as _GResponse

from .loop import kept_alive, unregister

HANDOFF_MIN = 64 * 1024  # bodies up to this are written by the thread, as gunicorn does
_PUSH_MAX = 4 * 1024 * 1024  # bytes one writable event sends at most (others' turn next)
_SENT = object()  # _hand_off: the whole response is sent already


_CHECKED_MAX = 1024  # (name, value) pairs remembered per worker; emptied when full


class CheckedHeaders(_GResponse):
    """gunicorn's response, remembering the response header fields it has checked.

    gunicorn checks every field of every response (two regular expressions, then ``strip``,
    ``lower`` and a hop-by-hop test): ~1.5 µs a field on the 2-core machine, and a cache hit has
    ten, most of them the same on every hit (``Cache-Control``, CORS…). The check depends on the
    field alone, so a field seen before is taken as gunicorn took it then; any other goes through
    gunicorn's own ``process_headers`` (which raises on a bad one, as before). ``Connection`` and
    ``Upgrade`` change the response's state and are always left to gunicorn."""

    _checked: dict[tuple, tuple] = {}

    def process_headers(self, headers) -> None:
        checked = self._checked
        kept = self.headers
        for field in headers:
            seen = checked.get(field)
            if seen is not None:
                if seen[0] is not None:
                    kept.append(seen[0])
                if seen[1] is not None:
                    self.response_length = seen[1]
                continue
            before = len(kept)
            super().process_headers((field,))
            name = field[0].lower()
            if name in ("connection", "upgrade"):
                continue
            if len(checked) >= _CHECKED_MAX:
                checked.clear()
            checked[field] = (kept[before] if len(kept) > before else None,
                              self.response_length if name == "content-length" else None)


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


class ResponseHandoff:
    """Worker part: the send deadline (``handle_request``) and the hand-off of large bodies
    (``load_wsgi`` wraps the application, ``finish_request`` gives the rest to the event loop).

    Needs ``_after_response(conn, keepalive)`` (the header part's: keep alive or close once the
    body is sent); ``sweep_sends`` is called by the worker's periodic sweep."""

    send_timeout = 10.0  # MEDIAPROXY_SEND_TIMEOUT

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sending: OrderedDict[int, object] = OrderedDict()  # bodies the event loop writes, oldest deadline first
        self._tls = threading.local()  # the handoff a thread's request left for the event loop

    # --- on a thread: the response, under a deadline -------------------------------------

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

    def load_wsgi(self) -> None:
        super().load_wsgi()
        if not self.cfg.is_ssl:
            self.wsgi = partial(self._respond, self.wsgi)

    def _respond(self, app, environ, start_response):
        """The application, then: a large body in a file or in memory is handed to the event loop,
        a small one from memory sent with its headers."""
        resp = getattr(start_response, "__self__", None)
        if type(resp) is _GResponse:
            resp.__class__ = CheckedHeaders  # the same object and state; one method differs
        body = app(environ, start_response)
        try:
            out = self._hand_off(environ, resp, body)
        except BaseException:
            if hasattr(body, "close"):
                body.close()
            raise
        return body if out is None else []  # handed off or sent whole: nothing left for gunicorn

    @staticmethod
    def _send_whole(resp, sock, data: bytes) -> None:
        """A small body from memory goes out with its headers in one ``sendall``: gunicorn writes
        them in two, each a system call (two with a send deadline: a poll first) that hands the
        GIL to another thread. The header block is gunicorn's ``send_headers`` text, byte for byte."""
        lines = resp.default_headers()
        lines.extend([f"{k}: {v}\r\n" for k, v in resp.headers])
        lines.append("\r\n")
        sock.sendall("".join(lines).encode("latin-1") + data)
        resp.headers_sent = True
        resp.sent = len(data)  # for the access log, as Response.write counts it

    def _hand_off(self, environ, resp, body) -> Handoff | object | None:
        """Send the headers and what the socket takes now; leave the rest as a ``Handoff``
        for the event loop (``self._tls.handoff``). ``_SENT``: a small body in memory was sent
        with its headers. None: gunicorn sends the body itself."""
        if (type(resp) is not CheckedHeaders or resp.status is None or resp.headers_sent or resp.chunked
                or resp.upgrade or resp._omits_body or resp.response_length is None):
            return None
        sock = environ.get("gunicorn.socket")
        length = resp.response_length
        if length <= HANDOFF_MIN:
            if (type(body) is list and len(body) == 1 and type(body[0]) is bytes and len(body[0]) == length
                    and sock is not None):
                self._send_whole(resp, sock, body[0])
                return _SENT
            return None
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
            # the body gives back its stream place and its file now, before the client can see a
            # byte of the answer (the loop has its own descriptor): given back after the headers,
            # a client that sent its next request on seeing them could find the place still held
            if hasattr(body, "close"):
                body.close()
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

    # --- on the event loop: the rest of the body ------------------------------------------

    def finish_request(self, conn, fs) -> None:
        out = getattr(conn, "handoff", None)
        if out is None:
            return super().finish_request(conn, fs)
        keepalive = kept_alive(fs)
        conn.handoff = None  # the thread is free; the event loop sends the rest, then keeps alive or closes
        out.keepalive = keepalive
        self._send_rest(conn, out)

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
        unregister(self.poller, conn.sock)
        out, conn.out = conn.out, None
        out.close()
        if abort:
            conn.abort = True
            self.nr_conns -= 1
            conn.close()
            return
        self._after_response(conn, out.keepalive)

    def sweep_sends(self, now: float) -> None:
        """Reset the connections whose client took nothing for ``send_timeout`` seconds."""
        while self.sending:
            conn = next(iter(self.sending.values()))
            if conn.out.deadline > now:
                break
            self.log.warning("%s: client %s took nothing for %.0f s: response abandoned, connection closed",
                             conn.out.what, conn.out.client, self.send_timeout)
            self._end_send(conn, abort=True)

"""Requests the application answers from memory, answered on the event loop: no thread.

A cache hit served from the fast path's memory tier is CPU work of a few tens of µs, yet on the
thread path it also paid the hand-off: the thread pool's queue and lock, a wake-up byte through
gunicorn's pipe for ``finish_request``, the socket made blocking and non-blocking again, and the
GIL passed between the event loop and the thread several times a request. The event loop's
header reader already has the whole request, so when the application says it can answer it from
memory (``answers_from_memory(method, path, query)``, a WSGI application's attribute: the fast
path's memory tier) the loop parses it with the connection's own gunicorn parser and runs the
very same ``handle_request`` a thread runs — the same WSGI layers, request id, access line,
metrics, hooks (``pre_request``, ``post_request``), ``max_requests`` count and keep-alive
decision — with the response written into memory instead of the socket (``Capture``). The loop
then sends it without blocking; what the socket does not take goes to the event loop's writer
(``handoff.Handoff``, the same send deadline), and the connection is kept alive, its next
(pipelined) request read, or closed (lingering) exactly as after a thread's response.

Anything else goes to a thread as before: another method, a body, ``Expect``, a request line the
quick look cannot map to the application's path with certainty, anything not in memory. A request
the loop parsed that then turns out not to be for it (its parsed path differs, a ``SCRIPT_NAME``
header) is handed to a thread with the parsed request (``Replay``): no byte is read twice.
"""

from __future__ import annotations

import os
import re

from gunicorn import http, util

from .handoff import Handoff

# A request with any of these fields (a body, a continuation) is for a thread; gunicorn's own
# parser decides everything else.
_NOT_HERE = re.compile(rb"content-length|transfer-encoding|expect|upgrade", re.IGNORECASE)
_METHODS = {b"GET": "GET", b"HEAD": "HEAD"}
_VERSIONS = (b"HTTP/1.1", b"HTTP/1.0")


class Capture:
    """The socket a response is written to on the event loop: its bytes, kept in memory.

    gunicorn's response writes with ``sendall`` (``util.write``) and our one-send body too;
    the send deadline a thread's socket gets is meaningless here. Anything else a response
    could ask of a socket (``sendfile``, ``fileno``) does not exist, and so fails loudly:
    a memory-tier answer never needs it."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def sendall(self, data) -> None:
        self.parts.append(bytes(data))

    def settimeout(self, timeout) -> None:
        pass

    def gettimeout(self) -> float:
        return 0.0


class Replay:
    """The connection's parser, whose next request (or error) the event loop already parsed: the
    thread's ``next(conn.parser)`` gets it, and the parser is the connection's own again."""

    __slots__ = ("conn", "outcome", "parser")

    def __init__(self, conn, parser, outcome) -> None:
        self.conn, self.parser, self.outcome = conn, parser, outcome

    def __next__(self):
        self.conn.parser = self.parser
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def quick_target(head: bytes | bytearray) -> tuple[str, str, str] | None:
    """(method, path, query) of a header block that may be answered on the event loop, or None.

    Only a GET or HEAD of HTTP/1.x whose block ends in CRLF CRLF, with no body or continuation
    field, and whose target is a plain origin-form path (ASCII, no ``%`` escapes, no fragment, not
    ``//``): for those the path and query are what gunicorn's parser makes of them, without parsing."""
    end = head.find(b"\r\n\r\n")
    line_end = head.find(b"\r\n")
    if end < 0 or _NOT_HERE.search(head, line_end, end + 2) is not None:  # the fields, not the path
        return None
    parts = bytes(head[:line_end]).split(b" ")
    if len(parts) != 3 or parts[2] not in _VERSIONS:
        return None
    method = _METHODS.get(parts[0])
    target = parts[1]
    if (method is None or target[:1] != b"/" or target[1:2] == b"/" or b"%" in target or b"#" in target
            or not target.isascii()):
        return None
    path, _, query = target.decode("ascii").partition("?")
    return method, path, query


class LoopAnswers:
    """Worker part (``_request_here``, before the request-body part's ``_headers_done``):
    memory-tier answers on the event loop. Needs the header part (``_after_response``,
    ``_prepare_parser``), the response part (``_send_rest``) and gunicorn's ``handle_request``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.answers_from_memory = None  # the application's (method, path, query) -> bool, if it has one
        self._answering = False  # a loop answer is in progress (its pipelined successor waits in _next_up)
        self._next_up = None

    def load_wsgi(self) -> None:
        super().load_wsgi()
        probe = getattr(self.app.wsgi(), "answers_from_memory", None)
        if callable(probe) and not self.cfg.is_ssl and not os.environ.get("SCRIPT_NAME"):
            self.answers_from_memory = probe

    def _request_here(self, conn) -> None:
        if self._answering:  # a pipelined request after a loop answer: the loop below takes it
            self._next_up = conn
            return
        self._answering = True
        try:
            while conn is not None:
                if not self._answer_here(conn):
                    self._headers_done(conn)
                conn, self._next_up = self._next_up, None
        finally:
            self._answering = False

    def _read_now(self) -> bool:
        # After a loop answer, the next request's bytes beyond what was read already are read when
        # the selector says so, in turn with every other connection: read at once, a client that
        # keeps pipelining hits would have the event loop to itself for as long as it sends.
        return not self._answering

    def _answer_here(self, conn) -> bool:
        """Answer the request on the event loop if the application has it in memory; False: not taken."""
        probe = self.answers_from_memory
        if probe is None or conn.head is None:
            return False
        target = quick_target(conn.head)
        if target is None or not probe(*target):
            return False
        if not conn.initialized:  # TConn.init() without its blocking socket (no TLS, no HTTP/2 here)
            conn.initialized = True
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        self._prepare_parser(conn)
        conn.parser.unreader.unread(bytes(conn.head))
        conn.head = None
        conn.body_whole = False
        try:
            req = next(conn.parser)  # the whole header block is buffered: no read
        except Exception as exc:  # the thread's handle() answers it as it always did (a 400, a close)
            return self._replay(conn, exc)
        method, path, query = target
        if (not req or req.method != method or req.query != query or req.fragment
                or util.unquote_to_wsgi_str(req.path) != path
                or any(name == "SCRIPT_NAME" for name, _ in req.headers)):
            return self._replay(conn, req)
        self._respond_here(conn, req)
        return True

    def _replay(self, conn, outcome) -> bool:
        conn.parser = Replay(conn, conn.parser, outcome)
        conn.data_ready = True
        self.enqueue_req(conn)
        return True

    def _respond_here(self, conn, req) -> None:
        sock, capture = conn.sock, Capture()
        conn.sock = capture
        try:
            keepalive = self.handle_request(req, conn)
        except Exception as exc:  # as the thread's handle(): an error page, then close
            conn.sock = sock
            if not capture.parts:
                if not isinstance(exc, StopIteration):
                    self.handle_error(req, sock, conn.client, exc)
            else:
                self.log.exception("error answering %s %s on the event loop", req.method, req.path)
            self.nr_conns -= 1
            conn.close(graceful=True)
            return
        finally:
            conn.sock = sock
        data = b"".join(capture.parts)
        try:
            sent = sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.nr_conns -= 1
            conn.close()
            return
        if sent < len(data):  # a full socket buffer: the event loop's writer sends the rest
            out = Handoff(None, memoryview(data), sent, len(data) - sent, f"{req.method} {req.path}",
                          str(conn.client[0] if isinstance(conn.client, tuple) else conn.client))
            out.keepalive = keepalive
            self._send_rest(conn, out)
            return
        self._after_response(conn, keepalive)

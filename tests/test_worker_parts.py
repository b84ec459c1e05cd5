"""The parts of the worker class (mediaproxy/worker/), in process: each part's own logic on real
sockets. Over real HTTP against gunicorn they are tested in:

- headers (event-loop header reading, 408): tests/test_resilience.py
  ``test_slow_request_headers_hold_no_thread_and_time_out``, ``test_headers_split_over_several_packets_are_served``;
- bodies (small bodies on the event loop, minimum rate, Connection: close on an unread body,
  the per-client upload limit the application adds): tests/test_request_bodies.py,
  tests/test_internal.py ``test_refused_body_keeps_the_connection_usable``,
  tests/test_resilience.py ``test_a_request_body_that_stalls_is_a_408_without_a_trace``;
- handoff (send deadline, large bodies written by the event loop): tests/test_resilience.py
  ``test_a_client_that_stops_reading_loses_the_response_not_a_thread``,
  ``test_slow_readers_of_files_and_cached_results_hold_no_thread``, tests/test_http_semantics.py
  (ranges and conditional requests of bodies over 64 KiB);
- linger (graceful close on the event loop): tests/test_internal.py ``closed_cleanly`` (a FIN,
  not a reset, after a refused body);
- errors (gunicorn's error answers in the error format): tests/test_resilience.py
  ``test_gunicorn_error_pages_follow_the_error_contract``;
- answers (memory-tier hits on the event loop): tests/test_worker_answers.py;
- followup (a kept-alive connection's next request on the same thread): below, and
  tests/test_worker.py ``test_threads_waiting_for_a_next_request_keep_no_new_connection_waiting``,
  ``test_what_follows_an_answer_on_a_kept_alive_connection_keeps_every_deadline``;
- thread_worker (accept only with a free thread): tests/test_worker.py.
"""

from __future__ import annotations

import os
import selectors
import socket
import ssl
import threading
import time
from types import SimpleNamespace

import pytest
from gunicorn.http import errors as gerrors

from mediaproxy.worker import ThreadWorker, classify_error, error_page, header_end
from mediaproxy.worker.followup import NextRequestOnThread
from mediaproxy.worker.handoff import Handoff, ResponseHandoff
from mediaproxy.worker.headers import HeaderReading
from mediaproxy.worker.linger import LINGER, LINGER_DRAIN, LINGER_MAX, Lingering

# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("exc", "status"), [
    (gerrors.LimitRequestLine(5000, 4094), 414),
    (gerrors.LimitRequestHeaders("too many"), 431),
    (gerrors.InvalidHeader("Bad Header"), 400),
    (gerrors.InvalidHTTPVersion("HTTP/9.9"), 400),
    (gerrors.InvalidChunkSize(b"zz"), 400),
    (gerrors.ExpectationFailed("102-later"), 417),
    (gerrors.UnsupportedTransferCoding("gzip"), 501),
    (gerrors.ForbiddenProxyRequest("10.0.0.1"), 403),
    (ssl.SSLError("bad handshake"), 403),
    (gerrors.InvalidResponseHeader("X-Bad\n"), 500),  # the application's fault, not the client's
    (gerrors.ConfigurationProblem("forwarded_allow_ips"), 500),
    (RuntimeError("a bug"), 500),
])
def test_a_parser_error_gets_its_status(exc, status):
    assert classify_error(exc)[0] == status


def test_an_error_page_is_short_plain_text_in_the_error_format():
    page = error_page(431, "Request Header Fields Too Large")
    head, _, body = page.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert lines[0] == "HTTP/1.1 431 Request Header Fields Too Large"
    assert body == b"request header fields too large\n"
    assert headers == {
        "connection": "close", "content-type": "text/plain; charset=utf-8", "content-length": str(len(body)),
        "cache-control": "no-store", "x-content-type-options": "nosniff", "access-control-allow-origin": "*",
    }


# -- headers ---------------------------------------------------------------------------------------


def test_the_headers_end_at_the_first_blank_line():
    assert header_end(b"GET / HTTP/1.1\r\nHost: a\r\n") == -1
    assert header_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody") == 27
    assert header_end(b"GET / HTTP/1.1\nHost: a\n\nbody") == 24  # bare LF, which the parser takes too
    assert header_end(b"GET / HTTP/1.1\nA: b\n\n\r\n\r\n") == 21  # the first of either


# -- the periodic sweep: every part's deadline -------------------------------------------------------


def test_the_worker_is_made_of_its_parts_and_sweeps_each():
    swept = []
    worker = ThreadWorker.__new__(ThreadWorker)  # no arbiter: only the sweep is called
    for part in ("bodies", "sends", "lingering", "headers"):
        setattr(worker, f"sweep_{part}", lambda now, p=part: swept.append(p))
    worker.pending_conns = []  # gthread's own sweep (deferred connections) runs first: none here
    worker.murder_pending()
    # bodies close with a lingering close and sends reset theirs: lingering is swept after both
    assert swept == ["bodies", "sends", "lingering", "headers"]
    mro = ThreadWorker.__mro__
    # the header part reads (new and kept-alive) connections; the response part's finish_request
    # hands a body to the event loop before the header part keeps the connection alive
    assert mro.index(ResponseHandoff) < mro.index(HeaderReading) < mro.index(Lingering)
    # a thread's next request on the same connection starts its parser from the bytes it read
    assert mro.index(NextRequestOnThread) < mro.index(HeaderReading)


# -- handoff ---------------------------------------------------------------------------------------


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def _drain(out: Handoff, a: socket.socket, b: socket.socket) -> bytes:
    """What the peer receives while ``out`` is pushed whenever there is room, to its end."""
    got = bytearray()
    while True:
        out.push(a)
        try:
            while chunk := b.recv(1 << 20):
                got += chunk
        except BlockingIOError:
            pass
        if not out.left:
            return bytes(got)


def test_a_handed_off_buffer_is_sent_as_the_socket_takes_it():
    a, b = _pair()
    data = os.urandom(6 * 1024 * 1024)
    out = Handoff(None, memoryview(data), 0, len(data), "GET /x", "1.2.3.4")
    try:
        first = out.push(a)
        assert 0 < first < len(data) and out.left == len(data) - first  # a full socket: the rest waits
        assert out.push(a) == 0  # nothing taken: not an error
        assert _drain(out, a, b) == data
    finally:
        out.close()
        a.close()
        b.close()


_FIELDS = [
    [("Content-Type", "image/webp"), ("Content-Length", " 3794 "), ("ETag", '"abc"'), ("X-Request-Id", "r1")],
    [("content-length", "12"), ("Keep-Alive", "timeout=5"), ("Transfer-Encoding", "chunked"), ("X-A", " b\t")],
    [("Connection", "upgrade"), ("Upgrade", "websocket"), ("Cache-Control", "no-store")],
    [("Connection", "close"), ("Upgrade", "h2c"), ("Content-Length", "3794")],
]
_BAD_FIELDS = [[("X-Bad", "a\nb")], [("Bad Name", "x")], [("X-Num", 5)], [(b"X-Bytes", "x")]]


def _response(cls, method="GET"):
    from gunicorn.config import Config

    req = SimpleNamespace(version=(1, 1), method=method, should_close=lambda: False)
    return cls(req, None, Config())


@pytest.mark.parametrize("fields", _FIELDS)
def test_remembered_header_checks_take_every_field_as_gunicorn_does(fields):
    from gunicorn.http.wsgi import Response

    from mediaproxy.worker.handoff import CheckedHeaders

    CheckedHeaders._checked.clear()
    for _ in range(3):  # the first time checked by gunicorn, then remembered
        ours, theirs = _response(CheckedHeaders), _response(Response)
        ours.process_headers(list(fields))
        theirs.process_headers(list(fields))
        assert (ours.headers, ours.response_length, ours.upgrade) == (
            theirs.headers, theirs.response_length, theirs.upgrade)


@pytest.mark.parametrize("fields", _BAD_FIELDS)
def test_a_bad_header_field_is_refused_every_time(fields):
    from gunicorn.http.wsgi import Response

    from mediaproxy.worker.handoff import CheckedHeaders

    for _ in range(2):
        with pytest.raises(Exception) as theirs:
            _response(Response).process_headers(fields)
        with pytest.raises(theirs.type):
            _response(CheckedHeaders).process_headers(fields)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_small_body_goes_out_with_its_headers_in_one_send_byte_for_byte(monkeypatch, method):
    from gunicorn import util
    from gunicorn.http.wsgi import Response

    from mediaproxy.worker.handoff import CheckedHeaders

    monkeypatch.setattr(util, "http_date", lambda *a: "Mon, 07 Dec 2026 09:00:00 GMT")
    body = os.urandom(3794)
    fields = [("Content-Type", "image/webp"), ("Content-Length", str(len(body))), ("X-Request-Id", "r1")]
    sent = {}
    for name, cls in (("gunicorn", Response), ("ours", CheckedHeaders)):
        a, b = _pair()
        calls = []

        class Counting:
            def sendall(self, data, _a=a, _calls=calls):
                _calls.append(len(data))
                _a.sendall(data)

        try:
            resp = _response(cls, method)
            resp.sock = Counting()
            environ = {"gunicorn.socket": Counting(), "REQUEST_METHOD": method}
            worker = ResponseHandoff.__new__(ResponseHandoff)
            app = lambda env, start: (start("200 OK", list(fields)), [body] if method == "GET" else [])[1]  # noqa: E731
            if name == "gunicorn":
                for item in app(environ, resp.start_response):
                    resp.write(item)
            else:
                assert worker._respond(app, environ, resp.start_response) == []
            resp.close()
            a.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := b.recv(65536):
                got += chunk
            sent[name] = (got, resp.sent, len(calls))
        finally:
            a.close()
            b.close()
    assert sent["ours"][:2] == sent["gunicorn"][:2]
    assert sent["ours"][2] == 1  # gunicorn: the headers, then the body
    assert sent["gunicorn"][2] == (2 if method == "GET" else 1)


def test_a_handed_off_file_range_is_sent_from_its_offset(tmp_path):
    path = tmp_path / "f"
    data = os.urandom(3 * 1024 * 1024)
    path.write_bytes(data)
    a, b = _pair()
    fd = os.open(path, os.O_RDONLY)
    out = Handoff(fd, None, 1000, len(data) - 2000, "GET /f", "1.2.3.4")
    try:
        assert _drain(out, a, b) == data[1000:-1000]
        out.close()
        with pytest.raises(OSError):
            os.fstat(fd)  # the duplicate descriptor is closed with it
        # a file that ends before its Content-Length: an error, not a hang
        fd = os.open(path, os.O_RDONLY)
        out = Handoff(fd, None, len(data) - 10, 20, "GET /f", "1.2.3.4")
        with pytest.raises(EOFError):
            _drain(out, a, b)
    finally:
        out.close()
        a.close()
        b.close()


# -- linger ----------------------------------------------------------------------------------------


class _Loop(Lingering):
    """The lingering part on a real selector, alone."""

    def __init__(self) -> None:
        self.poller = selectors.DefaultSelector()
        self.alive = True
        super().__init__()

    def run(self, seconds: float = 0.2) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            for key, _ in self.poller.select(left):
                key.data(key.fileobj)


@pytest.fixture
def loop():
    lp = _Loop()
    yield lp
    lp.poller.close()


def _lingering(loop: _Loop) -> tuple[SimpleNamespace, socket.socket]:
    server, client = socket.socketpair()
    client.settimeout(10)
    conn = SimpleNamespace(sock=server)
    loop.linger(conn)
    return conn, client


def test_a_lingering_close_sends_a_fin_drains_and_closes_on_the_peers(loop):
    conn, client = _lingering(loop)
    try:
        assert client.recv(10) == b""  # the server's FIN, at once
        client.sendall(b"the rest of a body the answer refused" * 1000)  # no reset for these
        loop.run()
        assert conn.sock.fileno() != -1 and loop.lingering  # still waiting for the peer
        client.shutdown(socket.SHUT_WR)
        loop.run()
        assert conn.sock.fileno() == -1 and not loop.lingering and not loop.poller.get_map()
    finally:
        client.close()


def test_a_lingering_close_ends_past_its_drain_limit_or_time(loop):
    conn, client = _lingering(loop)
    try:
        client.setblocking(False)
        sent = 0
        while sent <= LINGER_DRAIN:
            try:
                sent += client.send(b"x" * 65536)
            except BlockingIOError:
                loop.run(0.05)
        loop.run()
        assert conn.sock.fileno() == -1 and not loop.lingering
    finally:
        client.close()
    quiet, client = _lingering(loop)
    try:
        loop.sweep_lingering(time.monotonic())
        assert quiet.sock.fileno() != -1  # within its time
        loop.sweep_lingering(time.monotonic() + LINGER + 0.1)
        assert quiet.sock.fileno() == -1 and not loop.lingering and not loop.poller.get_map()
    finally:
        client.close()


def test_a_stopping_worker_or_too_many_lingering_close_at_once(loop):
    loop.lingering.update({i: None for i in range(LINGER_MAX)})
    conn, client = _lingering(loop)
    client.close()
    assert conn.sock.fileno() == -1 and not loop.poller.get_map()
    loop.lingering.clear()
    loop.alive = False
    conn, client = _lingering(loop)
    client.close()
    assert conn.sock.fileno() == -1 and not loop.lingering
    loop.alive = True
    conn, client = _lingering(loop)  # and while lingering, a stopping worker's sweep ends them all
    try:
        loop.alive = False
        loop.sweep_lingering(time.monotonic())
        assert conn.sock.fileno() == -1 and not loop.lingering
    finally:
        client.close()


def test_a_frozen_config_answers_every_setting_without_its_lookup(monkeypatch):
    from gunicorn.config import Config

    from mediaproxy.worker.thread_worker import freeze_config

    cfg = Config()
    cfg.set("keepalive", 7)
    cfg.set("threads", 3)
    freeze_config(cfg)
    asked = []
    original = Config.__getattr__
    monkeypatch.setattr(Config, "__getattr__", lambda self, name: asked.append(name) or original(self, name))
    for name, setting in cfg.settings.items():
        if not hasattr(Config, name):
            assert getattr(cfg, name) == setting.get(), name
    assert (cfg.keepalive, cfg.threads, cfg.is_ssl) == (7, 3, None)
    assert cfg.worker_class is not None  # a property: still computed by gunicorn
    assert asked == []


# -- answers (memory-tier hits on the event loop) --------------------------------------------------


@pytest.mark.parametrize(("head", "target"), [
    (b"GET /a/b.webp?size=64 HTTP/1.1\r\nHost: x\r\n\r\n", ("GET", "/a/b.webp", "size=64")),
    (b"HEAD /a HTTP/1.0\r\n\r\n", ("HEAD", "/a", "")),
    (b"GET /expect/upgrade?content-length=1 HTTP/1.1\r\n\r\n", ("GET", "/expect/upgrade", "content-length=1")),
    (b"GET /a HTTP/1.1\r\nHost: x\r\ncontent-LENGTH: 0\r\n\r\n", None),
    (b"GET /a?x=1&y= HTTP/1.1\r\nIf-None-Match: \"e\"\r\n\r\nGET /next", ("GET", "/a", "x=1&y=")),
    (b"POST /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n", None),
    (b"GET /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", None),  # a body: a thread reads it
    (b"GET /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", None),
    (b"GET /a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", None),
    (b"GET /a HTTP/1.1\r\nUpgrade: h2c\r\n\r\n", None),
    (b"GET /a%2Fb HTTP/1.1\r\n\r\n", None),  # escapes: PATH_INFO is the parser's to decode
    (b"GET //a HTTP/1.1\r\n\r\n", None),
    (b"GET http://x/a HTTP/1.1\r\n\r\n", None),
    (b"GET /a#f HTTP/1.1\r\n\r\n", None),
    (b"GET /a HTTP/2.0\r\n\r\n", None),
    (b"GET /a HTTP/1.1\n\n", None),  # bare LF: the parser would wait for more
    (b"GET /a HTTP/1.1\r\nHost: x\r\n", None),  # not complete
    ("GET /\u00e9 HTTP/1.1\r\n\r\n".encode(), None),
    (b"GET  /a HTTP/1.1\r\n\r\n", None),
])
def test_the_quick_look_takes_only_plain_gets_and_heads_without_a_body(head, target):
    from mediaproxy.worker.answers import quick_target

    assert quick_target(head) == target


_MEM_BODY = os.urandom(3000)


def _memory_app(environ, start_response):
    """A WSGI application with one URL in memory (``/mem``), the rest "from elsewhere"."""
    rid = environ.setdefault("test.calls", [])
    rid.append(environ["PATH_INFO"])
    body = _MEM_BODY if environ["PATH_INFO"] == "/mem" else b"elsewhere\n"
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body))),
                              ("X-Query", environ.get("QUERY_STRING", ""))])
    return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]


_memory_app.answers_from_memory = lambda method, path, query: path == "/mem"


class _Worker:
    """The real worker class over socket pairs, its thread pool run inline on demand."""

    def __init__(self, app=_memory_app, **settings) -> None:
        from gunicorn.config import Config

        cfg = Config()
        for name, value in {"threads": 2, **settings}.items():
            cfg.set(name, value)
        log = SimpleNamespace(info=lambda *a: None, debug=lambda *a: None, warning=lambda *a: None,
                              exception=lambda *a: None, error=lambda *a: None, access=lambda *a: None)
        self.worker = w = ThreadWorker(0, os.getpid(), [], SimpleNamespace(wsgi=lambda: app), 30, cfg, log)
        w.poller = selectors.DefaultSelector()
        w.load_wsgi()
        self.queued: list = []
        w.enqueue_req = self.queued.append  # a thread's turn: run by threads() below

    def connect(self):
        from mediaproxy.worker.linger import Conn

        server, client = socket.socketpair()
        conn = Conn(self.worker.cfg, server, ("127.0.0.1", 40000), ("127.0.0.1", 8000))
        conn.worker = self.worker
        self.worker.nr_conns += 1
        client.settimeout(10)
        return conn, client

    def threads(self) -> None:
        """Run the requests handed to threads, each then finished on the "event loop"."""
        from concurrent.futures import Future

        while self.queued:
            conn = self.queued.pop(0)
            done: Future = Future()
            done.set_result(self.worker.handle(conn))
            self.worker.finish_request(conn, done)

    def loop(self, seconds: float = 0.05) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            for key, _ in self.worker.poller.select(left):
                key.data(key.fileobj)


def _responses(client: socket.socket, n: int, head: bool = False, buf: bytearray | None = None) -> list[bytes]:
    """``n`` whole responses; what follows them stays in ``buf``."""
    buf = bytearray() if buf is None else buf
    out: list[bytes] = []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            buf += client.recv(65536)
        end = buf.index(b"\r\n\r\n") + 4
        size = 0 if head else int(bytes(buf[:end]).lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(buf) < end + size:
            buf += client.recv(65536)
        out.append(bytes(buf[: end + size]))
        del buf[: end + size]
    return out


@pytest.fixture
def fixed_date(monkeypatch):
    from gunicorn import util

    monkeypatch.setattr(util, "http_date", lambda *a: "Mon, 07 Dec 2026 09:00:00 GMT")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_loop_answers_what_the_app_has_in_memory_as_a_thread_would(fixed_date, method):
    w = _Worker()
    loop_conn, loop_client = w.connect()
    req = f"{method} /mem?size=64 HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    loop_client.sendall(req)
    w.worker._read_headers(loop_conn)
    assert w.queued == []  # no thread
    by_loop = _responses(loop_client, 1, head=method == "HEAD")[0]
    assert list(w.worker.keepalived_conns) == [loop_conn] and w.worker.nr == 1

    # the same request forced onto a thread: the application is asked nothing, gunicorn answers
    w.worker.answers_from_memory = None
    thread_conn, thread_client = w.connect()
    thread_client.sendall(req)
    w.worker._read_headers(thread_conn)
    assert w.queued == [thread_conn]
    w.threads()
    by_thread = _responses(thread_client, 1, head=method == "HEAD")[0]
    assert by_loop == by_thread
    assert by_loop.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nX-Query: size=64\r\n" in by_loop


def test_what_the_app_has_elsewhere_or_with_a_body_takes_a_thread():
    w = _Worker()
    for data in (b"GET /disk HTTP/1.1\r\n\r\n", b"POST /mem HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
                 b"GET /m%65m HTTP/1.1\r\n\r\n"):
        conn, client = w.connect()
        client.sendall(data)
        w.worker._read_headers(conn)
        assert w.queued == [conn] and conn.prebuf == data  # the parser starts from the bytes read
        w.threads()
        assert _responses(client, 1)[0].startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_request_parsed_on_the_loop_but_not_its_own_goes_to_a_thread_parsed(fixed_date):
    # a SCRIPT_NAME header changes PATH_INFO: the loop parsed the request, a thread answers it
    w = _Worker()
    conn, client = w.connect()
    client.sendall(b"GET /mem HTTP/1.1\r\nSCRIPT_NAME: /m\r\n\r\n")
    w.worker._read_headers(conn)
    assert w.queued == [conn] and getattr(conn, "prebuf", None) is None
    w.threads()
    assert _responses(client, 1)[0].endswith(b"elsewhere\n")  # PATH_INFO "em"
    assert w.worker.nr == 1  # counted once


def test_a_malformed_request_the_loop_took_gets_the_threads_error_page():
    w = _Worker()
    conn, client = w.connect()
    client.sendall(b"GET /mem HTTP/1.1\r\nBad Header\r\n\r\n")
    w.worker._read_headers(conn)
    assert len(w.queued) == 1
    w.threads()
    client.shutdown(socket.SHUT_WR)
    answer = b""
    while chunk := client.recv(65536):
        answer += chunk
    assert answer == error_page(400, "Bad Request")


def test_pipelined_requests_are_answered_in_order_without_recursion(fixed_date):
    # thousands of pipelined hits in one buffer: each answer takes the next from the buffer in a
    # loop, not a nested call (which would overflow the stack), and a thread's answer keeps its place
    w = _Worker()
    conn, client = w.connect()
    n = 2000
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    plan = [b"HEAD /mem?i=%d HTTP/1.1\r\n\r\n" % i for i in range(n)]
    plan[700] = b"HEAD /disk HTTP/1.1\r\n\r\n"  # a thread's, in the middle
    got: list[bytes] = []
    buf = bytearray()
    client.sendall(b"".join(plan))
    w.worker._read_headers(conn)
    for _ in range(5 * n):  # bounded: a failure must not hang the test
        if len(got) == n:
            break
        w.threads()
        w.loop(0.01)
        client.setblocking(False)
        try:
            buf += client.recv(1 << 20)
        except BlockingIOError:
            continue
        while buf.count(b"\r\n\r\n") and len(got) < n:
            got += _responses(client, 1, head=True, buf=buf)
    assert len(got) == n and w.worker.nr == n
    assert [b"X-Query: i=%d\r\n" % i in r for i, r in enumerate(got)].count(False) == 1
    assert b"X-Query: \r\n" in got[700]


def test_an_answer_the_socket_cannot_take_is_sent_by_the_loops_writer(fixed_date):
    w = _Worker()
    conn, client = w.connect()
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    n = 40  # ~120 KB of answers, far over the two buffers
    client.sendall(b"GET /mem HTTP/1.1\r\n\r\n" * n)
    w.worker._read_headers(conn)
    assert id(conn) in w.worker.sending and w.queued == []  # the loop returned, the rest waits
    got: list[bytes] = []
    buf = bytearray()
    client.setblocking(False)
    while len(got) < n:
        w.loop(0.01)
        try:
            buf += client.recv(1 << 16)
        except BlockingIOError:
            continue
        while b"\r\n\r\n" in buf and len(buf) >= buf.index(b"\r\n\r\n") + 4 + len(_MEM_BODY):
            end = buf.index(b"\r\n\r\n") + 4 + len(_MEM_BODY)
            got.append(bytes(buf[:end]))
            del buf[:end]
    assert all(r.endswith(_MEM_BODY) for r in got) and len(set(got)) == 1
    assert not w.worker.sending and list(w.worker.keepalived_conns) == [conn]


def test_the_last_request_before_max_requests_is_answered_then_closed(fixed_date):
    w = _Worker()
    w.worker.max_requests = 2
    conn, client = w.connect()
    client.sendall(b"GET /mem HTTP/1.1\r\n\r\nGET /mem HTTP/1.1\r\n\r\nGET /mem HTTP/1.1\r\n\r\n")
    w.worker._read_headers(conn)
    first, second = _responses(client, 2)
    assert b"Connection: keep-alive" in first and b"Connection: close" in second
    assert w.worker.alive is False and w.worker.nr == 2  # the worker restarts after it
    assert conn.sock.fileno() == -1  # closed (a stopping worker lingers on none), the third request unanswered


# -- followup (a kept-alive connection's next request on the same thread) ------------------------------


def _answered_on_a_thread(w: _Worker, conn) -> bool:
    """One thread's turn for ``conn``, as the pool runs it (the worker counts it busy), finished on
    the "event loop"; what the thread's ``handle`` returned."""
    from concurrent.futures import Future

    assert w.queued == [conn]
    w.queued.clear()
    w.worker.busy += 1
    try:
        keepalive = w.worker.handle(conn)
    finally:
        w.worker.busy -= 1
    done: Future = Future()
    done.set_result(keepalive)
    w.worker.finish_request(conn, done)
    return keepalive


def _client_sends_after_each_answer(client: socket.socket, then: list[bytes], got: list[bytes],
                                    read_last: bool = True):
    """A client thread that reads an answer, then sends the next of ``then``, as a load tool or an
    edge's pooled connection does; and reads the last answer too if ``read_last``."""
    def run():
        buf = bytearray()
        for data in [*then, None] if read_last else then:
            got.extend(_responses(client, 1, buf=buf))
            if data is not None:
                client.sendall(data)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _first_request_read(wait: float, **settings):
    """A worker whose threads wait ``wait`` seconds for a connection's next request, and a
    connection whose first request the event loop has read (queued for a thread)."""
    w = _Worker(**settings)
    w.worker.next_request_wait = wait
    conn, client = w.connect()
    client.sendall(b"GET /disk HTTP/1.1\r\n\r\n")
    w.worker._read_headers(conn)
    return w, conn, client


def test_a_next_request_that_comes_at_once_is_answered_by_the_same_thread(fixed_date):
    w = _Worker()
    w.worker.next_request_wait = 0.5  # the client thread sends well within it; after the last, nothing
    conn, client = w.connect()
    client.sendall(b"GET /disk?i=0 HTTP/1.1\r\n\r\n")
    got: list[bytes] = []
    t = _client_sends_after_each_answer(client, [b"GET /disk?i=1 HTTP/1.1\r\n\r\n",
                                                 b"GET /mem?i=2 HTTP/1.1\r\n\r\n"], got)
    w.worker._read_headers(conn)
    started = time.monotonic()
    # the second and third requests come while the thread waits: one turn of the pool answers all three
    assert _answered_on_a_thread(w, conn) is True
    t.join(5)
    assert [r.split(b"X-Query: ")[1][:3] for r in got] == [b"i=0", b"i=1", b"i=2"]
    assert w.worker.nr == 3 and w.queued == []
    assert list(w.worker.keepalived_conns) == [conn]  # then kept alive by the event loop, as before
    assert time.monotonic() - started < 4.0


def test_a_thread_waits_for_the_next_request_no_longer_than_its_wait(fixed_date):
    w, conn, client = _first_request_read(0.2)
    started = time.monotonic()
    assert _answered_on_a_thread(w, conn) is True
    assert 0.15 <= time.monotonic() - started < 2.0
    assert list(w.worker.keepalived_conns) == [conn]
    client.sendall(b"GET /disk?later HTTP/1.1\r\n\r\n")  # later: the event loop reads it, a thread answers
    w.loop(0.05)
    assert w.queued == [conn]
    w.worker.next_request_wait = 0.0
    _answered_on_a_thread(w, conn)
    assert [r.split(b"X-Query: ")[1].split(b"\r\n")[0] for r in _responses(client, 2)] == [b"", b"later"]


def test_no_thread_waits_while_the_worker_has_no_other_thread_free(fixed_date):
    w = _Worker()  # 2 threads
    w.worker.next_request_wait = 5.0
    conn, client = w.connect()
    client.sendall(b"GET /disk HTTP/1.1\r\n\r\n")
    w.worker._read_headers(conn)
    w.worker.busy += 1  # another connection holds the other thread
    started = time.monotonic()
    assert _answered_on_a_thread(w, conn) is True
    assert time.monotonic() - started < 1.0
    assert list(w.worker.keepalived_conns) == [conn]


@pytest.mark.parametrize("event", ["last free thread taken", "worker stopping"])
def test_a_waiting_thread_stops_waiting_when_its_worker_needs_it(fixed_date, event):
    w, conn, client = _first_request_read(30.0)

    def then():
        _responses(client, 1)
        time.sleep(0.3)  # the thread waits by now
        if event == "worker stopping":
            w.worker.alive = False
        else:
            w.worker.busy += 1

    threading.Thread(target=then, daemon=True).start()
    started = time.monotonic()
    _answered_on_a_thread(w, conn)
    assert 0.25 < time.monotonic() - started < 2.0  # within a slice of the event, not the 30 s wait


def test_what_a_waiting_thread_reads_that_is_not_a_whole_plain_request_goes_to_the_event_loop(fixed_date):
    # a header block in parts (the header deadline applies, as to any request), a body (read by the
    # event loop before a thread), a request the quick look does not take: each is handed back with
    # the bytes already read, which the event loop reads first
    w = _Worker()
    w.worker.header_timeout = 0.3
    for nxt, rest in ((b"GET /disk?a HTTP/1.1\r\nHost: x\r\n", b"\r\n"),
                      (b"POST /disk?b HTTP/1.1\r\nContent-Length: 4\r\n\r\nbo", b"dy"),
                      (b"GET /m%65m?c HTTP/1.1\r\n\r\n", b"")):
        w.worker.next_request_wait = 5.0
        conn, client = w.connect()
        client.sendall(b"GET /disk HTTP/1.1\r\n\r\n")
        got: list[bytes] = []
        t = _client_sends_after_each_answer(client, [nxt], got, read_last=False)
        w.worker._read_headers(conn)
        started = time.monotonic()
        assert _answered_on_a_thread(w, conn) is True
        assert time.monotonic() - started < 4.0  # handed back as soon as read, not after the wait
        t.join(5)
        assert len(got) == 1 and w.worker.nr == 1
        if rest:
            assert w.queued == [] and id(conn) in (w.worker.reading.keys() | w.worker.bodies.keys())
            client.sendall(rest)
            w.loop(0.05)
        assert w.queued == [conn] and conn.prebuf == nxt + rest  # nothing read twice, nothing lost
        w.worker.next_request_wait = 0.0
        _answered_on_a_thread(w, conn)
        assert _responses(client, 1)[0].startswith(b"HTTP/1.1 200 OK\r\n")
        w.worker.nr = 0


def test_an_incomplete_next_request_still_gets_the_header_deadline(fixed_date):
    w = _Worker()
    w.worker.header_timeout = 0.3
    w.worker.next_request_wait = 5.0
    conn, client = w.connect()
    client.sendall(b"GET /disk HTTP/1.1\r\n\r\n")
    got: list[bytes] = []
    t = _client_sends_after_each_answer(client, [b"GET /disk HTTP/1.1\r\nHost: sl"], got, read_last=False)
    w.worker._read_headers(conn)
    assert _answered_on_a_thread(w, conn) is True  # back to the loop at once, not after the wait
    t.join(5)
    w.loop(0.5)
    w.worker.sweep_headers(time.monotonic())
    client.shutdown(socket.SHUT_WR)
    rest = b""
    while chunk := client.recv(65536):
        rest += chunk
    assert rest == error_page(408, "Request Timeout") and w.queued == []


def test_a_client_that_closes_while_a_thread_waits_is_closed_by_the_thread(fixed_date):
    w, conn, client = _first_request_read(5.0)
    def read_then_close():
        _responses(client, 1)
        client.close()

    threading.Thread(target=read_then_close, daemon=True).start()
    started = time.monotonic()
    assert _answered_on_a_thread(w, conn) is False
    assert time.monotonic() - started < 4.0
    assert w.worker.nr_conns == 0 and not w.worker.keepalived_conns and not w.worker.reading
    w.loop(0.2)  # the lingering close sees the client's end
    assert conn.sock.fileno() == -1


def test_urgent_data_does_not_hold_a_waiting_thread(fixed_date):
    # TCP urgent data makes a socket "priority"-readable with no byte recv() can read, and a socket
    # with a timeout (the send deadline's) waits in recv() for ordinary bytes: a waiting thread
    # must neither wake for it nor block on it (it did, for the whole send deadline)
    w = _Worker()
    w.worker.send_timeout = 0.5  # what the blocking recv would have waited (0: for ever)
    w.worker.next_request_wait = 0.3
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=10)
        server, _ = listener.accept()
    from mediaproxy.worker.linger import Conn

    conn = Conn(w.worker.cfg, server, ("127.0.0.1", 40000), ("127.0.0.1", 8000))
    conn.worker = w.worker
    w.worker.nr_conns += 1
    client.sendall(b"GET /disk HTTP/1.1\r\n\r\n")
    def urgent_after_the_answer():
        _responses(client, 1)
        client.send(b"!", socket.MSG_OOB)

    threading.Thread(target=urgent_after_the_answer, daemon=True).start()
    w.worker._read_headers(conn)
    assert _answered_on_a_thread(w, conn) is True  # back to the event loop, not closed after a blocked recv
    assert list(w.worker.keepalived_conns) == [conn]
    client.sendall(b"GET /disk?next HTTP/1.1\r\n\r\n")  # the connection still serves
    w.loop(0.05)
    w.worker.next_request_wait = 0.0
    _answered_on_a_thread(w, conn)
    assert b"X-Query: next" in _responses(client, 1)[0]


def test_a_thread_waits_no_longer_than_the_connection_may_stay_idle(fixed_date):
    w, conn, _client = _first_request_read(30.0, keepalive=1)  # kept open
    started = time.monotonic()
    assert _answered_on_a_thread(w, conn) is True
    assert 0.9 < time.monotonic() - started < 3.0  # gunicorn's keep-alive (1 s), not the 30 s wait

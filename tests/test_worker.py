"""The gunicorn worker class and connection settings of gunicorn.conf.py, over real HTTP:
a worker with no free thread leaves new connections to the others, a
kept-alive connection is closed after MEDIAPROXY_KEEPALIVE_REQUESTS requests, and a thread
waiting for a kept-alive connection's next request (MEDIAPROXY_NEXT_REQUEST_WAIT) keeps no new
connection waiting and every deadline of what follows."""

from __future__ import annotations

import http.client
import threading
import time

from . import media
from .test_external import ext


def test_busy_worker_leaves_new_connections_to_an_idle_one(make_server, origin):
    # Two workers of one thread each. One is held for 3 s by a slow origin; every
    # new connection meanwhile must go to the other and be answered at once.
    # (With MEDIAPROXY_WORKER_CLASS=gthread, stock gunicorn, this fails: about
    # half of them are accepted by the busy worker and wait the 3 s out.)
    srv = make_server("local", env={"MEDIAPROXY_FETCH_TIMEOUT": "10"}, workers=2, threads=1)
    slow = origin.add("/slow-worker.png", media.png(8, 8), delay=3.0)
    held = threading.Thread(target=lambda: srv.get(ext(slow), timeout=30))
    held.start()
    try:
        deadline = time.monotonic() + 10
        while origin.hits("/slow-worker.png") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert origin.hits("/slow-worker.png") == 1  # the slow request holds its worker's only thread now
        waits = []
        for _ in range(10):
            t = time.monotonic()
            r = srv.get("/_health", headers={"Connection": "close"}, timeout=30)
            waits.append(time.monotonic() - t)
            assert r.status_code == 200
        assert max(waits) < 1.5, [round(w, 2) for w in waits]
    finally:
        held.join()


def _conn_header(conn: http.client.HTTPConnection) -> tuple[int, str | None]:
    conn.request("GET", "/_health")
    r = conn.getresponse()
    r.read()
    return r.status, r.getheader("Connection")


def test_keepalive_connection_closed_after_the_request_limit(make_server):
    srv = make_server("local", env={"MEDIAPROXY_KEEPALIVE_REQUESTS": "3"})
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        assert _conn_header(conn) == (200, "keep-alive")
        assert _conn_header(conn) == (200, "keep-alive")
        assert _conn_header(conn) == (200, "close")  # the third request on the connection is its last
        sock = conn.sock
        assert sock is None or sock.recv(1) == b""  # and the server closed it
    finally:
        conn.close()


def test_keepalive_request_limit_off(make_server):
    srv = make_server("local", env={"MEDIAPROXY_KEEPALIVE_REQUESTS": "0"})
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        for _ in range(20):
            assert _conn_header(conn) == (200, "keep-alive")
    finally:
        conn.close()


def test_threads_waiting_for_a_next_request_keep_no_new_connection_waiting(make_server):
    # One worker of two threads, and a thread that answered a kept-alive connection waits up to 3 s
    # for its next request: it waits only while the other thread is free, so connections held open
    # without a next request never keep a new connection from its answer. (With the wait allowed
    # on every thread, the third connection waits ~3 s to be accepted.)
    srv = make_server("local", env={"MEDIAPROXY_NEXT_REQUEST_WAIT": "3"}, workers=1, threads=2)
    conns = []
    try:
        waits = []
        for _ in range(4):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
            conns.append(conn)
            t = time.monotonic()
            assert _conn_header(conn) == (200, "keep-alive")
            waits.append(time.monotonic() - t)  # then held open, sending nothing for now
        assert max(waits) < 1.5, [round(w, 2) for w in waits]
        for conn in conns:  # each connection's next request: its waiting thread's or the event loop's
            assert _conn_header(conn) == (200, "keep-alive")
    finally:
        for conn in conns:
            conn.close()


def _answer_on(sock, request: bytes) -> bytes:
    """Send one request on a raw connection; its whole answer (headers and a Content-Length body)."""
    sock.sendall(request)
    def more() -> bytes:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        return chunk

    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += more()
    head, _, body = buf.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += more()
    return head + b"\r\n\r\n" + body


def test_what_follows_an_answer_on_a_kept_alive_connection_keeps_every_deadline(make_server):
    # The thread that answered waits (here up to 1 s) for the connection's next request and reads
    # it: an incomplete header block still gets the header deadline's 408, and TCP urgent data (a
    # byte ordinary reads never see) neither holds the thread nor costs the connection.
    import socket

    srv = make_server("local", env={"MEDIAPROXY_NEXT_REQUEST_WAIT": "1", "MEDIAPROXY_HEADER_TIMEOUT": "1",
                                    "MEDIAPROXY_SEND_TIMEOUT": "1"}, workers=1, threads=3)
    health = b"GET /_health HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        assert _answer_on(s, health).startswith(b"HTTP/1.1 200")
        s.sendall(b"GET /_health HTTP/1.1\r\nHo")  # and nothing more
        t = time.monotonic()
        rest = b""
        while chunk := s.recv(65536):
            rest += chunk
        assert rest.startswith(b"HTTP/1.1 408") and time.monotonic() - t < 5
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        assert _answer_on(s, health).startswith(b"HTTP/1.1 200")
        s.send(b"!", socket.MSG_OOB)
        time.sleep(2.5)  # past the send deadline a blocked read would have waited, then closed
        assert _answer_on(s, health).startswith(b"HTTP/1.1 200")

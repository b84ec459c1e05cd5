"""Cache hits in the fast path's memory tier answered on the worker's event loop
(mediaproxy/worker/answers.py), over real HTTP against gunicorn.

On one worker, the first hit of a result is answered by a thread (the entry comes from the disk
cache, then stays in memory) and the next ones by the event loop: both answers must be the same
bytes on the wire, Date and X-Request-Id values aside, for GET, HEAD, conditional and range
requests, alone, pipelined and to a client whose socket buffer is full. A hit is answered while
every thread is busy (it needs none); anything else still takes a thread.
"""

from __future__ import annotations

import re
import secrets
import socket
import threading
import time

import pytest

from . import media
from .test_external import ext
from .test_fastpath import access_lines, noise_png, wait_for_line

_VOLATILE = re.compile(rb"^(Date|X-Request-Id): [^\r]*\r\n", re.MULTILINE | re.IGNORECASE)


def _request(method: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: cdn.test", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_response(sock: socket.socket, buf: bytearray, method: str) -> bytes:
    """One whole response (headers and body) from ``sock``, what follows it left in ``buf``."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole response: {bytes(buf)[:200]!r}"
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end])
    length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
    status = int(head[9:12])
    size = int(length.group(1)) if length and method != "HEAD" and status not in (204, 304) else 0
    while len(buf) < end + size:
        chunk = sock.recv(65536)
        assert chunk, "closed before the whole body"
        buf += chunk
    whole = bytes(buf[: end + size])
    del buf[: end + size]
    return whole


def _masked(response: bytes) -> bytes:
    head, sep, body = response.partition(b"\r\n\r\n")
    fields = _VOLATILE.findall(head + b"\r\n")
    assert sorted(f.lower() for f in fields) == [b"date", b"x-request-id"], head  # once each
    return _VOLATILE.sub(lambda m: m.group(1) + b": *\r\n", head + b"\r\n") + sep + body


def _exchange(port: int, requests: list[tuple[str, bytes]]) -> list[bytes]:
    """Send the requests pipelined (in one write) on one connection; their responses in order."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"".join(data for _, data in requests))
        buf = bytearray()
        return [_read_response(sock, buf, method) for method, _ in requests]


@pytest.fixture(scope="module")
def srv(make_server):
    # one worker: the thread's answer and the loop's come from the same memory tier
    return make_server("local", env={"MEDIAPROXY_ACCESS_LOG": "1", "MEDIAPROXY_LOG_LEVEL": "info"},
                       workers=1, threads=2)


def _new_result(srv, size: int = 64, noise: bool = False) -> str:
    """A fresh cached result (a miss through Falcon, stored): its URL. ``noise``: a PNG of
    incompressible pixels (size 128: ~50 KB, still small enough for the memory tier)."""
    user, h = str(secrets.randbelow(10**17) + 10**17), secrets.token_hex(16)
    srv.put("cdn", f"avatars/{user}/{h}", noise_png(size) if noise else media.jpeg(256, 256))
    path = f"/avatars/{user}/{h}.{'png' if noise else 'webp'}?size={size}"
    miss = _exchange(srv.port, [("GET", _request("GET", path))])[0]
    assert b"\r\nx-cache: MISS\r\n" in miss.lower() or b"x-cache: miss" in miss.lower()
    return path


def _etag(response: bytes) -> str:
    return re.search(rb"\r\netag: *([^\r]*)", response, re.IGNORECASE).group(1).decode()


VARIANTS = {
    "get": ("GET", {}),
    "head": ("HEAD", {}),
    "if-none-match": ("GET", {"If-None-Match": "ETAG"}),
    "range": ("GET", {"Range": "bytes=0-9"}),
    "range-416": ("GET", {"Range": "bytes=999999-"}),
    "close": ("GET", {"Connection": "close"}),
    "http-1.0": ("GET", {}),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_loop_answers_a_hit_byte_for_byte_as_a_thread_does(srv, variant):
    method, headers = VARIANTS[variant]
    path = _new_result(srv)
    if "If-None-Match" in headers:
        etag = _etag(_exchange(srv.port, [("HEAD", _request("HEAD", path))])[0])  # the thread's (fills memory)
        headers = {"If-None-Match": etag}
        first = _exchange(srv.port, [(method, _request(method, path, headers))])[0]
    else:
        data = _request(method, path, headers)
        if variant == "http-1.0":
            data = data.replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)
        first = _exchange(srv.port, [(method, data)])[0]  # from the disk cache, by a thread
    data = _request(method, path, headers)
    if variant == "http-1.0":
        data = data.replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)
    second = _exchange(srv.port, [(method, data)])[0]  # from memory, by the event loop
    assert b"x-cache: HIT" in first.lower().replace(b"x-cache: hit", b"x-cache: HIT")
    assert _masked(first) == _masked(second)
    expected_status = {"if-none-match": b"304", "range": b"206", "range-416": b"416"}.get(variant, b"200")
    assert second[9:12] == expected_status


def test_the_loop_answers_pipelined_hits_in_order_with_a_thread_answer_between(srv):
    hit, other = _new_result(srv), _new_result(srv, size=32)
    _exchange(srv.port, [("GET", _request("GET", hit))])  # in memory now
    etag = _etag(_exchange(srv.port, [("HEAD", _request("HEAD", hit))])[0])
    missing = f"/avatars/1/{secrets.token_hex(16)}.webp?size=64"  # a 404: Falcon, on a thread
    plan = [
        ("GET", _request("GET", hit)),
        ("HEAD", _request("HEAD", hit)),
        ("GET", _request("GET", missing)),
        ("GET", _request("GET", hit, {"If-None-Match": etag})),
        ("GET", _request("GET", other)),  # in the disk cache only: a thread, then memory
        ("GET", _request("GET", hit)),
        ("GET", _request("GET", "/_health")),
        ("GET", _request("GET", other)),
    ]
    together = _exchange(srv.port, plan)
    one_by_one = [_exchange(srv.port, [step])[0] for step in plan]
    assert [_masked(r) for r in together] == [_masked(r) for r in one_by_one]
    assert [r[9:12] for r in together] == [b"200", b"200", b"404", b"304", b"200", b"200", b"200", b"200"]
    ids = [re.search(rb"\r\nx-request-id: *([^\r]*)", r, re.IGNORECASE).group(1) for r in together]
    assert len(set(ids)) == len(ids)  # every answer its own request id


def test_a_hit_is_logged_and_counted_as_on_a_thread(srv):
    path = _new_result(srv)
    _exchange(srv.port, [("GET", _request("GET", path))])  # a thread's hit
    answer = _exchange(srv.port, [("GET", _request("GET", path))])[0]  # the loop's
    rid = re.search(rb"\r\nx-request-id: *([^\r]*)", answer, re.IGNORECASE).group(1).decode()
    line = wait_for_line(srv, lambda x: x.get("request_id") == rid)
    size = int(re.search(rb"\r\ncontent-length: *(\d+)", answer, re.IGNORECASE).group(1))
    assert {k: line[k] for k in ("method", "status", "bytes", "cache", "fast", "route", "path")} == {
        "method": "GET", "status": 200, "bytes": size, "cache": "hit", "fast": True,
        "route": "/avatars/{user_id}/{filename}", "path": path.split("?")[0],
    }
    hits = [x for x in access_lines(srv) if x.get("path") == path.split("?")[0]]
    assert [x["cache"] for x in hits] == ["miss", "hit", "hit"]


def test_a_hit_is_answered_while_every_thread_is_busy(make_server, origin):
    # Two threads, both held by fetches from a slow origin: a hit on a kept-alive connection is
    # still answered at once, by the event loop (on a thread it would wait for the origin).
    srv = make_server("local", env={"MEDIAPROXY_FETCH_TIMEOUT": "60"}, workers=1, threads=2)
    path = _new_result(srv)
    names = [f"/slow-{secrets.token_hex(4)}.png" for _ in range(2)]
    slow = [origin.add(name, media.png(8, 8), delay=30.0) for name in names]
    with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as sock:
        buf = bytearray()
        sock.sendall(_request("GET", path))
        _read_response(sock, buf, "GET")  # the thread's hit: now in memory, the connection kept alive
        held = [threading.Thread(target=lambda u=u: srv.get(ext(u), timeout=60)) for u in slow]
        for t in held:
            t.start()
        deadline = time.monotonic() + 20
        while sum(origin.hits(n) for n in names) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sum(origin.hits(n) for n in names) == 2  # both threads wait on the origin now
        sock.settimeout(15)  # far below the origin's 30 s: only an answer without a thread comes in time
        sock.sendall(_request("GET", path))
        answer = _read_response(sock, buf, "GET")
        assert answer.startswith(b"HTTP/1.1 200 ") and all(t.is_alive() for t in held)
        for t in held:
            t.join()


def test_a_client_with_a_full_socket_buffer_gets_every_answer_and_holds_nothing(srv):
    # A client pipelines many hits and reads nothing for a while: the loop sends what the socket
    # takes, its writer the rest; meanwhile another connection is answered; then every response
    # arrives whole, in order.
    path, elsewhere = _new_result(srv, size=128, noise=True), _new_result(srv)
    _exchange(srv.port, [("GET", _request("GET", path)), ("GET", _request("GET", elsewhere))])  # in memory now
    one = _masked(_exchange(srv.port, [("GET", _request("GET", path))])[0])
    assert 16 * 1024 < len(one) < 64 * 1024  # a memory-tier entry; 300 of them are over any socket buffer
    n = 300
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(30)
    slow.connect(("127.0.0.1", srv.port))
    try:
        slow.sendall(_request("GET", path) * n)
        time.sleep(0.5)  # the server fills the socket buffers and waits to write
        others = _exchange(srv.port, [("GET", _request("GET", "/_health")), ("GET", _request("GET", elsewhere))])
        assert [o[:13] for o in others] == [b"HTTP/1.1 200 "] * 2
        buf = bytearray()
        answers = [_read_response(slow, buf, "GET") for _ in range(n)]
    finally:
        slow.close()
    assert all(_masked(a) == one for a in answers)


def test_a_client_pipelining_hits_without_pause_leaves_the_loop_to_other_connections(make_server):
    # One client streams pipelined hits and reads its answers as fast as they come: the loop answers
    # what one read brought, then reads that socket again only in turn with every other connection.
    # Were each next read taken at once, the loop would answer that client alone for as long as it
    # keeps sending (until its entry leaves memory), and every other connection of the worker would
    # wait: here another client's request is answered while a few read-fulls of hits go by. (No
    # limit of requests per connection here: one would close the stream after that many.)
    srv = make_server("local", env={"MEDIAPROXY_KEEPALIVE_REQUESTS": "0"}, workers=1, threads=2)
    path = _new_result(srv)
    _exchange(srv.port, [("GET", _request("GET", path))])  # in memory now
    one = _request("HEAD", path)
    answer_size = len(_exchange(srv.port, [("HEAD", one)])[0])
    stop = threading.Event()
    answered = [0]

    attacker = socket.create_connection(("127.0.0.1", srv.port), timeout=60)

    def send() -> None:
        chunk = one * ((1 << 20) // len(one))
        try:
            while not stop.is_set():
                attacker.sendall(chunk)
        except OSError:
            pass

    def read() -> None:
        got = 0
        try:
            while not stop.is_set():
                data = attacker.recv(1 << 20)
                if not data:
                    return
                got += len(data)
                answered[0] = got // answer_size
        except OSError:
            pass

    threads = [threading.Thread(target=send, daemon=True), threading.Thread(target=read, daemon=True)]
    for t in threads:
        t.start()
    try:
        while answered[0] < 2000 and all(t.is_alive() for t in threads):  # the stream runs
            time.sleep(0.01)
        assert answered[0] >= 2000, f"the stream stopped after {answered[0]} answers"
        before = answered[0]
        other = _exchange(srv.port, [("GET", _request("GET", "/_health"))])[0]
        between = answered[0] - before
    finally:
        stop.set()
        attacker.close()
        for t in threads:
            t.join()
    assert other.startswith(b"HTTP/1.1 200 ")
    assert between < 5000, f"{between} hits of one client answered while another waited"

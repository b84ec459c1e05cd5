"""Request bodies over real HTTP against a real gunicorn (MEDIAPROXY_MODE=all): slow bodies hold no
thread (a small body is read by the event loop, an upload only after its key was checked, at a
minimum rate, within a deadline, a few per client), and an early refusal never promises a
connection it then drops (docs/resilience.md "Slow clients get no thread")."""

from __future__ import annotations

import socket
import time
import uuid

import pytest
import requests

from mediaproxy.worker import BodyPace, BodyTooSlow, PacedUnreader, body_framing, chunked_end, header_end

from . import media
from .cdnutil import hash_, snowflake
from .library import Stack, library_env
from .server import Dribble

V2 = "/v2"


def _stack(make_server, tmp_path_factory, env: dict, threads: int = 4, workers: int = 1) -> Stack:
    workdir = tmp_path_factory.mktemp("bodies")
    srv = make_server("local", env=library_env(workdir, {"MEDIAPROXY_UPLOAD_MAX_BYTES": str(3 * 1024**2), **env}),
                      workers=workers, threads=threads)
    return Stack(srv, workdir, worker=False)


def _answer(s: socket.socket, timeout: float = 15) -> tuple[int, dict, bytes]:
    """One whole response read from ``s``: (status, headers, body)."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    want = int(headers.get("content-length", "0"))
    while len(body) < want:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def _multipart_head(boundary: str, filename: str = "photo.jpg") -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()


def _upload_request(port: int, path: str, key: str | None, length: int, boundary: str) -> bytes:
    auth = f"X-API-Key: {key}\r\n" if key else ""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n\r\n").encode()


class Trickle(Dribble):
    """Connections that send a request's headers, then its body one byte every ``every`` seconds."""


def _timed(fn):
    t = time.monotonic()
    r = fn()
    return r, time.monotonic() - t


# -- pure logic ----------------------------------------------------------------------------------

def test_the_framing_the_event_loop_waits_for():
    head = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nExpect: 100-continue\r\n\r\nbody"
    end = header_end(head)
    assert head[end:] == b"body"
    assert body_framing(head[:end]) == (12, False, True)
    assert body_framing(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == (None, False, False)
    assert body_framing(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") == (None, True, False)
    # unclear framing: the parser refuses it, the loop does not wait for a body
    assert body_framing(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n") is None
    assert body_framing(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n") is None
    assert body_framing(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n") is None
    body = b"4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nTrailer: 1\r\n\r\nNEXT"
    assert chunked_end(body, 0)[0] == len(body) - 4
    end, resume = chunked_end(body[:12], 0)  # one chunk here, the rest not yet
    assert end is None and resume == 9
    assert chunked_end(body, resume)[0] == len(body) - 4
    assert chunked_end(b"zz\r\n", 0) == (None, -1)


def test_a_body_must_keep_a_minimum_rate_and_a_deadline():
    pace = BodyPace(100.0, min_rate=1000, grace=10, timeout=60)
    assert pace.due() == 110.0  # nothing yet: due when the grace ends
    pace.got = 20_000
    assert pace.due() == 130.0  # 20 s of the minimum rate bought
    pace.got = 10**9
    assert pace.due() == 160.0  # never past the deadline
    assert "not complete after 60 s" in pace.why(161.0)
    assert BodyPace(0.0, min_rate=0, grace=0, timeout=0).due() == float("inf")


def test_a_thread_waits_for_a_body_only_until_it_falls_behind():
    a, b = socket.socketpair()
    try:
        reader = PacedUnreader(a)
        a.settimeout(10)
        reader.pace = BodyPace(time.monotonic(), min_rate=1000, grace=0.3, timeout=60)
        t0 = time.monotonic()
        with pytest.raises(BodyTooSlow):
            reader.read(10)
        assert 0.25 < time.monotonic() - t0 < 1.5
        assert a.gettimeout() == 10  # the send deadline is back
        # past due, bytes the client sent while the thread was busy elsewhere still count
        reader.pace = BodyPace(time.monotonic() - 100, min_rate=1000, grace=0, timeout=600)
        b.sendall(b"x" * 5000)
        assert reader.read(5000) == b"x" * 5000
        with pytest.raises(BodyTooSlow, match="under 1000 bytes/s"):
            reader.read(1)
        reader.pace = None  # no body being read: no pace
        b.sendall(b"y")
        assert reader.read(1) == b"y"
    finally:
        a.close()
        b.close()


# -- over HTTP -----------------------------------------------------------------------------------

def test_slow_bodies_on_the_login_route_hold_no_thread(make_server, tmp_path_factory):
    """More slow-body connections on an unauthenticated route than the server has threads: health
    checks, a cached origin hit and a library list still answer at once; past the minimum rate
    each slow body gets 408 and is closed. A declared body over the small-body limit is refused
    unread (413, Connection: close). (Before: every thread waited for a body byte, all timed out.)"""
    stack = _stack(make_server, tmp_path_factory, {"MEDIAPROXY_BODY_GRACE": "3", "MEDIAPROXY_BODY_MIN_RATE": "200"},
                   threads=4)
    srv = stack.server
    u, h = snowflake(), hash_()
    srv.put("cdn", f"avatars/{u}/{h}", media.jpeg(64, 64))
    hit = f"/avatars/{u}/{h}.png?size=32"
    assert srv.get(hit).status_code == 200
    assert stack.api("GET", "/api/v1/media/list").status_code == 200
    login = (f"POST {V2}/admin/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "Content-Length: {n}\r\n\r\n{{\"email\": ")
    trickle = Trickle(srv.port, [login.format(n=2000).encode() for _ in range(10)], every=0.5)
    try:
        time.sleep(1)
        waits = []
        for _ in range(5):
            for path, key in ((hit, None), ("/healthz", None), ("/api/v1/media/list", "default")):
                r, took = _timed(lambda p=path, k=key: stack.api("GET", p, key=k, timeout=30,
                                                                  headers={"Connection": "close"}))
                assert r.status_code == 200, (path, r.status_code)
                waits.append(took)
        assert max(waits) < 3, [round(w, 2) for w in waits]  # before: every one timed out (30 s)
        # a declared body over the small-body limit on a route without a key: refused unread
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(login.format(n=100_000).encode())
            status, headers, body = _answer(s)
            assert status == 413 and headers.get("connection") == "close", (status, headers, body)
        # past the grace, at 2 bytes/s against 200 bytes/s: 408, closed
        s = trickle.socks[0]
        status, headers, body = _answer(s, timeout=10)
        assert status == 408 and headers.get("connection") == "close"
        s.settimeout(5)
        assert s.recv(100) == b""
    finally:
        trickle.close()
        stack.stop()
    assert "408, closed" in _log(srv)


def _log(srv) -> str:
    return (srv.storage_dir.parent / "gunicorn.log").read_text(errors="replace")


@pytest.mark.parametrize("rule", ["min_rate", "deadline"])
def test_a_slow_upload_with_a_valid_key_is_cut_and_stores_nothing(make_server, tmp_path_factory, rule):
    """An upload over the small-body limit is read by a thread once its key is checked, at a pace: a
    body under the minimum rate (or still arriving at the deadline) is answered 408 with
    Connection: close, and nothing of it is stored."""
    env = ({"MEDIAPROXY_BODY_GRACE": "1", "MEDIAPROXY_BODY_MIN_RATE": "50000"} if rule == "min_rate"
           else {"MEDIAPROXY_BODY_GRACE": "1", "MEDIAPROXY_BODY_MIN_RATE": "1000", "MEDIAPROXY_BODY_TIMEOUT": "3"})
    stack = _stack(make_server, tmp_path_factory, env)
    srv = stack.server
    boundary = uuid.uuid4().hex
    length = 600_000
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(_upload_request(srv.port, "/api/v1/media/upload", stack.key, length, boundary)
                      + _multipart_head(boundary) + media.jpeg(64, 64)[:2000])
            t0 = time.monotonic()
            status = None
            s.settimeout(0.2)
            while time.monotonic() - t0 < 15:  # 5 KB/s: over the deadline's 1000 B/s, under 50000 B/s
                try:
                    s.send(b"\0" * 1000)
                except OSError:
                    break
                try:
                    status, headers, body = _answer(s, timeout=0.2)
                    break
                except (TimeoutError, ConnectionError):
                    pass
            took = time.monotonic() - t0
            if status is None:
                status, headers, body = _answer(s, timeout=5)
        assert status == 408 and headers.get("connection") == "close", (status, headers, body)
        assert b"request body timed out" in body
        assert took < 6, took
        assert stack.stored_keys("") == []
        listed = stack.api("GET", "/api/v1/media/list").json()
        assert listed["total"] == 0, listed
        # the server goes on: a normal upload is stored
        assert stack.upload(media.jpeg(64, 64)).status_code == 201
    finally:
        stack.stop()


def test_uploads_arriving_are_limited_per_client(make_server, tmp_path_factory):
    """A client's uploads still arriving hold at most MEDIAPROXY_UPLOADS_PER_CLIENT threads per
    process: one more is 429 (Connection: close) at once, while another client still uploads."""
    stack = _stack(make_server, tmp_path_factory, {"MEDIAPROXY_UPLOADS_PER_CLIENT": "2", "MEDIAPROXY_BODY_GRACE": "30",
                                                   "MEDIAPROXY_BODY_MIN_RATE": "1"}, threads=6)
    srv = stack.server
    boundary = uuid.uuid4().hex
    held = []
    try:
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.sendall(_upload_request(srv.port, "/api/v1/media/upload", stack.key, 500_000, boundary)
                      + _multipart_head(boundary) + b"\xff\xd8\xff")
            held.append(s)
        time.sleep(1)  # both are being read by a thread
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            t0 = time.monotonic()
            s.sendall(_upload_request(srv.port, "/api/v1/media/upload", stack.key, 500_000, boundary)
                      + _multipart_head(boundary))
            status, headers, body = _answer(s)
            assert status == 429 and headers.get("connection") == "close", (status, headers, body)
            assert headers.get("retry-after") == "1" and time.monotonic() - t0 < 2
        # the v2 route counts against the same client
        r = stack.api("POST", f"{V2}/images", files={"file": ("a.jpg", b"\0" * 200_000, "image/jpeg")},
                      headers={"Connection": "close"})
        assert r.status_code == 429, r.text
        # another client is not refused
        r = stack.upload(media.jpeg(300, 300), key=stack.other_key)
        assert r.status_code == 201, r.text
        big = media.jpeg(900, 900) + b"\0" * 100_000
        assert len(big) > 64 * 1024
        assert stack.upload(big, key=stack.other_key).status_code == 201
    finally:
        for s in held:
            s.close()
        stack.stop()
    # the places come back once those bodies end: the first client uploads again
    deadline = time.monotonic() + 20
    while True:
        r = requests.post(stack.base + "/api/v1/media/upload", headers=stack.auth, timeout=30,
                          files={"file": ("b.jpg", media.jpeg(600, 600) + b"\0" * 80_000, "image/jpeg")})
        if r.status_code != 429 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert r.status_code == 201, r.text
    assert stack.stored_keys("") != []


@pytest.mark.parametrize("size", [2_000, 200_000])
def test_an_early_refusal_never_promises_keep_alive_then_closes(make_server, tmp_path_factory, size):
    """20 uploads refused before their body is read (401: no key or a wrong one; 403: a PUT to an
    upload URL with a bad signature), each followed by a request on the same connection: a small
    body is drained from memory and the connection kept; a large one is answered
    ``Connection: close`` and closed. Never keep-alive then a dead connection (4-9 of 20 before)."""
    stack = _stack(make_server, tmp_path_factory, {})
    srv = stack.server
    boundary = uuid.uuid4().hex
    body = _multipart_head(boundary) + b"\0" * size + f"\r\n--{boundary}--\r\n".encode()
    kept = closed = 0
    try:
        for i in range(20):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                if i % 3 == 2:
                    s.sendall(f"PUT /api/v1/media/signed/library/acme/x/photo.jpg?expires=9999999999&signature=00"
                              f" HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
                    want = 403
                else:
                    key = None if i % 3 else "mp_wrong_key"
                    s.sendall(_upload_request(srv.port, "/api/v1/media/upload", key, len(body), boundary) + body)
                    want = 401
                status, headers, _ = _answer(s)
                assert status == want, (i, status)
                if headers.get("connection") == "close":
                    closed += 1
                    continue
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                status, _, _ = _answer(s)  # fails with a reset when the server drops the connection
                assert status == 200
                kept += 1
    finally:
        stack.stop()
    if size < 64 * 1024:
        assert kept == 20
    else:
        assert closed == 20


# -- multipart forms -------------------------------------------------------------------------------

def test_a_form_of_many_tiny_parts_is_refused_early_and_stores_nothing(make_server, tmp_path_factory):
    """50,000 empty parts in 5 MiB cost ~40 s of the parser's CPU: the parts are counted as the
    body arrives, and past FORM_PARTS_MAX the upload is 413 at once (Connection: close), with
    nothing stored even when a file part came first; an ordinary upload right after is served."""
    stack = _stack(make_server, tmp_path_factory, {"MEDIAPROXY_UPLOAD_MAX_BYTES": str(8 * 1024**2)})
    boundary = uuid.uuid4().hex
    tiny = f"--{boundary}\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n\r\n".encode()
    for file_first in (False, True):
        body = (_multipart_head(boundary) + media.jpeg(64, 64) + b"\r\n") if file_first else b""
        body += tiny * 50_000 + f"--{boundary}--\r\n".encode()
        assert len(body) > 4_000_000
        t0 = time.monotonic()
        r = requests.post(stack.base + "/api/v1/media/upload", data=body, timeout=60,
                          headers={**stack.auth, "Content-Type": f"multipart/form-data; boundary={boundary}"})
        took = time.monotonic() - t0
        assert r.status_code == 413, r.text
        assert r.json() == {"error": "the form has more than 128 parts"}
        assert r.headers.get("Connection") == "close"
        assert took < 3, took
    try:
        assert stack.stored_keys("") == []
        assert stack.api("GET", "/api/v1/media/list").json()["total"] == 0
        t0 = time.monotonic()
        assert stack.upload(media.jpeg(64, 64), tags="a").status_code == 201
        assert time.monotonic() - t0 < 3
    finally:
        stack.stop()


def test_a_form_field_sent_empty_is_kept_as_empty(make_server, tmp_path_factory):
    """``alt=`` (sent, empty) is an empty alt text, not an absent one; an empty orgSlug is still
    not a different organization."""
    stack = _stack(make_server, tmp_path_factory, {})
    try:
        r = stack.upload(media.jpeg(64, 64), alt="", caption="", orgSlug="")
        assert r.status_code == 201, r.text
        assert r.json()["alt"] == "" and r.json()["caption"] == "", r.json()
        r = stack.upload(media.jpeg(64, 64))
        assert r.json()["alt"] is None and r.json()["caption"] is None, r.json()
    finally:
        stack.stop()

"""Resilience over real HTTP: concurrent faults never change an answer, gunicorn's own
error pages follow the error contract, storage failures fail fast and trip a breaker,
hits are served while misses are stuck, a broken cache disk costs nothing, slow clients
hold no thread. Each scenario of bench/resilience.py, shortened."""

from __future__ import annotations

import collections
import socket
import threading

import pytest
import requests

from .cdnutil import hash_, jpeg640, snowflake


def _hammer(urls: list[str], clients: int, per_client: int, timeout: float = 60) -> collections.Counter:
    """``clients`` threads, each with its own keep-alive session, cycling over ``urls``."""
    counts: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def run(i: int) -> None:
        with requests.Session() as s:
            for n in range(per_client):
                r = s.get(urls[(i + n) % len(urls)], timeout=timeout)
                with lock:
                    counts[r.status_code] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def test_concurrent_corrupt_inputs_are_always_400(server):
    # libvips keeps one error buffer per process: deciding 400-or-500 from its text let
    # one thread's sniff() turn another's 400 into a 500 (110 of 300 in the issue).
    data = jpeg640()
    paths = []
    for cut in (0.3, 0.5, 0.7, 0.9):
        u, h = snowflake(), hash_()
        server.put("cdn", f"avatars/{u}/{h}", data[: int(len(data) * cut)])
        paths.append(f"/avatars/{u}/{h}")
    g, h = snowflake(), hash_()
    server.put("cdn", f"avatars/{g}/{h}", b"not an image at all" * 10)  # refused by sniff() itself
    urls = [server.url(f"{p}.{ext}?size=64") for p in paths for ext in ("webp", "png")]
    urls.append(server.url(f"/avatars/{g}/{h}.png"))
    counts = _hammer(urls, clients=8, per_client=30)
    assert counts == {400: 8 * 30}, counts


def _raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(120)) + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n", 400),
        (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    ],
    ids=["uri-too-long", "too-many-headers", "header-too-large", "bad-header", "tls-on-plain", "bad-version"],
)
def test_gunicorn_error_pages_follow_the_error_contract(local_server, request_bytes, status):
    code, headers, body = _parse(_raw(local_server.port, request_bytes))
    assert code == status
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["access-control-allow-origin"] == "*"
    assert headers["cache-control"] == "no-store"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body) and 0 < len(body) < 100
    assert b"<html" not in body
    assert local_server.get("/_health").status_code == 200  # and the worker is fine

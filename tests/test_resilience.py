"""Resilience over real HTTP: concurrent faults never change an answer, gunicorn's own
error pages follow the error contract, storage failures fail fast and trip a breaker,
hits are served while misses are stuck, a broken cache disk costs nothing, slow clients
hold no thread. Each scenario of bench/resilience.py, shortened."""

from __future__ import annotations

import collections
import threading

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

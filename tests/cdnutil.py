"""Helpers shared by the HTTP-level CDN tests: ids, cached media, raw requests."""

from __future__ import annotations

import http.client
import secrets
from functools import cache

import pyvips

from . import media


def snowflake() -> str:
    return str(secrets.randbelow(10**17) + 10**17)


def hash_() -> str:
    return secrets.token_hex(16)


@cache
def jpeg640() -> bytes:
    return media.jpeg(640, 480)


@cache
def square_src(n: int = 512) -> bytes:
    return media.jpeg(n, n)


@cache
def gif6() -> bytes:
    return media.animation(120, 90, frames=6, delay=70, fmt="gif")


@cache
def webp6() -> bytes:
    return media.animation(120, 90, frames=6, delay=70, fmt="webp")


@cache
def stripes_tall() -> bytes:
    """100x300: red, green, blue from top to bottom."""
    return media.bands(100, 300, [(255, 0, 0), (0, 255, 0), (0, 0, 255)]).pngsave_buffer()


@cache
def stripes_wide() -> bytes:
    """300x100: red, green, blue from left to right."""
    return media.bands(300, 100, [(255, 0, 0), (0, 255, 0), (0, 0, 255)], vertical=False).pngsave_buffer()


@cache
def noise_png(w: int = 300, h: int = 300) -> bytes:
    """Incompressible: a PNG of a few hundred KB (stored in the cache as a file)."""
    bands = [pyvips.Image.gaussnoise(w, h, sigma=80, mean=128).cast("uchar") for _ in range(3)]
    return bands[0].bandjoin(bands[1:]).copy(interpretation="srgb").pngsave_buffer(compression=1)


def raw_request(base: str, method: str, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """Send the path exactly as given (requests/urllib3 would normalise dot segments)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def assert_error(r, status: int) -> None:
    """An error answer per the contract: plain text, short, never cached, no stack trace."""
    assert r.status_code == status, (r.status_code, r.text[:200])
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "Traceback" not in r.text and len(r.text) < 500
    if status != 416:  # a 416 may still describe the representation (RFC 9110 15.5.17)
        assert "ETag" not in r.headers

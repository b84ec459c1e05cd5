"""Per-request hot path: cache keys, ETags, Range and If-None-Match parsing.

The compiled module ``mediaproxy._native`` (built from ``native/`` by
setup.py) replaces ``parse_range`` and ``etag_matches`` when present; this
file is the pure-Python reference it must match exactly (``tests/test_hotpath.py``
checks that over many generated inputs). ``MEDIAPROXY_NO_NATIVE=1`` at install
time skips the extension.
"""

from __future__ import annotations

import xxhash

KEY_VERSION = "1"


def py_result_key(bucket: str, key: str, canonical: str, pipeline: str) -> str:
    """Content address of one result: source identity + canonical spec + pipeline version."""
    return xxhash.xxh3_128_hexdigest(f"{KEY_VERSION}\0{bucket}\0{key}\0{canonical}\0{pipeline}".encode())


def py_etag(body: bytes | memoryview) -> str:
    """Strong ETag from the exact bytes."""
    return '"' + xxhash.xxh3_128_hexdigest(body) + '"'


def decimal(s: str) -> bool:
    """ASCII digits only (str.isdigit also accepts "²" and friends, which int() refuses): test any
    text from outside with this before int()."""
    return s.isascii() and s.isdigit()


_digits = decimal  # the name native/_native.pyx mirrors


def py_parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range → (start, end) inclusive.

    None means "serve the whole body" (no header, a header we do not honour
    such as several ranges or another unit, or a syntax error, as RFC 9110
    allows); ``(-1, -1)`` means unsatisfiable (416).
    """
    if not header:
        return None
    header = header.strip()
    if not header.startswith("bytes="):
        return None
    spec = header[6:].strip()
    if "," in spec:
        return None
    first, sep, last = spec.partition("-")
    first, last = first.strip(), last.strip()
    if not sep:
        return None
    if first == "":
        if not _digits(last):
            return None
        n = int(last)
        if n == 0 or size == 0:
            return (-1, -1)
        return (max(0, size - n), size - 1)
    if not _digits(first) or (last and not _digits(last)):
        return None
    start = int(first)
    if last and int(last) < start:
        return None  # syntactically invalid: ignored, the whole body is served
    if start >= size:
        return (-1, -1)
    end = int(last) if last else size - 1
    return (start, min(end, size - 1))


def py_etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match: weak comparison over a list of entity tags, or ``*``."""
    if not header:
        return False
    header = header.strip()
    if header == "*":
        return True
    bare = etag[2:] if etag.startswith("W/") else etag
    for item in header.split(","):
        item = item.strip()
        if item.startswith("W/"):
            item = item[2:]
        if item == bare:
            return True
    return False


# Key derivation and ETags stay Python: compiled, they were hardly faster (bench/micro.py,
# docs/performance.md), because xxhash's C code does the work either way and the fast path
# memoises keys.
result_key, etag = py_result_key, py_etag

try:  # pragma: no cover - exercised when the extension is built
    from ._native import etag_matches, parse_range  # type: ignore[import-not-found]

    NATIVE = True
except ImportError:  # pragma: no cover - exercised when it is not
    parse_range, etag_matches = py_parse_range, py_etag_matches
    NATIVE = False

# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled hot path (``mediaproxy._native``): the same functions, with the same
results, as the pure-Python reference in ``mediaproxy/hotpath.py``.

``tests/test_hotpath.py`` proves equality over generated inputs. Only what
``bench/micro.py`` shows paying is here: Range and If-None-Match parsing.
Cache-key derivation and ETag formatting were compiled too and were hardly
faster (xxhash's C code does the work either way), so they stay Python (the
figures: docs/performance.md).
"""

cdef inline bint _digits(str s):
    """Non-empty and ASCII digits only."""
    cdef Py_ssize_t i, n = len(s)
    cdef Py_UCS4 c
    if n == 0:
        return False
    for i in range(n):
        c = s[i]
        if c < 48 or c > 57:
            return False
    return True


cdef inline object _to_int(str s):
    """int() of an ASCII digit string, in C when it fits."""
    cdef Py_ssize_t i, n = len(s)
    cdef long long v = 0
    if n > 18:
        return int(s)
    for i in range(n):
        v = v * 10 + (<long long>s[i] - 48)
    return v


def parse_range(header, long long size):
    """One ``bytes=`` range → (start, end) inclusive; None: whole body; (-1, -1): 416."""
    cdef str h, spec, first, last, sep
    cdef object start, end, n
    if not header:
        return None
    h = (<str?>header).strip()
    if not h.startswith("bytes="):
        return None
    spec = h[6:].strip()
    if "," in spec:
        return None
    first, sep, last = spec.partition("-")
    if not sep:
        return None
    first = first.strip()
    last = last.strip()
    if len(first) == 0:
        if not _digits(last):
            return None
        n = _to_int(last)
        if n == 0 or size == 0:
            return (-1, -1)
        return (max(0, size - n), size - 1)
    if not _digits(first) or (len(last) != 0 and not _digits(last)):
        return None
    start = _to_int(first)
    if len(last) != 0 and _to_int(last) < start:
        return None
    if start >= size:
        return (-1, -1)
    end = _to_int(last) if len(last) != 0 else size - 1
    return (start, min(end, size - 1))


def etag_matches(header, str etag):
    """If-None-Match: weak comparison over a list of entity tags, or ``*``."""
    cdef str h, item, bare
    if not header:
        return False
    h = (<str?>header).strip()
    if h == "*":
        return True
    bare = etag[2:] if etag.startswith("W/") else etag
    for item in h.split(","):
        item = item.strip()
        if item.startswith("W/"):
            item = item[2:]
        if item == bare:
            return True
    return False

"""The compiled hot path (mediaproxy._native) gives exactly the pure-Python
reference's results, over many generated inputs; and the reference itself
follows RFC 9110 on the cases that matter."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mediaproxy import hotpath

native = pytest.importorskip("mediaproxy._native", reason="the native hot path is not built")

SETTINGS = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that looks like the headers we parse: digits (ASCII and not), separators, whitespace, units.
_ATOMS = st.sampled_from(
    ["bytes", "=", "-", ",", " ", "\t", "0", "1", "9", "42", "00", "999999999999999999999", "²", "٣", "\xa0",
     "items", "W/", '"', "*", "abc", "\x85"]
)
header_like = st.lists(_ATOMS, max_size=8).map("".join) | st.text(max_size=30)
sizes = st.integers(min_value=0, max_value=2**40)


def test_native_is_used():
    assert hotpath.NATIVE
    assert hotpath.parse_range is native.parse_range


_n = st.integers(0, 10**6)
ranges = (
    st.builds(lambda a, b: f"bytes={a}-{b}", _n, _n)
    | st.builds(lambda a: f"bytes={a}-", _n)
    | st.builds(lambda a: f"bytes=-{a}", _n)
)


@SETTINGS
@given(st.none() | header_like | ranges, sizes)
@example("bytes=99999-", 1122)
@example("bytes=-0", 10)
@example("bytes=0-", 0)
@example("bytes=²-", 10)
def test_parse_range(header, size):
    assert native.parse_range(header, size) == hotpath.py_parse_range(header, size)


etags = st.builds(lambda w, t: ("W/" if w else "") + '"' + t + '"', st.booleans(), st.text(max_size=12))


@SETTINGS
@given(st.none() | header_like | st.lists(etags, max_size=4).map(", ".join), etags)
@example('"a,b"', '"a,b"')
@example(' W/"x" ', '"x"')
def test_etag_matches(header, etag):
    assert native.etag_matches(header, etag) == hotpath.py_etag_matches(header, etag)


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-4", 10, (0, 4)),
        ("bytes=5-", 10, (5, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),
        ("bytes=0-100", 10, (0, 9)),
        ("bytes=10-", 10, (-1, -1)),  # first byte past the end: 416
        ("bytes=99999-", 1122, (-1, -1)),
        ("bytes=-0", 10, (-1, -1)),
        ("bytes=5-2", 10, None),  # invalid: ignored
        ("bytes=0-1,3-4", 10, None),  # several ranges: the whole body
        ("items=0-1", 10, None),
        ("bytes=²-", 10, None),  # not an ASCII digit: ignored, never a 500
    ],
)
def test_parse_range_semantics(header, size, expected):
    assert hotpath.py_parse_range(header, size) == expected
    assert hotpath.parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "etag", "expected"),
    [
        ('"a"', '"a"', True),
        ('W/"a"', '"a"', True),
        ('"b", "a"', '"a"', True),
        ("*", '"a"', True),
        ('"b"', '"a"', False),
        ("", '"a"', False),
    ],
)
def test_etag_matches_semantics(header, etag, expected):
    assert hotpath.etag_matches(header, etag) is expected

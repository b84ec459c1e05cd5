"""media/png.py, the PNG probe in front of libvips' header read: the same answer as libvips for
every PNG it answers for, and back to libvips (None) for everything else."""

from __future__ import annotations

import struct
import zlib

import pytest
import pyvips
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediaproxy.errors import BadRequest
from mediaproxy.media import pipeline as P
from mediaproxy.media import png

from . import media
from .test_jpeg import photo


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _with_chunk(data: bytes, kind: bytes, body: bytes) -> bytes:
    """``data`` with a chunk inserted right after its IHDR."""
    return data[:33] + _chunk(kind, body) + data[33:]


def _pngs():
    base = photo(60, 40)
    alpha = base.bandjoin((base[0] > 128).ifthenelse(255, 40).cast("uchar"))
    yield "rgb", base.pngsave_buffer()
    yield "rgba", alpha.pngsave_buffer()
    yield "rgb 16", base.cast("ushort").__mul__(256).cast("ushort").copy(interpretation="rgb16").pngsave_buffer()
    yield "rgba 16", (alpha.cast("ushort") * 256).cast("ushort").copy(interpretation="rgb16").pngsave_buffer()
    yield "grey", base.colourspace("b-w").pngsave_buffer()
    yield "grey 1 bit", base.colourspace("b-w").pngsave_buffer(bitdepth=1)
    yield "grey alpha", base.colourspace("b-w").bandjoin(alpha[3]).pngsave_buffer()
    yield "palette", base.pngsave_buffer(palette=True)
    yield "palette alpha", alpha.pngsave_buffer(palette=True)
    yield "interlaced", base.pngsave_buffer(interlace=True)
    yield "rgb tRNS", _with_chunk(base.pngsave_buffer(), b"tRNS", b"\x00\x10\x00\x20\x00\x30")
    yield "grey tRNS", _with_chunk(base.colourspace("b-w").pngsave_buffer(), b"tRNS", b"\x00\x10")
    yield "text", _with_chunk(base.pngsave_buffer(), b"tEXt", b"Comment\x00hello")
    yield "no metadata", base.pngsave_buffer(keep="none")
    for o in (3, 6):
        im = base.copy()
        im.set_type(pyvips.GValue.gint_type, "orientation", o)
        yield f"orientation {o}", im.pngsave_buffer(keep="exif")


def _icc_png(base: pyvips.Image) -> bytes:
    im = base.icc_transform("p3", input_profile="srgb")
    return im.pngsave_buffer(keep="icc")


@pytest.mark.parametrize("name, data", list(_pngs()), ids=[n for n, _ in _pngs()])
def test_header_probe_answers_as_libvips_does(name, data, monkeypatch):
    fast = P.probe(data)
    assert png.header(data) is not None, name
    monkeypatch.setattr(png, "header", lambda buf: None)
    assert P.probe(data) == fast, name


def test_the_probe_sees_alpha_and_orientation():
    found = {name: png.header(data) for name, data in _pngs()}
    assert found["rgb"] == found["no metadata"] == (60, 40, False, 1)
    assert found["orientation 6"] == (60, 40, False, 6)
    assert found["rgba"][2] and found["grey alpha"][2] and found["rgb tRNS"][2] and found["grey tRNS"][2]
    assert not found["palette"][2]


def test_header_probe_leaves_the_unusual_to_libvips():
    data = photo(60, 40).pngsave_buffer()
    for cut in (0, 8, 20, 33, 40):
        assert png.header(data[:cut]) is None  # ends before the image data
    im = photo(60, 40).copy()
    im.set_type(pyvips.GValue.gint_type, "orientation", 6)
    exif = im.pngsave_buffer(keep="exif")
    at = exif.index(b"eXIf") - 4
    assert png.header(exif[:at] + exif[at:at + 12] + b"XX" + exif[at + 14:]) is None  # no TIFF header
    twice = exif[:33] + _chunk(b"eXIf", b"II*\x00\x08\x00\x00\x00\x00\x00") + exif[33:]
    assert png.header(twice) is None  # a second EXIF chunk
    assert png.header(_with_chunk(data, b"acTL", b"\x00\x00\x00\x02\x00\x00\x00\x00")) is None  # APNG
    assert png.header(_with_chunk(data, b"prIV", b"x")) is None  # a chunk the probe does not know
    icc = _icc_png(photo(60, 40))
    assert b"iCCP" in icc and png.header(icc) is None and P.probe(icc).has_icc  # libvips reads the profile
    bad_crc = _with_chunk(data, b"tRNS", b"\x00\x10\x00\x20\x00\x30")
    bad_crc = bad_crc[:33 + 14] + b"\x00\x00\x00\x00" + bad_crc[33 + 18:]
    assert png.header(bad_crc) is None  # libpng drops a transparency chunk whose CRC fails
    assert png.header(_with_chunk(data, b"tRNS", b"\x00\x10")) is None  # an RGB image's is 6 bytes
    huge = data[:16] + struct.pack(">I", 70_000) + data[20:]
    assert png.header(huge) is None


def test_many_chunks_are_left_to_libvips():
    data = photo(20, 20).pngsave_buffer()
    text = _chunk(b"tEXt", b"k\x00v")
    assert png.header(data[:33] + text * 10 + data[33:]) is not None
    assert png.header(data[:33] + text * (png.MAX_CHUNKS + 1) + data[33:]) is None


def test_a_corrupt_png_the_probe_answers_for_is_still_refused():
    """The probe reads only the chunks before the image data: a broken image is refused by the decode."""
    data = photo(60, 40).pngsave_buffer()
    idat = data.index(b"IDAT")
    broken = data[:idat + 8] + b"\x00" * 40 + data[idat + 48:]
    assert png.header(broken) is not None
    spec = P.TransformSpec(width=32, height=32, fit="inside", position="center", format="webp", quality=None,
                           lossless=False, animated=False)
    with pytest.raises(BadRequest):
        P.transform(broken, spec, P.Limits(100_000_000, 1000, 400_000_000))


# -- against libvips, on mutated headers -----------------------------------------------------------

FUZZ_SOURCES = [data for name, data in _pngs() if name in ("rgb", "rgba", "palette alpha", "grey 1 bit",
                                                            "rgb tRNS", "text", "orientation 6")]
_MEANINGFUL = [0x00, 0x01, 0x02, 0x03, 0x04, 0x06, 0x08, 0x10, 0x49, 0x44, 0x41, 0x54, 0x50, 0x4C, 0x74, 0x52,
               0x4E, 0x53, 0x7F, 0x80, 0xFF]


@st.composite
def _mutated_headers(draw) -> bytes:
    """A real PNG with up to 4 byte edits (set, insert, delete) before its image data, or cut there."""
    data = draw(st.sampled_from(FUZZ_SOURCES))
    return media.edit_header(draw, data, data.index(b"IDAT") + 4, _MEANINGFUL)


def _libvips_header(data: bytes) -> tuple[int, int, bool, int] | None:
    """(width, height, has alpha, orientation) as libvips reads a PNG without an ICC profile, None if
    it cannot (or the PNG has a profile)."""
    try:
        im = pyvips.Image.new_from_buffer(data, "")
        if im.get("vips-loader") != "pngload_buffer":
            return None
    except pyvips.Error:
        return None
    if im.get_typeof("icc-profile-data"):
        return None
    orientation = im.get("orientation") if im.get_typeof("orientation") else 1
    return im.width, im.height, bool(im.hasalpha()), orientation


@settings(max_examples=800, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated_headers())
def test_a_mutated_header_is_left_to_libvips_or_read_as_libvips_reads_it(data):
    found = png.header(data)
    if found is not None:
        assert found == _libvips_header(data)


def test_the_real_headers_of_the_fuzz_are_read_by_the_probe():
    for data in FUZZ_SOURCES:
        assert png.header(data) == _libvips_header(data) is not None


def _chunks(data: bytes) -> list[tuple[int, int]]:
    """(offset, body length) of each chunk before the image data."""
    out, at = [], 8
    while data[at + 4:at + 8] != b"IDAT":
        length = struct.unpack(">I", data[at:at + 4])[0]
        out.append((at, length))
        at += 12 + length
    return out


@st.composite
def _edited_chunks(draw) -> bytes:
    """A real PNG with up to 3 bytes of one chunk's type or body edited and its CRC made right again:
    what the CRC check alone does not catch."""
    data = bytearray(draw(st.sampled_from(FUZZ_SOURCES)))
    at, length = draw(st.sampled_from(_chunks(bytes(data))))
    for _ in range(draw(st.integers(1, 3))):
        data[draw(st.integers(at + 4, at + 7 + length))] = draw(st.sampled_from(_MEANINGFUL) | st.integers(0, 255))
    data[at + 8 + length:at + 12 + length] = struct.pack(">I", zlib.crc32(bytes(data[at + 4:at + 8 + length])))
    return bytes(data)


@settings(max_examples=800, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(_edited_chunks())
def test_an_edited_chunk_is_left_to_libvips_or_read_as_libvips_reads_it(data):
    found = png.header(data)
    if found is not None:
        assert found == _libvips_header(data)

"""media/jpeg.py, the libjpeg-turbo decoder in front of libvips' JPEG loader:
same pixels as libvips at every DCT scale, and back to libvips (None) for
everything it does not take, so the pipeline's answers never change."""

from __future__ import annotations

from fractions import Fraction

import pytest
import pyvips
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediaproxy.errors import BadRequest
from mediaproxy.media import jpeg
from mediaproxy.media import pipeline as P
from mediaproxy.media.spec import BANNER, SQUARE, parse_spec

from . import media

LIMITS = P.Limits(max_pixels=100_000_000, max_frames=1000, max_animation_pixels=400_000_000)


def photo(width: int, height: int) -> pyvips.Image:
    """Smooth shapes plus grain: real JPEG work, unlike a flat gradient."""
    xyz = pyvips.Image.xyz(width, height)
    r = (xyz[0] * 9.4 / width).sin() * 100 + 128
    g = (xyz[1] * 6.3 / height).cos() * 100 + 128
    b = ((xyz[0] + xyz[1]) * 6.3 / (width + height)).sin() * 90 + 128
    im = r.bandjoin([g, b]) + pyvips.Image.gaussnoise(width, height, sigma=12)
    return im.cast("uchar").copy(interpretation="srgb")


def max_diff(a: pyvips.Image, b: pyvips.Image) -> float:
    assert (a.width, a.height, a.bands) == (b.width, b.height, b.bands)
    return (a.cast("int") - b.cast("int")).abs().max()


@pytest.mark.parametrize("shrink", [1, 2, 4, 8])
@pytest.mark.parametrize("subsample", ["on", "off"])
def test_same_pixels_as_libvips_at_every_scale(shrink, subsample):
    data = photo(1001, 603).jpegsave_buffer(Q=90, subsample_mode=subsample)  # libjpeg rounds up, libvips down
    ours = jpeg.decode(data, shrink, 1)
    theirs = pyvips.Image.new_from_buffer(data, "", shrink=shrink)
    assert ours is not None
    assert (ours.width, ours.height) == (theirs.width, theirs.height) == (1001 // shrink, 603 // shrink)
    assert ours.interpretation == "srgb"
    assert max_diff(ours, theirs) == 0  # both are libjpeg-turbo's scaled IDCT and upsampling: identical


def test_greyscale_stays_one_band():
    data = photo(320, 200).colourspace("b-w").jpegsave_buffer(Q=90)
    ours = jpeg.decode(data, 2, 1)
    assert ours is not None and ours.bands == 1 and ours.interpretation == "b-w"
    assert max_diff(ours, pyvips.Image.new_from_buffer(data, "", shrink=2)) == 0


def test_orientation_is_carried_for_the_pipeline():
    ours = jpeg.decode(media.oriented_jpeg(200, 100, 6), 1, 6)
    assert ours is not None and ours.get("orientation") == 6


def test_cmyk_goes_to_libvips():
    data = photo(120, 80).colourspace("cmyk").jpegsave_buffer(Q=90)
    assert pyvips.Image.new_from_buffer(data, "").bands == 4
    assert jpeg.decode(data, 1, 1) is None


@pytest.mark.parametrize("cut", [0.3, 0.7, 0.98])
def test_truncated_goes_to_libvips(cut):
    data = photo(400, 300).jpegsave_buffer(Q=90, interlace=True)
    assert jpeg.decode(data[: int(len(data) * cut)], 2, 1) is None


@pytest.mark.parametrize("junk", [b"", b"\xff\xd8", b"\xff\xd8\xff\xe0" + b"\x00" * 40, b"not a jpeg at all"])
def test_garbage_goes_to_libvips(junk):
    assert jpeg.decode(junk, 1, 1) is None


def test_large_outputs_go_to_libvips(monkeypatch):
    data = photo(400, 300).jpegsave_buffer(Q=80)
    monkeypatch.setattr(jpeg, "MAX_PIXELS", 400 * 300 - 1)
    assert jpeg.decode(data, 1, 1) is None
    assert jpeg.decode(data, 2, 1) is not None  # 200x150 is under the cap


# ------------------------------------------------- through the pipeline


def transform(data: bytes, profile, query: dict, ext: str, fast: bool, monkeypatch) -> tuple[P.Output, list]:
    """The pipeline's output, and the scales it asked media/jpeg.py for (``fast=False``: it declines them all)."""
    calls = []
    real = jpeg.decode

    def spy(buf, shrink, orientation):
        calls.append(shrink)
        return real(buf, shrink, orientation) if fast else None

    monkeypatch.setattr(jpeg, "decode", spy)
    out = P.transform(data, parse_spec(profile, query, ext), LIMITS)
    monkeypatch.setattr(jpeg, "decode", real)
    return out, calls


@pytest.mark.parametrize(
    "profile, query, size, scale",
    [
        (SQUARE, {"size": "100"}, (100, 100), 4),  # 1024x768 -> 134x100: decoded at 1/4, Lanczos3 for the rest
        (SQUARE, {"size": "256"}, (256, 256), 2),  # 1/2 leaves 1.5x: taken before 5/8 (no SIMD in libjpeg-turbo)
        (SQUARE, {"size": "320"}, (320, 320), Fraction(8, 6)),  # 6/8: libvips' loader has only 1/1
        (SQUARE, {"size": "160"}, (160, 160), Fraction(8, 3)),  # 3/8: libvips' loader has only 1/2
        (BANNER, {"width": "800"}, (800, 600), 1),  # decoded at 1/1, then resized
        (BANNER, {}, (1024, 768), 1),  # no resize at all
    ],
)
def test_pipeline_output_matches_the_libvips_path(profile, query, size, scale, monkeypatch):
    data = photo(1024, 768).jpegsave_buffer(Q=90)
    fast, fast_calls = transform(data, profile, query, "png", True, monkeypatch)
    slow, slow_calls = transform(data, profile, query, "png", False, monkeypatch)
    assert fast_calls == slow_calls == [scale]  # both went through the decoder choice, at the planned scale
    a, b = media.decode(fast.body), media.decode(slow.body)
    assert (a.width, a.height) == (b.width, b.height) == size
    if scale in (1, 2, 4, 8):
        assert max_diff(a, b) == 0  # the same DCT scale: the same pixels
    else:
        # libvips decodes at 1/2 and resamples further: the same picture, not the same pixels
        assert (a.cast("int") - b.cast("int")).abs().avg() < 1.5


def test_pipeline_applies_orientation_on_the_fast_path(monkeypatch):
    out, calls = transform(media.oriented_jpeg(200, 100, 6), BANNER, {}, "png", True, monkeypatch)
    im = media.decode(out.body)
    assert calls and (im.width, im.height) == (100, 200)
    top, bottom = im.getpoint(50, 20), im.getpoint(50, 180)
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60


def test_icc_sources_never_take_the_fast_path(monkeypatch):
    im = photo(300, 200)
    with_icc = im.icc_export(output_profile="srgb").copy()  # attaches an sRGB profile
    data = with_icc.jpegsave_buffer(Q=90, keep="icc")
    assert pyvips.Image.new_from_buffer(data, "").get_typeof("icc-profile-data")
    out, calls = transform(data, BANNER, {"width": "100"}, "webp", True, monkeypatch)
    assert calls == [] and out.width == 100


def test_truncated_source_is_still_a_400(monkeypatch):
    data = photo(800, 600).jpegsave_buffer(Q=90)
    with pytest.raises(BadRequest):
        transform(data[: len(data) // 2], SQUARE, {"size": "100"}, "webp", True, monkeypatch)


@pytest.mark.parametrize("bands, full_chroma", [(3, True), (3, False), (1, True)])
def test_encode_writes_what_libvips_would_decode_the_same(bands, full_chroma):
    # libjpeg-turbo's own encoder (thumbnails): the same pixels as libvips' saver at the same
    # quality and chroma, within the rounding of two encoders; greyscale stays one band.
    im = photo(128, 96) if bands == 3 else photo(128, 96).colourspace("b-w")
    body = jpeg.encode(im, 80, full_chroma)
    assert body is not None
    ours = pyvips.Image.new_from_buffer(body, "")
    theirs = pyvips.Image.new_from_buffer(
        im.jpegsave_buffer(Q=80, subsample_mode="off" if full_chroma else "on"), "")
    assert (ours.width, ours.height, ours.bands) == (128, 96, bands)
    assert max_diff(ours, theirs) <= 12
    assert (ours.cast("int") - theirs.cast("int")).abs().avg() < 1.0


def test_encode_leaves_alpha_and_16_bit_to_libvips():
    assert jpeg.encode(photo(64, 64).bandjoin(255), 80, True) is None
    assert jpeg.encode(photo(64, 64).cast("ushort").copy(interpretation="rgb16"), 80, True) is None


def test_small_jpeg_thumbnails_take_libjpeg_turbo_larger_ones_libvips(monkeypatch):
    calls = []
    real = jpeg.encode
    monkeypatch.setattr(jpeg, "encode", lambda *a: calls.append(a[0].width) or real(*a))
    src = photo(1024, 1024).jpegsave_buffer(Q=90)
    for size in ("64", "128", "256"):
        out = P.transform(src, parse_spec(SQUARE, {"size": size}, "jpeg"), LIMITS)
        assert out.format == "jpeg" and media.decode(out.body).width == int(size)
    assert calls == [64, 128]


def _jpegs():
    base = photo(300, 200)
    yield "plain", base.jpegsave_buffer(Q=85)
    yield "progressive", base.jpegsave_buffer(Q=85, interlace=True)
    yield "restart markers", base.jpegsave_buffer(Q=85, restart_interval=2)
    yield "grey", base.colourspace("b-w").jpegsave_buffer(Q=85)
    yield "cmyk", base.icc_transform("cmyk", input_profile="srgb").jpegsave_buffer(Q=85, keep="icc")
    yield "icc", base.jpegsave_buffer(Q=85, keep="icc", profile="p3")
    for o in range(1, 9):
        im = base.copy()
        im.set_type(pyvips.GValue.gint_type, "orientation", o)
        yield f"orientation {o}", im.jpegsave_buffer(Q=85, keep="exif")
    im = base.copy()
    im.set_type(pyvips.GValue.gint_type, "orientation", 6)
    yield "exif and icc", im.jpegsave_buffer(Q=85, keep="exif,icc", profile="p3")


@pytest.mark.parametrize("name, data", list(_jpegs()), ids=[n for n, _ in _jpegs()])
def test_header_probe_answers_as_libvips_does(name, data, monkeypatch):
    fast = P.probe(data)
    assert jpeg.header(data) is not None, name
    monkeypatch.setattr(jpeg, "header", lambda buf: None)
    assert P.probe(data) == fast, name


@pytest.mark.parametrize("cut", [2, 20, 200])
def test_header_probe_leaves_the_unusual_to_libvips(cut):
    data = photo(300, 200).jpegsave_buffer(Q=85)
    assert jpeg.header(data[:cut]) is None  # ends before the scan
    im = photo(64, 64).copy()
    im.set_type(pyvips.GValue.gint_type, "orientation", 6)
    exif = im.jpegsave_buffer(keep="exif")
    at = exif.index(b"Exif\x00\x00")
    bad = exif.replace(b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06", b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x09")
    bad = bad if bad != exif else exif.replace(b"\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00",
                                               b"\x12\x01\x03\x00\x01\x00\x00\x00\x09\x00")
    assert at > 0 and bad != exif
    assert jpeg.header(bad) is None  # orientation 9
    assert jpeg.header(b"\xff\xd8\xff\xdb\x00") is None


def test_header_probe_gives_up_on_crafted_marker_runs():
    """Fill bytes or empty markers by the megabyte would step through in Python: after
    MAX_HEADER_STEPS the probe leaves the file to libvips."""
    real = photo(64, 64).jpegsave_buffer(Q=85)
    for filler in (b"\xff" * (4 << 20), b"\xff\x01" * (2 << 20)):
        # a valid JPEG follows the filler: stepping through it all would find its size (it did)
        assert jpeg.header(b"\xff\xd8" + filler + real[2:]) is None
        assert jpeg.header(b"\xff\xd8" + filler[:200] + real[2:]) is not None  # a few are fine
    assert jpeg.header(real) is not None


# -- the header probe against libvips, on mutated headers -----------------------------------------

def _fuzz_sources() -> list[bytes]:
    """Small real JPEGs of every kind the probe answers for: EXIF orientation, ICC, progressive,
    restart markers, grey, CMYK."""
    base = photo(40, 30)
    oriented = base.copy()
    oriented.set_type(pyvips.GValue.gint_type, "orientation", 6)
    return [
        base.jpegsave_buffer(Q=80),
        base.jpegsave_buffer(Q=80, interlace=True),
        base.jpegsave_buffer(Q=80, restart_interval=1),
        base.colourspace("b-w").jpegsave_buffer(Q=80),
        base.icc_transform("cmyk", input_profile="srgb").jpegsave_buffer(Q=80, keep="none"),  # no 1 MB profile
        oriented.jpegsave_buffer(Q=80, keep="exif,icc", profile="p3"),
    ]


FUZZ_SOURCES = _fuzz_sources()
# bytes that mean something in a header: markers, lengths, TIFF byte orders, the orientation tag
_MEANINGFUL = [0x00, 0x01, 0x02, 0x03, 0x06, 0x08, 0x09, 0x12, 0x2A, 0x49, 0x4D, 0x7F, 0x80,
               0xC0, 0xC2, 0xC4, 0xD0, 0xD8, 0xD9, 0xDA, 0xDB, 0xDD, 0xE0, 0xE1, 0xE2, 0xFE, 0xFF]


@st.composite
def _mutated_headers(draw) -> bytes:
    """A real JPEG with up to 4 byte edits (set, insert, delete) before the end of its first
    scan header, or cut there."""
    data = draw(st.sampled_from(FUZZ_SOURCES))
    sos = data.index(b"\xff\xda")
    header_end = sos + 2 + ((data[sos + 2] << 8) | data[sos + 3])
    return media.edit_header(draw, data, min(header_end, len(data) - 1), _MEANINGFUL)


def _libvips_header(data: bytes) -> tuple[int, int, int, bool] | None:
    """(width, height, orientation, has an ICC profile) as libvips reads ``data``, None if it cannot."""
    try:
        im = pyvips.Image.new_from_buffer(data, "")
    except pyvips.Error:
        return None
    orientation = im.get("orientation") if im.get_typeof("orientation") else 1
    return im.width, im.height, orientation, bool(im.get_typeof("icc-profile-data"))


@settings(max_examples=1500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated_headers())
def test_a_mutated_header_is_left_to_libvips_or_read_as_libvips_reads_it(data):
    """Any mutation of a real header: the probe answers None (libvips decides) or exactly what
    libvips reads from the same bytes, never an exception or another size."""
    found = jpeg.header(data)
    if found is not None:
        assert found == _libvips_header(data)


def test_the_real_headers_of_the_fuzz_are_read_by_the_probe():
    """The fuzz starts from headers the probe answers for (else it would only test None)."""
    for data in FUZZ_SOURCES:
        assert jpeg.header(data) == _libvips_header(data) is not None


def _edited(data: bytes, marker: bytes, offset: int, value: bytes) -> bytes:
    """``data`` with ``value`` written ``offset`` bytes after the first ``marker``."""
    at = data.index(marker) + offset
    return data[:at] + value + data[at + len(value):]


def _refused_headers() -> list[tuple[str, bytes]]:
    real = FUZZ_SOURCES[0]
    sof = real.index(b"\xff\xc0")
    return [
        ("reserved marker", _edited(real, b"\xff\xe1", 1, b"\x02")),
        ("second SOI", real[:sof] + b"\xff\xd8" + real[sof:]),
        ("EOI before the scan", real[:sof] + b"\xff\xd9" + real[sof:]),
        ("frame over 65,500", _edited(real, b"\xff\xc0", 7, b"\xff\xf0")),
        ("sampling factor 0", _edited(real, b"\xff\xc0", 11, b"\x02")),
        ("frame length", _edited(real, b"\xff\xc0", 3, b"\x12")),
        ("quantization table 4", _edited(real, b"\xff\xdb", 4, b"\x04")),
        ("quantization table cut", _edited(real, b"\xff\xdb", 2, b"\x00\x42")),
        ("Huffman table 4", _edited(real, b"\xff\xc4", 4, b"\x04")),
        ("restart interval length", real[:sof] + b"\xff\xdd\x00\x05\x00\x01\x00" + real[sof:]),
        ("scan of a component not in the frame", _edited(real, b"\xff\xda", 5, b"\x09")),
        ("scan of one component twice", _edited(real, b"\xff\xda", 7, b"\x01")),
    ]


@pytest.mark.parametrize(("name", "data"), _refused_headers(), ids=[n for n, _ in _refused_headers()])
def test_a_header_libjpeg_refuses_is_left_to_libvips(name, data):
    """Found by the fuzz above: markers, frames and tables libjpeg refuses to read (libvips then
    reads no header at all) were answered with the frame's size."""
    assert _libvips_header(data) is None, name  # libvips refuses it…
    assert jpeg.header(data) is None, name  # …so the probe does not answer for it


def test_frames_other_than_8_bit_huffman_are_left_to_libvips():
    """Lossless, arithmetic-coded and 12-bit frames: libvips reads them, and decides about them."""
    real = FUZZ_SOURCES[0]
    for data in (_edited(real, b"\xff\xc0", 1, b"\xc3"), _edited(real, b"\xff\xc0", 1, b"\xc9"),
                 _edited(real, b"\xff\xc0", 4, b"\x0c")):
        assert jpeg.header(data) is None


def test_the_icc_flag_is_libvips_own():
    """libvips attaches a profile when the first ICC chunk holds at least a byte, whatever the
    other chunks say; the probe said "ICC" for any chunk, even a second one alone."""
    real = FUZZ_SOURCES[0]
    sof = real.index(b"\xff\xc0")

    def with_chunk(seq: int, count: int, payload: bytes = b"profile bytes") -> bytes:
        body = b"ICC_PROFILE\x00" + bytes([seq, count]) + payload
        return real[:sof] + b"\xff\xe2" + (len(body) + 2).to_bytes(2, "big") + body + real[sof:]

    for data, icc in ((with_chunk(1, 1), True), (with_chunk(1, 3), True), (with_chunk(2, 2), False),
                      (with_chunk(1, 1, b""), False)):
        assert jpeg.header(data) == _libvips_header(data) == (40, 30, 1, icc)

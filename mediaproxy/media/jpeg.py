"""JPEG decoding through libjpeg-turbo (``simplejpeg``), at the DCT scale the plan needs.

JPEG sources are most of a CDN origin's misses, and decoding is most of a
miss. The JPEG loader of the libvips we ship (pyvips-binary) measured clearly
slower than libjpeg-turbo driven directly (the figures: docs/performance.md,
"How a request is served"; thumbor's PIL path is libjpeg-turbo too, which is
why it beat a plain libvips pipeline).

Only the plain case comes here: a baseline or progressive JPEG in YCbCr or
greyscale, with no ICC profile, decoding to at most ``MAX_PIXELS``. The
pixels become a libvips image (no copy) carrying the source's EXIF
orientation, so the rest of the pipeline is the same as for libvips' own
loader. Everything else (CMYK, ICC, huge outputs) and anything the decoder
complains about, however mildly (its ``strict`` mode turns libjpeg warnings
such as a truncated scan into errors), goes back to libvips, which decides
what it is: the error a client sees never depends on which decoder tried.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pyvips
import simplejpeg

MAX_PIXELS = 8_000_000  # decoded size this path takes; larger outputs stream through libvips instead
_COLOURSPACES = {"YCbCr": ("RGB", 3), "Gray": ("GRAY", 1)}


def decode(buf: bytes, shrink: int | Fraction, orientation: int) -> pyvips.Image | None:
    """``buf`` decoded at 1/``shrink`` scale, or None: use libvips.

    ``shrink`` 1, 2, 4 or 8 gives libvips' loader geometry (its ``shrink``: the
    partial last row and column dropped). libjpeg-turbo also scales by n/8 for
    any n from 1 to 16 (``Fraction(8, 3)``: 3/8 size), which libvips' loader
    cannot: those keep libjpeg's size, the scaled size rounded up.
    """
    try:
        height, width, colourspace, _ = simplejpeg.decode_jpeg_header(buf)
        mode = _COLOURSPACES.get(colourspace)
        out_w, out_h = math.ceil(width / shrink), math.ceil(height / shrink)  # libjpeg rounds scaled sizes up
        if shrink in (1, 2, 4, 8):
            keep_w, keep_h = width // shrink, height // shrink  # libvips drops the partial last row/column
        else:
            keep_w, keep_h = out_w, out_h
        if mode is None or out_w * out_h > MAX_PIXELS or keep_w < 1 or keep_h < 1:
            return None
        pixels = simplejpeg.decode_jpeg(buf, colorspace=mode[0], min_width=out_w, min_height=out_h, strict=True)
    except ValueError:
        return None
    h, w, bands = pixels.shape
    if w < keep_w or h < keep_h:
        return None  # a scale libjpeg-turbo does not have: never serve a smaller decode than planned
    im = pyvips.Image.new_from_memory(pixels.data, w, h, bands, "uchar")
    if (w, h) != (keep_w, keep_h):
        im = im.crop(0, 0, keep_w, keep_h)  # the same geometry as libvips' loader
    wanted = "srgb" if bands == 3 else "b-w"
    if im.interpretation != wanted:  # libvips guesses these from 3 and 1 uchar bands: a copy is an operation
        im = im.copy(interpretation=wanted)
    if orientation not in (0, 1):
        im.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    return im


def encode(im: pyvips.Image, quality: int, full_chroma: bool) -> bytes | None:
    """``im`` as a baseline JPEG written by libjpeg-turbo in the calling thread, or None: use libvips.

    For thumbnails, where libvips' saver costs more than the encoding: its
    threaded sink spends several times the encoder's CPU, and waits for other
    threads on a loaded machine (docs/performance.md). simplejpeg has no
    Huffman table optimisation: a few percent more bytes at 128 px.
    Only 8-bit sRGB or greyscale without alpha comes here.
    """
    if im.format != "uchar" or im.bands not in (1, 3) or im.interpretation not in ("srgb", "b-w"):
        return None
    pixels = np.ndarray(buffer=im.write_to_memory(), dtype=np.uint8, shape=(im.height, im.width, im.bands))
    if im.bands == 1:
        return simplejpeg.encode_jpeg(pixels, quality=quality, colorspace="GRAY", colorsubsampling="Gray")
    return simplejpeg.encode_jpeg(pixels, quality=quality, colorspace="RGB",
                                  colorsubsampling="444" if full_chroma else "420")


# Start-of-frame markers answered here: baseline, extended and progressive, Huffman-coded (what
# libjpeg reads, and what encoders write). Lossless, hierarchical and arithmetic-coded frames go
# to libvips, which decides.
_SOF = frozenset((0xC0, 0xC1, 0xC2))
_DHT, _DQT, _DRI, _SOS, _SOI, _TEM = 0xC4, 0xDB, 0xDD, 0xDA, 0xD8, 0x01
# Segments libjpeg skips before the first scan whatever they hold: APP0-APP15, COM, DNL.
_SKIPPED = frozenset((*range(0xE0, 0xF0), 0xFE, 0xDC))
_MAX_DIMENSION = 65500  # libjpeg's JPEG_MAX_DIMENSION: a larger frame is an error


# markers (and fill bytes) read before giving up: a real JPEG has a few dozen before its scan,
# while a crafted one can step 1-4 bytes at a time through megabytes in Python
MAX_HEADER_STEPS = 1024


def header(buf: bytes | memoryview) -> tuple[int, int, int, bool] | None:
    """(width, height, EXIF orientation, has an ICC profile) from the markers before the scan, or None.

    What libvips' header read answers for a plain JPEG, for a fraction of its
    cost (the probe of every JPEG miss; docs/performance.md). None, and libvips
    decides, for anything unusual: truncated before the first scan, a second
    EXIF block, an orientation outside 1-8, an odd frame header, and any marker
    or table libjpeg would refuse to read (it fails the whole header then, so an
    answer here would be one libvips never gives).
    """
    data = bytes(buf[:2]) if isinstance(buf, memoryview) else buf[:2]
    if data != b"\xff\xd8":
        return None
    mv = memoryview(buf)
    n, i = len(mv), 2
    frame = None  # (width, height, component ids)
    orientation, exif_seen, icc = 1, False, False
    steps = 0
    while i + 4 <= n:
        steps += 1
        if steps > MAX_HEADER_STEPS:  # fill bytes or empty markers by the thousand: libvips decides
            return None
        if mv[i] != 0xFF:
            return None
        marker = mv[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xD0 <= marker <= 0xD7 or marker == _TEM:  # standalone markers libjpeg passes over
            i += 2
            continue
        length = (mv[i + 2] << 8) | mv[i + 3]
        if length < 2 or i + 2 + length > n:
            return None
        seg = mv[i + 4:i + 2 + length]
        if marker == _SOS:  # start of scan: every header marker has been seen
            if frame is None or not _scan_header_ok(seg, frame[2]):
                return None
            return frame[0], frame[1], orientation, icc
        if marker in _SOF:
            if frame is not None:
                return None
            frame = _frame(seg)
            if frame is None:
                return None
        elif marker == _DQT:
            if not _quant_tables_ok(seg):
                return None
        elif marker == _DHT:
            if not _huffman_tables_ok(seg):
                return None
        elif marker == _DRI:
            if length != 4:
                return None
        elif marker not in _SKIPPED:  # a second SOI, EOI, DAC, another frame type, a reserved marker
            return None
        elif marker == 0xE1 and bytes(seg[:6]) == b"Exif\x00\x00":
            if exif_seen:
                return None
            exif_seen = True
            found = exif_orientation(bytes(seg[6:]))
            if found is None:
                return None
            orientation = found
        elif marker == 0xE2 and len(seg) > 14 and seg[12] == 1 and bytes(seg[:11]) == b"ICC_PROFILE":
            icc = True  # libvips attaches a profile when its first chunk (of any count) holds a byte
        i += 2 + length
    return None


def _frame(seg: memoryview) -> tuple[int, int, bytes] | None:
    """(width, height, component ids) of a start-of-frame segment libjpeg reads as it is, or None:
    8-bit samples, 1, 3 or 4 components, each sampled 1-4 times, no side over 65,500."""
    if len(seg) < 6:
        return None
    precision, h, w, count = seg[0], (seg[1] << 8) | seg[2], (seg[3] << 8) | seg[4], seg[5]
    if precision != 8 or count not in (1, 3, 4) or len(seg) != 6 + 3 * count:
        return None
    if not (0 < w <= _MAX_DIMENSION and 0 < h <= _MAX_DIMENSION):
        return None
    for k in range(count):
        sampling = seg[7 + 3 * k]
        if not (1 <= sampling >> 4 <= 4 and 1 <= sampling & 0x0F <= 4):
            return None
    return w, h, bytes(seg[6 + 3 * k] for k in range(count))


def _scan_header_ok(seg: memoryview, components: bytes) -> bool:
    """A start-of-scan segment libjpeg reads: 1-4 distinct components of the frame, exact length."""
    if not seg or not 1 <= seg[0] <= 4 or len(seg) != 4 + 2 * seg[0]:
        return False
    ids = bytes(seg[1 + 2 * k] for k in range(seg[0]))
    return len(set(ids)) == len(ids) and all(c in components[:4] for c in ids)


def _quant_tables_ok(seg: memoryview) -> bool:
    """Whole quantization tables (8- or 16-bit, numbered 0-3) filling the segment exactly."""
    at = 0
    while at < len(seg):
        precision, number = seg[at] >> 4, seg[at] & 0x0F
        if precision > 1 or number > 3:
            return False
        at += 1 + 64 * (precision + 1)
    return at == len(seg) and len(seg) > 0


def _huffman_tables_ok(seg: memoryview) -> bool:
    """Huffman tables (DC or AC, numbered 0-3, at most 256 codes) filling the segment exactly."""
    at = 0
    while at < len(seg):
        if at + 17 > len(seg) or seg[at] & 0xEC:  # class 0-1, number 0-3
            return False
        codes = sum(seg[at + 1:at + 17])
        if codes > 256:
            return False
        at += 17 + codes
    return at == len(seg) and len(seg) > 0


def exif_orientation(tiff: bytes) -> int | None:
    """The Orientation tag of IFD0 (1 when absent), or None for what does not parse or is out of range."""
    if len(tiff) < 8 or tiff[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    order = "little" if tiff[:2] == b"II" else "big"
    at = int.from_bytes(tiff[4:8], order)
    if at + 2 > len(tiff):
        return None
    count = int.from_bytes(tiff[at:at + 2], order)
    for k in range(count):
        e = at + 2 + 12 * k
        if e + 12 > len(tiff):
            return None
        if int.from_bytes(tiff[e:e + 2], order) == 0x0112:
            if int.from_bytes(tiff[e + 2:e + 4], order) != 3 or int.from_bytes(tiff[e + 4:e + 8], order) != 1:
                return None  # not one SHORT
            value = int.from_bytes(tiff[e + 8:e + 10], order)
            return value if 1 <= value <= 8 else None
    return 1

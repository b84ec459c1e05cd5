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
    im = im.copy(interpretation="srgb" if bands == 3 else "b-w")
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


# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic coded).
_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))


# markers (and fill bytes) read before giving up: a real JPEG has a few dozen before its scan,
# while a crafted one can step 1-4 bytes at a time through megabytes in Python
MAX_HEADER_STEPS = 1024


def header(buf: bytes | memoryview) -> tuple[int, int, int, bool] | None:
    """(width, height, EXIF orientation, has an ICC profile) from the markers before the scan, or None.

    What libvips' header read answers for a plain JPEG, for a fraction of its
    cost (the probe of every JPEG miss; docs/performance.md). None, and libvips
    decides, for anything unusual: truncated before the first scan, a second
    EXIF block, an orientation outside 1-8, an odd frame header.
    """
    data = bytes(buf[:2]) if isinstance(buf, memoryview) else buf[:2]
    if data != b"\xff\xd8":
        return None
    mv = memoryview(buf)
    n, i = len(mv), 2
    size = None
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
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            i += 2
            continue
        length = (mv[i + 2] << 8) | mv[i + 3]
        if length < 2 or i + 2 + length > n:
            return None
        seg = mv[i + 4:i + 2 + length]
        if marker == 0xDA:  # start of scan: every header marker has been seen
            if size is None:
                return None
            return size[0], size[1], orientation, icc
        if marker in _SOF:
            if size is not None or len(seg) < 6 or seg[5] not in (1, 3, 4):
                return None
            h, w = (seg[1] << 8) | seg[2], (seg[3] << 8) | seg[4]
            if w == 0 or h == 0:
                return None
            size = (w, h)
        elif marker == 0xE1 and bytes(seg[:6]) == b"Exif\x00\x00":
            if exif_seen:
                return None
            exif_seen = True
            found = _exif_orientation(bytes(seg[6:]))
            if found is None:
                return None
            orientation = found
        elif marker == 0xE2 and bytes(seg[:12]) == b"ICC_PROFILE\x00":
            icc = True
        i += 2 + length
    return None


def _exif_orientation(tiff: bytes) -> int | None:
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

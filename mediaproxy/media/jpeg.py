"""JPEG decoding through libjpeg-turbo (``simplejpeg``), at the DCT scale the plan needs.

JPEG sources are most of a CDN origin's misses, and decoding is most of a
miss: 1024px → 256px WebP spends ~70% of its time in the decoder. The JPEG
loader of the libvips we ship (pyvips-binary) measured 1.3-1.8x slower than
libjpeg-turbo driven directly: 6.9 vs 4.8 ms at 1/4 scale, 10.3 vs 5.7 ms at
full size, on a 1024x1024 photo (docs/performance.md; thumbor's PIL path is
libjpeg-turbo too, which is why it beat a plain libvips pipeline).

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
    threaded sink measured 0.8 ms of CPU and ~1.7 ms of waiting for other
    threads on a loaded machine per 128x128 JPEG, libjpeg-turbo here 0.1 ms.
    simplejpeg has no Huffman table optimisation: ~6% more bytes at 128 px.
    Only 8-bit sRGB or greyscale without alpha comes here.
    """
    if im.format != "uchar" or im.bands not in (1, 3) or im.interpretation not in ("srgb", "b-w"):
        return None
    pixels = np.ndarray(buffer=im.write_to_memory(), dtype=np.uint8, shape=(im.height, im.width, im.bands))
    if im.bands == 1:
        return simplejpeg.encode_jpeg(pixels, quality=quality, colorspace="GRAY", colorsubsampling="Gray")
    return simplejpeg.encode_jpeg(pixels, quality=quality, colorspace="RGB",
                                  colorsubsampling="444" if full_chroma else "420")

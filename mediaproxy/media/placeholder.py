"""BlurHash placeholders for progressive loading.

A BlurHash (https://blurha.sh, Wolt's algorithm) is a short ASCII string —
about 20-30 characters — that a client decodes into a blurry preview of the
image's colours while the real image loads. It encodes the image's average
colour plus a few low-frequency cosine components; 4 components along the long
axis and 3 along the short one, the common choice.

Encoding uses the ``blurhash`` package from PyPI (pure Python, the reference
algorithm) on a copy of the image shrunk by libvips to at most 32 pixels on
its long side: BlurHash only keeps the lowest frequencies, so this changes
the string very little and keeps the cost at a few milliseconds.
"""

from __future__ import annotations

import base64
import math

import blurhash
import numpy as np
import pyvips

from .nsfw import rgb8

SAMPLE = 32


def components_for(width: int, height: int) -> tuple[int, int]:
    """(x, y) component counts: 4 along the long axis, 3 along the short one."""
    return (4, 3) if width >= height else (3, 4)


def encode(im: pyvips.Image) -> str:
    """The BlurHash of an (upright) image; the aspect ratio decides the component counts."""
    cx, cy = components_for(im.width, im.height)
    if max(im.width, im.height) > SAMPLE:
        im = im.thumbnail_image(SAMPLE, height=SAMPLE)
    im = rgb8(im)
    arr = np.ndarray(buffer=im.write_to_memory(), dtype=np.uint8, shape=(im.height, im.width, 3))
    return blurhash.encode(arr.tolist(), components_x=cx, components_y=cy)


THUMB_SIDE = 100  # ThumbHash encodes at most 100x100 pixels


def _round(x: float) -> int:
    return math.floor(x + 0.5)  # JavaScript's Math.round, as the reference encoder


def _channel(ch: np.ndarray, nx: int, ny: int) -> tuple[float, list[float], float]:
    h, w = ch.shape
    dc, ac, scale = 0.0, [], 0.0
    xs = (np.arange(w) + 0.5) * math.pi / w
    ys = (np.arange(h) + 0.5) * math.pi / h
    for cy in range(ny):
        cx = 0
        fy = np.cos(ys * cy)
        while cx * ny < nx * (ny - cy):
            f = float(fy @ ch @ np.cos(xs * cx)) / (w * h)
            if cx or cy:
                ac.append(f)
                scale = max(scale, abs(f))
            else:
                dc = f
            cx += 1
    if scale:
        ac = [0.5 + 0.5 / scale * f for f in ac]
    return dc, ac, scale


def thumbhash(im: pyvips.Image) -> str:
    """The ThumbHash (https://evanw.github.io/thumbhash/) of an image, base64: like a BlurHash,
    but it keeps the aspect ratio and alpha, and clients decode it without parameters.

    A port of the reference encoder (``rgbaToThumbHash``) on numpy, from a ≤100×100 copy."""
    if max(im.width, im.height) > THUMB_SIDE:
        im = im.thumbnail_image(THUMB_SIDE, height=THUMB_SIDE)
    if im.interpretation not in ("srgb", "b-w"):
        im = im.colourspace("srgb")
    if im.format != "uchar":
        im = im.cast("uchar")
    if im.bands in (1, 2):  # grey (+ alpha) → RGB (+ alpha)
        im = im[0].bandjoin([im[0], im[0]] + ([im[1]] if im.bands == 2 else []))
    if im.bands == 3:
        im = im.bandjoin(255)
    im = im[:4]
    w, h = im.width, im.height
    px = np.ndarray(buffer=im.write_to_memory(), dtype=np.uint8, shape=(h, w, 4)).astype(np.float64) / 255
    alpha = px[..., 3]
    total_a = float(alpha.sum())
    avg = (px[..., :3] * alpha[..., None]).sum(axis=(0, 1)) / total_a if total_a else np.zeros(3)
    has_alpha = total_a < w * h
    l_limit = 5 if has_alpha else 7
    lx = max(1, _round(l_limit * w / max(w, h)))
    ly = max(1, _round(l_limit * h / max(w, h)))
    rgb = avg * (1 - alpha[..., None]) + px[..., :3] * alpha[..., None]
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    l_dc, l_ac, l_scale = _channel((r + g + b) / 3, max(3, lx), max(3, ly))
    p_dc, p_ac, p_scale = _channel((r + g) / 2 - b, 3, 3)
    q_dc, q_ac, q_scale = _channel(r - g, 3, 3)
    landscape = w > h
    header24 = (_round(63 * l_dc) | (_round(31.5 + 31.5 * p_dc) << 6) | (_round(31.5 + 31.5 * q_dc) << 12)
                | (_round(31 * l_scale) << 18) | (int(has_alpha) << 23))
    header16 = ((ly if landscape else lx) | (_round(63 * p_scale) << 3) | (_round(63 * q_scale) << 9)
                | (int(landscape) << 15))
    out = [header24 & 255, (header24 >> 8) & 255, header24 >> 16, header16 & 255, header16 >> 8]
    channels = [l_ac, p_ac, q_ac]
    if has_alpha:
        a_dc, a_ac, a_scale = _channel(alpha, 5, 5)
        out.append(_round(15 * a_dc) | (_round(15 * a_scale) << 4))
        channels.append(a_ac)
    start, i = len(out), 0
    for ac in channels:
        for f in ac:
            pos = start + (i >> 1)
            while len(out) <= pos:
                out.append(0)
            out[pos] |= _round(15 * f) << ((i & 1) << 2)
            i += 1
    return base64.b64encode(bytes(out)).decode()


def thumbhash_average(value: str) -> tuple[float, float, float, float]:
    """The average colour (r, g, b, a in 0..1) a ThumbHash stands for (the reference decoder's)."""
    h = base64.b64decode(value)
    header = h[0] | (h[1] << 8) | (h[2] << 16)
    lum = (header & 63) / 63
    p = ((header >> 6) & 63) / 31.5 - 1
    q = ((header >> 12) & 63) / 31.5 - 1
    a = (h[5] & 15) / 15 if header >> 23 else 1.0
    b = lum - 2 / 3 * p
    r = (3 * lum - b + q) / 2
    g = r - q
    rr, gg, bb = (max(0.0, min(1.0, c)) for c in (r, g, b))
    return rr, gg, bb, a

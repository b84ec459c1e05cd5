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

"""A library image's placeholders (BlurHash and ThumbHash) and the fallback image of the /v2
image service: image work the library asks of media/, decoded as the origin's transforms are."""

from __future__ import annotations

import pyvips

from . import pipeline, placeholder

FALLBACK_SIDE = 64


def placeholders(data: bytes, limits: pipeline.Limits) -> tuple[str, str]:
    """(BlurHash, ThumbHash) from a ≤100-pixel copy, decoded as the origin's transforms are
    (``pipeline.decode_inside``: limits checked on the header first, shrink-on-load): a 552-byte
    JPEG claiming 65500x65500 costs nothing. Raises pyvips.Error, BadRequest or TooLarge for
    bytes it cannot or will not decode. The caller holds a transform place."""
    im = pipeline.decode_inside(data, placeholder.THUMB_SIDE, limits)
    im = im.copy_memory()  # read twice below: decode once
    return placeholder.encode(im), placeholder.thumbhash(im)


def fallback_webp() -> bytes:
    """The one image every forbidden or missing image of the /v2 image service is answered with:
    computed once per process, so it costs the same, byte for byte, whichever image was asked for."""
    im = pyvips.Image.black(FALLBACK_SIDE, FALLBACK_SIDE, bands=3).linear([1, 1, 1], [226, 228, 232])
    return im.cast("uchar").webpsave_buffer(Q=50, keep="none")

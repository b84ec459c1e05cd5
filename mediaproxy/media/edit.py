"""The one image edit the library adds to the pipeline: crop, rotate, scale, re-encode.

It decodes through the pipeline's strict loader (``pipeline.load``: the allowed loaders only,
the header's pixels checked against the limits first, failure on truncated or corrupt data),
as every transform of the origin does."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import pyvips

from ..errors import BadRequest
from . import pipeline
from .spec import MIME

FORMATS = {"webp": "webp", "jpeg": "jpeg", "jpg": "jpeg", "png": "png"}


@dataclass(frozen=True)
class Edit:
    """A crop box in the upright image's pixels, then a quarter turn, a scale and an encoding."""

    x: int
    y: int
    width: int
    height: int
    rotate: int = 0  # 0, 90, 180 or 270
    scale: float = 1.0
    quality: int | None = None
    format: str | None = None  # webp, jpeg, jpg or png; None: the source's when it is one of those

    @classmethod
    def of(cls, p: dict) -> Edit:
        return cls(x=p["x"], y=p["y"], width=p["width"], height=p["height"], rotate=p.get("rotate") or 0,
                   scale=p.get("scale") or 1.0, quality=p.get("quality"), format=p.get("format"))


def edit_image(data: bytes, edit: Edit, limits: pipeline.Limits,
               slot: Callable[[], AbstractContextManager]) -> pipeline.Output:
    """``data`` edited; BadRequest for a box outside the image or undecodable bytes, TooLarge past
    the limits. ``slot`` is the transform place the pixel work runs in."""
    probe = pipeline.probe(data)
    pipeline.check_limits(probe, limits, False)
    fmt = FORMATS.get(str(edit.format or "").lower()) or (
        probe.format if probe.format in ("webp", "jpeg", "png") else "webp")
    x, y, w, h = edit.x, edit.y, edit.width, edit.height
    if x + w > probe.width or y + h > probe.height:
        raise BadRequest(f"the crop {x},{y} {w}x{h} is outside the {probe.width}x{probe.height} image")
    try:
        with slot():
            # a rotation (the EXIF orientation's or the crop's own) reads the pixels out of order,
            # which a sequential decode refuses ("error in tile") once the image is past a few tiles;
            # the pixel limit checked above bounds what a random-access decode holds
            turned = bool(edit.rotate) or probe.orientation not in (0, 1)
            im = pipeline.load(data, access="random" if turned else "sequential").autorot()
            if im.hasalpha() and fmt == "jpeg":
                im = im.flatten(background=[255] * (im.bands - 1))
            im = im.crop(x, y, w, h)
            if edit.rotate:
                im = im.rot(f"d{edit.rotate}")
            if edit.scale != 1.0:
                im = im.resize(edit.scale)
            if im.interpretation not in ("srgb", "b-w"):
                im = im.colourspace("srgb")
            q = edit.quality or 85
            if fmt == "jpeg":
                body = im.jpegsave_buffer(Q=q, keep="none", optimize_coding=True)
            elif fmt == "webp":
                body = im.webpsave_buffer(Q=q, keep="none", effort=2)
            else:
                body = im.pngsave_buffer(keep="none", compression=6)
    except pyvips.Error:
        raise BadRequest("undecodable image") from None
    return pipeline.Output(body, fmt, MIME[fmt], im.width, im.height, 1)

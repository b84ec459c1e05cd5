"""imgix-style parameters (the media library's public URLs) → the pipeline's TransformSpec.

``w``, ``h`` (pixels, 1..4096), ``fit``, ``q`` (1..100), ``fm`` (an explicit format) and
``auto`` (``format``: AVIF, else WebP, else the source's format, chosen from the
``Accept`` header; ``compress``: the quality chosen per image for the lower of ``quality=auto``'s
perceived-quality targets, media/autoquality.py). imgix's fits map onto the
pipeline's modes, which never enlarge:

====================  =========  ==========================================
imgix ``fit``         pipeline   result
====================  =========  ==========================================
``clip`` (default)    inside     within w×h, aspect kept
``max``               inside     same (imgix's "never upscale" is our rule)
``crop``              cover      exactly w×h, cropped around ``crop``'s
                                 focus (``center`` or ``entropy``/``faces``
                                 → ``attention``)
``min``               cover      as crop
``scale``             fill       exactly w×h, aspect not kept
``fill``/``fillmax``  contain    w×h, letterboxed
====================  =========  ==========================================
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import BadRequest
from .spec import FORMATS, MAX_DIM, SOURCE, TransformSpec

FITS = {"clip": "inside", "max": "inside", "crop": "cover", "min": "cover", "scale": "fill", "fill": "contain",
        "fillmax": "contain"}
CROPS = {"center": "center", "top": "top", "bottom": "bottom", "left": "left", "right": "right",
         "entropy": "entropy", "faces": "attention", "edges": "attention", "focalpoint": "center"}
COMPRESS_TARGET = "eco"  # quality=auto's target for auto=compress (spec.AUTO_TARGETS)
KNOWN = frozenset(("w", "h", "fit", "q", "fm", "auto", "crop"))


def _one(params: Mapping[str, object], name: str) -> str | None:
    value = params.get(name)
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else None
    return None if value is None else str(value)


def _dim(params: Mapping[str, object], name: str) -> int | None:
    raw = _one(params, name)
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 5) or not 1 <= int(raw) <= MAX_DIM:
        raise BadRequest(f"{name} must be an integer 1..{MAX_DIM}")
    return int(raw)


def negotiate(accept: str | None) -> str | None:
    """AVIF, else WebP, when the client says it takes it; None: keep the source's format."""
    accept = (accept or "").lower()
    if "image/avif" in accept:
        return "avif"
    if "image/webp" in accept:
        return "webp"
    return None


def wants_negotiation(params: Mapping[str, object]) -> bool:
    return "format" in (_one(params, "auto") or "").split(",")


def parse(params: Mapping[str, object], accept: str | None, source_format: str) -> TransformSpec | None:
    """The spec for one request, or None when it asks for nothing (serve the stored bytes)."""
    if not any(k in params for k in KNOWN):
        return None
    width, height = _dim(params, "w"), _dim(params, "h")
    fit_raw = (_one(params, "fit") or "clip").lower()
    fit = FITS.get(fit_raw)
    if fit is None:
        raise BadRequest(f"fit must be one of {', '.join(FITS)}")
    position = "center"
    for part in (_one(params, "crop") or "").lower().split(","):
        if part:
            if part not in CROPS:
                raise BadRequest(f"crop must be one of {', '.join(CROPS)}")
            position = CROPS[part]
    auto = {a for a in (_one(params, "auto") or "").lower().split(",") if a}
    if auto - {"format", "compress", "enhance", "redeye"}:
        raise BadRequest("auto must be format and/or compress")
    fm_raw = _one(params, "fm")
    fmt = None
    if fm_raw:
        fmt = FORMATS.get(fm_raw.lower())
        if fmt is None:
            raise BadRequest("fm must be one of jpg, jpeg, png, webp, avif, gif")
    if fmt is None and "format" in auto:
        fmt = negotiate(accept)
    q_raw = _one(params, "q")
    quality = None
    if q_raw:
        if not (q_raw.isascii() and q_raw.isdigit() and 1 <= int(q_raw) <= 100):
            raise BadRequest("q must be an integer 1..100")
        quality = int(q_raw)
    out = fmt or SOURCE
    target = COMPRESS_TARGET if quality is None and "compress" in auto else None
    if (width is None or height is None) and fit in ("cover", "fill", "contain"):
        fit = "inside"  # one side given: nothing to crop, stretch or pad
    return TransformSpec(width=width, height=height, fit=fit, position=position, format=out, quality=quality,
                         lossless=False, animated=None, auto=target)

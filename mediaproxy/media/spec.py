"""Query string → one immutable, canonical TransformSpec.

Defaults are filled in and aliases folded (``jpg``→``jpeg``, ``centre``→
``center``, presets→numbers) so that two URLs that must give the same bytes
give the same canonical text, and so the same cache key. Bad values raise
``BadRequest`` here, before any I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import BadRequest

SIZES = frozenset(
    (16, 20, 22, 24, 28, 32, 40, 44, 48, 56, 60, 64, 80, 96, 100, 128, 160, 240, 256, 300, 320,
     480, 512, 600, 640, 1024, 1280, 1536, 2048, 3072, 4096)
)
MAX_DIM = 4096

FORMATS = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png", "webp": "webp", "avif": "avif", "gif": "gif"}
MIME = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "avif": "image/avif",
    "gif": "image/gif",
}
ANIMATABLE = frozenset(("gif", "webp"))
LOSSY = frozenset(("jpeg", "webp", "avif"))
DEFAULT_QUALITY = {"jpeg": 80, "webp": 80, "avif": 60}  # `high` for JPEG and WebP (the platform's API reference)
PRESETS = {"high": 80, "low": 20, "lossless": 100}
# `quality=auto`: a target perceived quality instead of a fixed encoder setting, the encoder's quality
# chosen per image (media/autoquality.py). The names are the targets; the library's imgix-style
# `auto=compress` asks for the lower one. AUTO_REVISION is part of the cache key, so that a retuned
# target gives new keys rather than old bytes under the same URL.
AUTO = "auto"
AUTO_TARGETS = ("good", "eco")
AUTO_REVISION = "1"

FITS = frozenset(("cover", "contain", "fill", "inside", "outside"))
SQUARE_FITS = {"inside": "contain", "outside": "cover"}
POSITIONS = {
    "center": "center",
    "centre": "center",
    "top": "top",
    "bottom": "bottom",
    "left": "left",
    "right": "right",
    "entropy": "entropy",
    "attention": "attention",
}
BOOLS = {"true": True, "1": True, "false": False, "0": False}

SOURCE = "source"  # output format: the source's own (attachments, external)


@dataclass(frozen=True, slots=True)
class Profile:
    """How one route family reads the image parameters."""

    name: str
    square: bool = False  # `size` gives a size×size output cropped per fit/position
    box: bool = False  # `size` gives a size×size box the image fits inside (emojis, stickers)
    dims: bool = False  # accepts width/height
    default_size: int | None = None
    default_lossless: bool = False  # attachments default to quality=lossless
    animated_needs_opt_in: bool = False  # attachments keep animation only with animated=true
    passthrough: bool = False  # no transform parameter: serve the stored bytes (attachments, static assets)


SQUARE = Profile("square", square=True, default_size=128)
BOX = Profile("box", box=True, default_size=128)
BANNER = Profile("banner", dims=True)
ATTACHMENT = Profile("attachment", dims=True, default_lossless=True, animated_needs_opt_in=True, passthrough=True)
EXTERNAL = Profile("external", dims=True)


@dataclass(frozen=True, slots=True)
class TransformSpec:
    width: int | None  # target box; None on an axis means "keep the aspect ratio"
    height: int | None
    fit: str  # cover | contain | fill | inside | outside
    position: str
    format: str  # jpeg | png | webp | avif | gif | "source"
    quality: int | None  # None: the format's default (resolved when the format is known)
    lossless: bool
    animated: bool | None  # None: the route's default
    animated_opt_in: bool = False  # the profile needs animated=true to keep animation
    transform: bool = True  # False: an attachment asked for nothing, serve the stored bytes
    auto: str | None = None  # quality=auto: the target (AUTO_TARGETS) the encoder's quality is chosen for

    @property
    def resize(self) -> bool:
        return self.width is not None or self.height is not None

    def canonical(self) -> str:
        """Text that is equal for exactly the specs that give equal bytes."""
        if not self.transform:
            return "passthrough"
        fit = self.fit if self.resize else "-"
        pos = self.position if self.resize and self.fit in ("cover", "contain") else "-"
        if self.format in ("png", "gif"):
            q = "-"  # quality does not apply
        elif self.auto is not None and not self.lossless:
            q = f"auto-{self.auto}-{AUTO_REVISION}"
        elif self.format == "jpeg":
            q = str(self.quality_for("jpeg"))  # lossless is Q=100, the default is spelled out
        elif self.lossless:
            q = "lossless"
        elif self.format == SOURCE:
            q = str(self.quality) if self.quality is not None else "default"
        else:
            q = str(self.quality_for(self.format))
        anim = "A" if self.keeps_animation(self.format) else "-"
        return f"{self.width or '-'}x{self.height or '-'}|{fit}|{pos}|{self.format}|{q}|{anim}"

    def keeps_animation(self, fmt: str) -> bool:
        """Whether output in ``fmt`` keeps an animated source's frames (the reference implementation's rule).

        Image families: GIF output always does, whatever ``animated`` says; WebP
        only with ``animated=true``; every other format is the first frame.
        Attachments and external media: GIF/WebP (or the source's own format)
        only with ``animated=true``. Nothing else counts: not the ``a_`` hash,
        and not the source's format, so that the decision (and the cache key)
        follows from the URL alone.
        """
        if fmt not in ANIMATABLE and fmt != SOURCE:
            return False
        if fmt == "gif" and not self.animated_opt_in:
            return True
        return self.animated is True

    def quality_for(self, fmt: str) -> int:
        if self.lossless:
            return 100
        if self.quality is not None:
            return self.quality
        return DEFAULT_QUALITY.get(fmt, 80)


def _digits(raw: str, most: int) -> bool:
    """ASCII decimal digits only (``str.isdigit`` also accepts ``²`` and ``١``)."""
    return 0 < len(raw) <= most and raw.isascii() and raw.isdigit()


def _one(params: Mapping[str, object], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else ""
    return str(value)


def _dim(params: Mapping[str, object], name: str) -> int | None:
    raw = _one(params, name)
    if raw is None:
        return None
    if not _digits(raw, 5):
        raise BadRequest(f"{name} must be an integer 1..{MAX_DIM}")
    value = int(raw)
    if not 1 <= value <= MAX_DIM:
        raise BadRequest(f"{name} must be an integer 1..{MAX_DIM}")
    return value


def parse_size(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not _digits(raw, 4) or int(raw) not in SIZES:
        raise BadRequest("size must be one of " + ", ".join(str(s) for s in sorted(SIZES)))
    return int(raw)


def parse_format(raw: str | None) -> str | None:
    if raw is None:
        return None
    fmt = FORMATS.get(raw.lower())
    if fmt is None:
        raise BadRequest("format must be one of jpeg, jpg, png, webp, avif, gif")
    return fmt


def parse_quality(raw: str | None) -> tuple[int | None, bool]:
    if raw is None:
        return None, False
    low = raw.lower()
    if low in PRESETS:
        return PRESETS[low], low == "lossless"
    if _digits(raw, 3) and 1 <= int(raw) <= 100:
        return int(raw), False
    raise BadRequest("quality must be an integer 1..100 or one of high, low, lossless, auto")


def parse_bool(name: str, raw: str | None) -> bool | None:
    if raw is None:
        return None
    value = BOOLS.get(raw.lower())
    if value is None:
        raise BadRequest(f"{name} must be true or false")
    return value


def parse_spec(
    profile: Profile,
    params: Mapping[str, object],
    ext_format: str | None = None,
) -> TransformSpec:
    """Parse the image parameters of one request.

    ``ext_format`` is the format named by the URL's extension (image families);
    without it and without ``format`` the output keeps the source's format.
    """
    size = parse_size(_one(params, "size"))
    fmt = parse_format(_one(params, "format"))
    q_raw = _one(params, "quality")
    auto = "good" if q_raw is not None and q_raw.lower() == AUTO else None
    quality, lossless = parse_quality(None if auto else q_raw)
    animated = parse_bool("animated", _one(params, "animated"))
    fit_raw = _one(params, "fit")
    if fit_raw is not None and fit_raw.lower() not in FITS:
        raise BadRequest("fit must be one of cover, contain, fill, inside, outside")
    pos_raw = _one(params, "position")
    position = POSITIONS.get(pos_raw.lower()) if pos_raw is not None else "center"
    if position is None:
        raise BadRequest("position must be one of center, top, bottom, left, right, entropy, attention")
    fit = fit_raw.lower() if fit_raw is not None else "cover"

    width = height = None
    if profile.dims:
        width, height = _dim(params, "width"), _dim(params, "height")
        if size is not None and width is None and height is None:
            width = height = size
            if fit_raw is None:
                fit = "inside"  # `size` on these routes is a box
    else:
        size = size or profile.default_size
        width = height = size
        if profile.box:
            fit = "inside"
        elif profile.square:
            # The output is always size x size: the two fits that would not
            # give a square fold into the ones that do (letterbox, crop).
            fit = SQUARE_FITS.get(fit, fit)

    transform = True
    if profile.passthrough:
        # No transform asked for: stream the stored bytes unchanged. `animated=false`
        # alone asks for nothing (it is the default), `quality=lossless` neither.
        transform = not (
            width is None and height is None and fmt is None and (quality is None or lossless) and not animated
            and auto is None
        )
    if quality is None and auto is None and profile.default_lossless:
        quality, lossless = 100, True

    out_fmt = fmt or ext_format or SOURCE
    return TransformSpec(
        width=width,
        height=height,
        fit=fit,
        position=position,
        format=out_fmt,
        quality=quality,
        lossless=lossless,
        animated=animated,
        animated_opt_in=profile.animated_needs_opt_in,
        transform=transform,
        auto=auto,
    )

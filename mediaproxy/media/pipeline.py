"""The pyvips pipeline: bytes + TransformSpec → encoded bytes.

Ordered steps over one image, imgproxy-style:
  probe the header (limits are checked here, before any pixel is decoded)
  → plan the output geometry (fit, never enlarge)
  → decode with shrink-on-load (``thumbnail_buffer``: JPEG/WebP decode at a
    reduced size, EXIF orientation applied, ICC profiles imported)
  → crop / letterbox per page (animations keep every frame and its timing)
  → colour to sRGB → encode straight to bytes, metadata stripped.

The input is decoded from the buffer the caller already holds and the output
is the buffer that is stored and sent: no other copy of the bytes is made.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace
from fractions import Fraction

import pyvips
from PIL import Image as PILImage

from ..errors import BadRequest, ProcessingError, TooLarge
from . import autoquality, jpeg, png
from .spec import ANIMATABLE, MIME, SOURCE, TransformSpec

# Loaders we accept, and the format each one stands for. SVG (a vector format
# whose rendering cost its header does not bound), PDF, ImageMagick and the
# other libvips loaders are refused before any of them parses a byte.
LOADERS = {
    "jpegload_buffer": "jpeg",
    "pngload_buffer": "png",
    "gifload_buffer": "gif",
    "webpload_buffer": "webp",
    "heifload_buffer": "avif",
    "tiffload_buffer": "tiff",
}
# The same loaders as libvips' class names (what the sniffer answers), lower case.
_LOADER_CLASSES = ("jpeg", "png", "gif", "webp", "heif", "tiff")
# Fail on truncated or corrupt data instead of serving a half-grey image forever.
# (Given as a loader option: thumbnail_buffer's own fail_on is not passed on.)
_FAIL_ON = "fail_on=error"
WEB_FORMATS = frozenset(MIME)
PIPELINE_VERSION = "6"  # 2: Lanczos3 in linear light after the shrink-on-load, encoder settings by measurement;
# 3: settings per output size for speed too (JPEG thumbnails at the DCT scale, large WebP effort 2, sharp YUV to 256 px)
# 4: the planned size exactly (w=200 was 199 px wide for some sources); cached results of 3 are recomputed
# 5: resampling on the sRGB values, encoder efforts for CPU per request (docs/performance.md)
# 6: Lanczos3 of still images with alpha through Pillow, WebP up to 128x128 at effort 2
_BIG = 10_000_000  # "no constraint" on one axis for thumbnail


@dataclass(frozen=True, slots=True)
class Limits:
    max_pixels: int
    max_frames: int
    max_animation_pixels: int


@dataclass(frozen=True, slots=True)
class Probe:
    format: str
    width: int  # upright (EXIF orientation applied)
    height: int  # upright, one frame
    pages: int
    has_alpha: bool
    has_icc: bool
    orientation: int = 1  # EXIF orientation, 1 when absent

    @property
    def animated(self) -> bool:
        return self.pages > 1 and self.format in ("gif", "webp")


@dataclass(frozen=True, slots=True)
class Output:
    body: bytes
    format: str
    content_type: str
    width: int
    height: int
    frames: int


def sniff(buf: bytes | memoryview) -> str | None:
    """The libvips loader class that would open ``buf`` (magic bytes only, nothing parsed)."""
    if len(buf) == 0:
        return None
    found = pyvips.vips_lib.vips_foreign_find_load_buffer(pyvips.ffi.from_buffer(buf), len(buf))
    if found == pyvips.ffi.NULL:
        pyvips.vips_lib.vips_error_clear()
        return None
    return pyvips.ffi.string(found).decode()


def _stored_still(fmt: str, width: int, height: int, orientation: int, has_alpha: bool, has_icc: bool) -> Probe:
    """The probe of a one-frame image from its stored size: an orientation of 5-8 turns it a quarter."""
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return Probe(format=fmt, width=width, height=height, pages=1, has_alpha=has_alpha, has_icc=has_icc,
                 orientation=orientation)


def probe(buf: bytes | memoryview) -> Probe:
    """Read the header only; raise BadRequest for anything we cannot decode."""
    loader_class = sniff(buf)
    if loader_class is None:
        raise BadRequest("undecodable image")
    name = loader_class.lower().removeprefix("vipsforeignload")
    if not name.startswith(_LOADER_CLASSES) and not name.startswith("nsgif") and not name.startswith("spng"):
        raise BadRequest("unsupported image format")
    if name.startswith("jpeg"):
        found = jpeg.header(buf)  # the markers read in Python: a quarter of libvips' header read
        if found is not None:
            width, height, orientation, has_icc = found
            return _stored_still("jpeg", width, height, orientation, has_alpha=False, has_icc=has_icc)
    elif name.startswith(("png", "spng")):
        found_png = png.header(buf)  # the chunks read in Python: a tenth of libvips' header read
        if found_png is not None:
            width, height, has_alpha, orientation = found_png
            return _stored_still("png", width, height, orientation, has_alpha=has_alpha, has_icc=False)
    try:
        head = pyvips.Image.new_from_buffer(buf, "")
        loader = head.get("vips-loader")
    except pyvips.Error:
        raise BadRequest("undecodable image") from None
    fmt = LOADERS.get(loader)
    if fmt is None:
        raise BadRequest("unsupported image format")
    if fmt == "avif" and head.get_typeof("heif-compression") and head.get("heif-compression") != "av1":
        fmt = "heic"
    width, height = head.width, head.height
    pages = 1
    if head.get_typeof("n-pages"):
        pages = max(1, head.get("n-pages"))
    orientation = head.get("orientation") if head.get_typeof("orientation") else 1
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return Probe(
        format=fmt,
        width=width,
        height=height,
        pages=pages,
        has_alpha=head.hasalpha(),
        has_icc=bool(head.get_typeof("icc-profile-data")),
        orientation=orientation,
    )


def check_limits(p: Probe, limits: Limits, animate: bool) -> None:
    pixels = p.width * p.height
    if pixels > limits.max_pixels:
        raise TooLarge(f"image is {p.width}x{p.height}, over the {limits.max_pixels} pixel limit")
    if animate:
        if p.pages > limits.max_frames:
            raise TooLarge(f"animation has {p.pages} frames, over the {limits.max_frames} frame limit")
        if pixels * p.pages > limits.max_animation_pixels:
            raise TooLarge("animation is over the frames x pixels limit")


def output_format(spec: TransformSpec, p: Probe) -> str:
    if spec.format != SOURCE:
        return spec.format
    if p.format in WEB_FORMATS:
        return p.format
    return "png" if p.has_alpha else "jpeg"


def should_animate(spec: TransformSpec, p: Probe, fmt: str) -> bool:
    """An animated source keeps its frames when the output format can hold them and the spec says so."""
    return p.animated and fmt in ANIMATABLE and spec.keeps_animation(fmt)


@dataclass(frozen=True, slots=True)
class Plan:
    resize_w: int  # size every frame is resized to
    resize_h: int
    force: bool  # resize to exactly resize_w × resize_h (may change the aspect ratio)
    out_w: int  # final frame size, after crop or letterbox
    out_h: int


def plan(spec: TransformSpec, src_w: int, src_h: int) -> Plan:
    """Output geometry for one frame; never enlarges past the source."""
    if not spec.resize:
        return Plan(src_w, src_h, False, src_w, src_h)
    bw, bh = spec.width, spec.height
    if bw is None or bh is None:
        scale = min(1.0, bw / src_w) if bw is not None else min(1.0, bh / src_h)  # type: ignore[operator]
        w, h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
        return Plan(w, h, False, w, h)
    sx, sy = bw / src_w, bh / src_h
    fit = spec.fit
    if fit in ("cover", "outside"):
        scale = max(sx, sy)
    elif fit == "fill":
        scale = max(sx, sy)  # the axis stretched most decides how far the box must shrink
    else:  # inside, contain
        scale = min(sx, sy)
    if scale > 1.0:  # the box asks for enlargement: shrink the box, keep its aspect ratio
        bw, bh = max(1, round(bw / scale)), max(1, round(bh / scale))
        sx, sy = bw / src_w, bh / src_h
        scale = 1.0
    if fit == "fill":
        return Plan(bw, bh, True, bw, bh)
    if fit in ("inside", "contain"):
        w, h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
        w, h = min(w, bw), min(h, bh)
        if fit == "inside":
            return Plan(w, h, False, w, h)
        return Plan(w, h, False, bw, bh)
    # cover, outside: fill the box; cover crops the overflow
    w, h = max(bw, math.ceil(src_w * scale - 1e-9)), max(bh, math.ceil(src_h * scale - 1e-9))
    if fit == "outside":
        return Plan(w, h, True, w, h)
    return Plan(w, h, True, bw, bh)


_GRAVITY = {"center": "centre", "top": "north", "bottom": "south", "left": "west", "right": "east"}
_SMART = {"entropy": "entropy", "attention": "attention"}


def _frames(im: pyvips.Image, page_h: int) -> list[pyvips.Image]:
    return [im.crop(0, y, im.width, page_h) for y in range(0, im.height, page_h)]


def _join(frames: list[pyvips.Image], template: pyvips.Image) -> pyvips.Image:
    out = frames[0] if len(frames) == 1 else pyvips.Image.arrayjoin(frames, across=1)
    out = out.copy()
    out.set_type(pyvips.GValue.gint_type, "page-height", frames[0].height)
    for name in ("delay", "loop", "gif-delay"):
        if template.get_typeof(name):
            out.set_type(template.get_typeof(name), name, template.get(name))
    return out


def _crop_box(frame: pyvips.Image, w: int, h: int, position: str) -> tuple[int, int]:
    dx, dy = frame.width - w, frame.height - h
    if position in _SMART:
        try:
            _, opts = frame.smartcrop(w, h, interesting=_SMART[position], attention_x=True, attention_y=True)
            left = min(max(0, opts["attention_x"] - w // 2), dx)
            top = min(max(0, opts["attention_y"] - h // 2), dy)
            return left, top
        except pyvips.Error:
            position = "center"
    left = {"left": 0, "right": dx}.get(position, dx // 2)
    top = {"top": 0, "bottom": dy}.get(position, dy // 2)
    return left, top


def _letterbox(frame: pyvips.Image, w: int, h: int, position: str) -> pyvips.Image:
    """Place the frame on a transparent w×h canvas (JPEG later flattens it onto white)."""
    if not frame.hasalpha():
        frame = frame.bandjoin(255)
    background = [0] * frame.bands
    return frame.gravity(_GRAVITY.get(position, "centre"), w, h, extend="background", background=background)


# The measurements behind each constant below: docs/performance.md, "The pipeline's constants"
# (bench/quality.py, bench/thumbor.py).
# Shrink-on-load leaves the decoded image at least this many times the target, so
# that a real Lanczos3 step does the last of the reduction. Decoding a JPEG
# straight at the target size (its DCT scale, as PIL's draft() does) skips the
# filter and scores lower at 128-256 px; a 2x margin scored no better than 1.5x,
# which decodes fewer pixels.
DCT_MARGIN = 1.5
# JPEG outputs up to this size decode straight at the DCT scale nearest above the target (PIL's
# draft()), with no margin: at 128 px the 1/8 decode needs no resampling at all. The filter step
# in linear light saved few bytes there (4:4:4 chroma keeps JPEG thumbnails far ahead either way)
# and doubled the CPU of the whole transform.
JPEG_DCT_DIRECT_PIXELS = 128 * 128
# The same for WebP and AVIF outputs (0: none of them decodes straight at the target): straight at
# 1/4 to a 256 px WebP, as Pillow does, costs many bytes for sharp's score.
DCT_DIRECT_PIXELS = 0
# libjpeg-turbo's SIMD inverse DCTs are the 1/8, 1/4, 1/2 and full scales; the others run in plain C
# and take about twice as long. So the power-of-two scale below the margin's is taken when it still
# leaves this much for the resampler (2048 -> 800 px: 1/2, 1.28x).
DCT_FAST_MARGIN = 1.25
# Resampling in linear light (libvips' scRGB, premultiplied alpha) keeps fine light detail's
# brightness and scores best against a reference downscaled in linear light; against one
# downscaled in gamma space (on the sRGB values, as sharp, Pillow and most viewers scale) it
# loses as much, and its float conversion is a large share of a small output's CPU. A lead in
# bytes that holds under both references needs the sRGB values, so every output is resampled on
# them; outputs up to LINEAR_MAX_PIXELS would be resampled in linear light (bench/quality.py's
# "linear" variants; figures in docs/performance.md, "The transform's CPU").
LINEAR = True
LINEAR_MAX_PIXELS = 0

# The Lanczos3 step of a still 8-bit sRGB image with alpha and no ICC profile is Pillow's: the same
# filter after the same box reduction (a gap of 2, as libvips' resize), alpha premultiplied in 8 bits
# as libvips' thumbnail does, for less CPU (512² PNG with alpha to 64²: 1.4 vs 4.0 ms for the step,
# libvips' premultiply of every source pixel is most of it). Without alpha libvips' reduce is the
# faster (384² to 256²: +1.4 ms through Pillow; 1024×768 to 800×600: +14 ms). PNG sources up to
# RESAMPLE_PILLOW_MAX_PIXELS are decoded whole for it (libvips' thumbnail streams larger ones).
RESAMPLE_PILLOW = True
RESAMPLE_PILLOW_MAX_PIXELS = 1_048_576


def _resize_pillow(src: pyvips.Image, width: int, height: int) -> pyvips.Image | None:
    """``src`` (sRGB with alpha) resized to exactly ``width`` × ``height`` by Pillow's Lanczos3, or None:
    libvips' thumbnail does it."""
    if (not RESAMPLE_PILLOW or src.bands != 4 or src.format != "uchar" or src.interpretation != "srgb"
            or width > src.width or height > src.height):
        return None
    frame = PILImage.frombuffer("RGBA", (src.width, src.height), src.write_to_memory(), "raw", "RGBA", 0, 1)
    small = frame.resize((width, height), PILImage.Resampling.LANCZOS, reducing_gap=2.0)
    # new_from_memory says "multiband": sRGB again, or nothing after it would see the alpha (hasalpha())
    return pyvips.Image.new_from_memory(small.tobytes(), width, height, src.bands, "uchar").copy(
        interpretation="srgb")


def _resize_vips(src: pyvips.Image, width: int, height: int) -> pyvips.Image | None:
    """``src`` (one upright 8-bit sRGB or grey frame without alpha, no ICC profile) reduced to exactly
    ``width`` × ``height`` by libvips' Lanczos3, or None: libvips' thumbnail does it.

    What thumbnail_image does for such an image is a colourspace to the space it is already in and
    ``resize`` by the same factors, which are computed here as thumbnail computes them: the same
    pixels (tests/test_pipeline.py), without building thumbnail's own operations around the resize
    (~0.25 ms of the resample step's ~2 ms at 384² to 256²; docs/performance.md)."""
    if (src.format != "uchar" or (src.bands, src.interpretation) not in _PLAIN_FRAMES
            or src.get_typeof("page-height") or width > src.width or height > src.height):
        return None
    hshrink, vshrink = src.width / width, src.height / height  # thumbnail's shrinks (size=force)
    return src.resize(1.0 / hshrink, vscale=1.0 / vshrink)


# One-frame layouts _resize_vips takes: what thumbnail's colourspace step leaves as it is.
_PLAIN_FRAMES = frozenset({(3, "srgb"), (1, "b-w")})


def _dct_scale(p: Probe, pl: Plan, fmt: str) -> Fraction:
    """The JPEG shrink-on-load: 8/n for the smallest n/8 scale that leaves the margin for the resampler
    (DCT_MARGIN; none for JPEG outputs up to JPEG_DCT_DIRECT_PIXELS), or the power-of-two scale below
    it when that still leaves DCT_FAST_MARGIN."""
    if p.format != "jpeg":
        return Fraction(1)
    direct = JPEG_DCT_DIRECT_PIXELS if fmt == "jpeg" else DCT_DIRECT_PIXELS
    margin = 1 if pl.resize_w * pl.resize_h <= direct else DCT_MARGIN

    def fits(n: int, m: float) -> bool:
        return p.width * n >= m * 8 * pl.resize_w and p.height * n >= m * 8 * pl.resize_h

    for n in range(1, 8):
        if fits(n, margin):
            fast = 1 << (n.bit_length() - 1)  # 1/8, 1/4 or 1/2 at or below n/8
            if fast != n and fits(fast, min(margin, DCT_FAST_MARGIN)):
                return Fraction(8, fast)
            return Fraction(8, n)
    return Fraction(1)


def _vips_shrink(scale: Fraction) -> int:
    """The largest of libvips' JPEG shrinks (1, 2, 4, 8) that is not more than ``scale``."""
    return next(s for s in (8, 4, 2, 1) if s <= scale)


def _decode(buf: bytes, spec: TransformSpec, p: Probe, pl: Plan, fmt: str, animate: bool) -> pyvips.Image:
    kwargs: dict[str, object] = {"height": pl.resize_h}
    width = pl.resize_w
    if not animate and spec.fit == "cover" and spec.position in _SMART and pl.force:
        # libvips crops single frames itself, in one sequential pass.
        width, kwargs["height"], kwargs["crop"] = pl.out_w, pl.out_h, _SMART[spec.position]
    else:
        # the plan's size exactly: it already keeps the aspect ratio to the nearest pixel, while
        # thumbnail left to fit a box rounds its own scale (1000x750 at w=200 gave 199x150)
        kwargs["size"] = "force"
    if p.has_icc:
        kwargs["output_profile"] = "srgb"
    if (LINEAR and not animate and pl.resize_w * pl.resize_h <= LINEAR_MAX_PIXELS
            and (pl.resize_w < p.width or pl.resize_h < p.height)):
        kwargs["linear"] = True
    option_string = f"n=-1,{_FAIL_ON}" if animate else _FAIL_ON
    scale = _dct_scale(p, pl, fmt) if "crop" not in kwargs else Fraction(1)  # smart crops: thumbnail_buffer's own
    src = None
    if p.format == "jpeg" and not p.has_icc and "crop" not in kwargs:
        # libjpeg-turbo straight, at the DCT scale (faster than libvips' loader: media/jpeg.py);
        # None for what only libvips handles, or for input the decoder found fault with.
        src = jpeg.decode(buf, scale, p.orientation)
    if src is None and scale > 1:
        # libvips' loader shrinks by 2, 4 or 8 only: the largest that still leaves the margin.
        src = pyvips.Image.new_from_buffer(buf, _FAIL_ON, shrink=_vips_shrink(scale), access="sequential")
    if (src is None and RESAMPLE_PILLOW and p.format == "png" and p.has_alpha and not animate and not p.has_icc
            and "crop" not in kwargs and p.width * p.height <= RESAMPLE_PILLOW_MAX_PIXELS):
        src = pyvips.Image.new_from_buffer(buf, _FAIL_ON, access="sequential")
    if src is not None:
        upright = not (src.get_typeof("orientation") and src.get("orientation") not in (0, 1))
        if upright and not p.has_icc and (src.width, src.height) == (width, kwargs["height"]):
            return src  # decoded at exactly the target size: nothing left for thumbnail to do
        if upright and not p.has_icc and "linear" not in kwargs and "crop" not in kwargs:
            small = _resize_pillow(src, width, kwargs["height"])
            if small is None:
                small = _resize_vips(src, width, kwargs["height"])
            if small is not None:
                return small
        return src.thumbnail_image(width, **kwargs)
    im = pyvips.Image.thumbnail_buffer(buf, width, option_string=option_string, **kwargs)
    if animate and spec.position in _SMART:
        im = im.copy_memory()  # smartcrop reads frame 0 before the crop reads all frames
    return im


def _to_srgb(im: pyvips.Image) -> pyvips.Image:
    if im.interpretation in ("srgb", "b-w"):
        return im
    if im.interpretation == "grey16":
        return im.colourspace("b-w")
    return im.colourspace("srgb")


# Encoder settings, chosen per format by bytes bought per millisecond of CPU against sharp, Pillow
# and plain libvips (bench/quality.py, bench/results/quality.md; the figures: docs/performance.md).
WEBP_EFFORT = 4  # effort 2 needs more bytes for the same score; 6 saves little for its CPU
# Large WebP outputs (over WEBP_LARGE_PIXELS a frame) are encoded at effort 2: at 800x600 effort 4
# saved a few percent of the bytes for over twice the encode time, most of the request.
WEBP_EFFORT_LARGE = 2
WEBP_LARGE_PIXELS = 512 * 512
# libwebp's preset for those large outputs (its spatial noise shaping and loop filter settings; None: its
# defaults). Only libvips' saver takes a preset, so a preset costs the slower saver (see WEBP_PILLOW).
WEBP_PRESET_LARGE: str | None = None
# libwebp's sharp RGB->YUV conversion ("smart subsample"): colour edges survive 4:2:0. On small
# graphics with alpha it buys many SSIMULACRA2 points at sharp's bytes for little CPU; on 256 px
# photos a few percent of bytes for a third of the request's CPU. Emoji and sticker sizes get it;
# 256 px avatars do not.
WEBP_SHARP_YUV_PIXELS = 128 * 128
# Still frames up to WEBP_SHARP_YUV_PIXELS are encoded at effort 2: with sharp YUV and the Lanczos3
# step through Pillow, 64 px graphics with alpha needed 0.91× / 0.94× sharp's bytes for its score
# (effort 4: 0.89× / 0.91×) for 13% less CPU, which puts the request's CPU under both peers'.
WEBP_EFFORT_SMALL = 2
# JPEG chroma: full (4:4:4) for thumbnails up to 512x512, where colour detail is pixel-sized and
# 4:2:0 loses clearly at sharp's bytes; 4:2:0 above, at every quality (libvips' "auto" drops it
# at Q >= 90 on its own, which costs many more bytes).
JPEG_FULL_CHROMA_PIXELS = 512 * 512
# AVIF: 4:4:4 (fewer bytes than 4:2:0 for the same score), libaom's tune=iq. Effort 2 up to
# 512x512: higher efforts saved bytes only against a linear-light reference, for about twenty times
# the CPU (seconds a request, more than sharp or Pillow spend); effort 4 above, where each step
# costs seconds.
AVIF_EFFORT_SMALL, AVIF_EFFORT = 2, 4
AVIF_SMALL_PIXELS = 512 * 512
AVIF_SUBSAMPLE = "off"
AVIF_TUNE = "iq"  # libaom's tune for still images (libvips 8.18's default; "ssim" needed more bytes)
# Bits per sample of AVIF outputs up to AVIF_SMALL_PIXELS (libaom's 10-bit path: finer quantisation steps for
# the same bitstream size; larger outputs keep 8, where each encode already costs seconds at effort 4).
AVIF_BITDEPTH_SMALL = 8

# Still lossy WebP without sharp YUV is written by Pillow's libwebp: the same encoder settings give
# the same bytes as libvips' saver, for 12-20% less CPU (the libwebp that pyvips-binary bundles runs
# slower than Pillow's on this machine: 256² effort 4, 7.3 vs 9.1 ms; 800×600 effort 2, 19.6 vs
# 23.8 ms). Pillow has no sharp YUV option, and animations keep libvips' saver (frame timing, loops).
WEBP_PILLOW = True
_PIL_MODES = {3: "RGB", 4: "RGBA"}


def _webp_pillow(im: pyvips.Image, q: int, effort: int) -> bytes | None:
    """Lossy WebP through Pillow from 8-bit sRGB(A) pixels, metadata-free as libvips' keep="none";
    None for any other pixel format (libvips' saver converts those itself)."""
    mode = _PIL_MODES.get(im.bands)
    if mode is None or im.format != "uchar" or im.interpretation != "srgb":
        return None
    frame = PILImage.frombuffer(mode, (im.width, im.height), im.write_to_memory(), "raw", mode, 0, 1)
    out = io.BytesIO()
    frame.save(out, "WEBP", quality=q, method=effort, alpha_quality=100, exact=False)
    return out.getvalue()


def _encode(im: pyvips.Image, fmt: str, spec: TransformSpec, animate: bool) -> bytes:
    q = spec.quality_for(fmt)
    if fmt == "jpeg":
        if im.hasalpha():
            im = im.flatten(background=[255] * (im.bands - 1))
        chroma = "off" if im.width * im.height <= JPEG_FULL_CHROMA_PIXELS else "on"
        if im.width * im.height <= JPEG_DCT_DIRECT_PIXELS:
            body = jpeg.encode(im, q, chroma == "off")
            if body is not None:
                return body
        return im.jpegsave_buffer(Q=q, keep="none", optimize_coding=True, subsample_mode=chroma)
    if fmt == "webp":
        if spec.lossless:
            return im.webpsave_buffer(lossless=True, keep="none", effort=2)  # as before: attachments' default
        page_h = im.get("page-height") if animate and im.get_typeof("page-height") else im.height
        frame = im.width * page_h
        large = frame > WEBP_LARGE_PIXELS
        effort = WEBP_EFFORT_LARGE if large else WEBP_EFFORT
        sharp_yuv = frame <= WEBP_SHARP_YUV_PIXELS
        if sharp_yuv and not animate:
            effort = WEBP_EFFORT_SMALL
        preset = WEBP_PRESET_LARGE if large else None
        if WEBP_PILLOW and not animate and not sharp_yuv and preset is None:
            body = _webp_pillow(im, q, effort)
            if body is not None:
                return body
        options = {"preset": preset} if preset else {}
        return im.webpsave_buffer(Q=q, keep="none", effort=effort, smart_subsample=sharp_yuv, **options)
    if fmt == "avif":
        if spec.lossless:
            return im.heifsave_buffer(lossless=True, compression="av1", effort=2, keep="none")
        small = im.width * im.height <= AVIF_SMALL_PIXELS
        return im.heifsave_buffer(Q=q, compression="av1", effort=AVIF_EFFORT_SMALL if small else AVIF_EFFORT,
                                  bitdepth=AVIF_BITDEPTH_SMALL if small else 8, subsample_mode=AVIF_SUBSAMPLE,
                                  tune=AVIF_TUNE, keep="none")
    if fmt == "png":
        return im.pngsave_buffer(keep="none", compression=6)
    if fmt == "gif":
        return im.gifsave_buffer(keep="none")
    raise BadRequest(f"cannot encode {fmt}")


def _encode_auto(im: pyvips.Image, fmt: str, spec: TransformSpec) -> bytes:
    """``quality=auto``: the encoder's own settings at the quality media/autoquality.py chooses (animations
    keep the format's default quality: each candidate would cost every frame's encode)."""
    fixed = replace(spec, auto=None)
    return autoquality.encode(im, fmt, spec.auto,
                              lambda frame, q: _encode(frame, fmt, replace(fixed, quality=q), False))


def _input_fails(buf: bytes, spec: TransformSpec, p: Probe, pl: Plan, fmt: str, animate: bool) -> bool:
    """Whether the decode step alone fails on this input: 400 (the input) or 500 (we failed).

    libvips decodes lazily, so a corrupt or truncated source fails while the
    encoder pulls pixels, and the exception cannot say which step it was. Its
    text cannot either: libvips keeps one error buffer for the whole process,
    and any other thread's call (a ``sniff()`` clearing it, another request's
    error) rewrites it between the failure and our reading it; deciding by
    that text turned 110 of 300 concurrent 400s into 500s. So the step is
    re-run on its own: the same decode, every pixel pulled (``avg``), nothing
    encoded. It costs one more decode, on the error path only.
    """
    try:
        _decode(buf, spec, p, pl, fmt, animate).avg()
    except pyvips.Error:
        return True
    return False


# The largest frame side each encoder writes (libvips 8.18: WebP 16383, AVIF 16384,
# JPEG 65500, GIF 65535; PNG has no practical limit).
MAX_SIDE = {"webp": 16383, "avif": 16384, "jpeg": 65500, "gif": 65535}


def check_output(fmt: str, pl: Plan) -> None:
    """A 400 that says why, before decoding, for a frame the format cannot hold."""
    side = MAX_SIDE.get(fmt)
    if side is not None and max(pl.out_w, pl.out_h) > side:
        raise BadRequest(
            f"{fmt} cannot hold a {pl.out_w}x{pl.out_h} image (at most {side} pixels a side): "
            "ask for a smaller width/height or another format"
        )


def load(buf: bytes, access: str = "sequential") -> pyvips.Image:
    """The whole image through the strict loader (failure on truncated or corrupt data), for edits
    that need every pixel (``media/edit.py``). The caller has probed ``buf`` (an allowed loader)
    and checked its limits, and holds a transform place."""
    return pyvips.Image.new_from_buffer(buf, _FAIL_ON, access=access)


def decode_inside(buf: bytes, side: int, limits: Limits, p: Probe | None = None) -> pyvips.Image:
    """The first frame of ``buf``, upright, shrunk to fit ``side`` x ``side`` (never enlarged), for
    work that needs pixels but no output (the library's placeholders): the same checks and loader
    as ``transform`` — the header's pixels against ``limits`` before anything is decoded (TooLarge),
    the loaders allowed (BadRequest), shrink-on-load (libjpeg-turbo at the DCT scale, libvips'
    shrink), failure on corrupt data. The caller holds a transform place."""
    p = p or probe(buf)
    check_limits(p, limits, False)
    spec = TransformSpec(width=side, height=side, fit="inside", position="center", format="webp", quality=None,
                         lossless=False, animated=False)
    return _decode(buf, spec, p, plan(spec, p.width, p.height), "webp", False)


def transform(buf: bytes, spec: TransformSpec, limits: Limits, p: Probe | None = None) -> Output:
    p = p or probe(buf)
    fmt = output_format(spec, p)
    animate = should_animate(spec, p, fmt)
    check_limits(p, limits, animate)
    pl = plan(spec, p.width, p.height)
    check_output(fmt, pl)
    try:
        im = _decode(buf, spec, p, pl, fmt, animate)
        page_h = im.get("page-height") if animate and im.get_typeof("page-height") else im.height
        if not animate:
            page_h = im.height
        if (im.width, page_h) != (pl.out_w, pl.out_h):
            frames = _frames(im, page_h) if animate else [im]
            if spec.fit == "contain":
                frames = [_letterbox(f, pl.out_w, pl.out_h, spec.position) for f in frames]
            else:
                w, h = min(pl.out_w, frames[0].width), min(pl.out_h, frames[0].height)
                left, top = _crop_box(frames[0], w, h, spec.position)
                frames = [f.crop(left, top, w, h) for f in frames]
            im = _join(frames, im) if animate else frames[0]
            page_h = frames[0].height
        im = _to_srgb(im)
        if spec.auto is not None and not spec.lossless and not animate and fmt in autoquality.FORMATS:
            body = _encode_auto(im, fmt, spec)
        else:
            body = _encode(im, fmt, spec, animate)
    except pyvips.Error:
        if _input_fails(buf, spec, p, pl, fmt, animate):
            raise BadRequest("undecodable image") from None
        raise ProcessingError("image processing failed") from None
    frames_n = im.height // page_h if animate and page_h else 1
    return Output(body, fmt, MIME[fmt], im.width, page_h, frames_n)

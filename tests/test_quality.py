"""Quality per byte: the pipeline resamples for quality per byte and stays exact.

The quality-per-byte numbers are measured by bench/quality.py (they need sharp
from npm and minutes of metric time); here are the properties behind them,
each able to fail: a real filter after the shrink-on-load, on the sRGB values
(as sharp and the viewers scale: the lead in bytes then holds against a
reference downscaled either way), with premultiplied alpha; and the correctness the changes must not cost —
EXIF orientation, Display-P3 to sRGB, alpha edges, frame timing and loops —
through every decode path (libjpeg-turbo at n/8 scales, libvips' loader).
"""

from __future__ import annotations

import pytest
import pyvips

from mediaproxy.media import jpeg
from mediaproxy.media import pipeline as P
from mediaproxy.media.spec import BANNER, BOX, SQUARE, parse_spec

from . import media

LIMITS = P.Limits(max_pixels=100_000_000, max_frames=1000, max_animation_pixels=400_000_000)


def run(buf: bytes, profile, query: dict, ext: str, **kw) -> P.Output:
    return P.transform(buf, parse_spec(profile, query, ext, **kw), LIMITS)


def stripes(width: int, height: int, period: int) -> pyvips.Image:
    """Black and white columns ``period`` pixels wide each."""
    x = pyvips.Image.xyz(width, height)[0]
    v = ((x / period).floor() % 2 * 255).cast("uchar")
    return v.bandjoin([v, v]).copy(interpretation="srgb")


@pytest.mark.parametrize("ext, size", [("png", "256"), ("png", "100"), ("png", "160"), ("webp", "256")])
def test_downscale_averages_srgb_values_not_light(ext, size):
    # Half the pixels white, half black: sRGB 128 filtered on the values (as sharp and Pillow do, and as a
    # gamma-space reference expects), not the 188 of half the light; grey, not stripes.
    buf = stripes(1024, 1024, 1).pngsave_buffer()
    out = media.decode(run(buf, SQUARE, {"size": size, "quality": "95"}, ext).body)
    inner = out.crop(8, 8, out.width - 16, out.height - 16)
    assert abs(inner.avg() - 128) < 8, inner.avg()
    assert inner.deviate() < 12


@pytest.mark.parametrize("ext, size", [("png", "128"), ("webp", "128"), ("jpeg", "160")])
def test_jpeg_is_filtered_after_the_dct_scale_decode(ext, size):
    # 4-pixel stripes survive the 1/4 DCT decode (1024 -> 256) as 1-pixel stripes; served as decoded
    # they would stay stripes, so the 128 and 160 px outputs must be the filtered grey.
    # (JPEG outputs up to 128 px are the exception: the next test.)
    buf = stripes(1024, 1024, 4).jpegsave_buffer(Q=100, subsample_mode="off")
    out = media.decode(run(buf, SQUARE, {"size": size, "quality": "100"}, ext).body)
    inner = out.crop(8, 8, out.width - 16, out.height - 16)
    assert abs(inner.avg() - 128) < 10, inner.avg()
    assert inner.deviate() < 12  # grey, not stripes


def test_jpeg_decodes_at_a_scale_that_leaves_room_for_the_filter(monkeypatch):
    calls = []
    real = jpeg.decode
    monkeypatch.setattr(jpeg, "decode", lambda buf, scale, o: calls.append(scale) or real(buf, scale, o))
    buf = media.jpeg(1024, 1024)
    for size, decoded in (("256", 384), ("128", 256), ("64", 128), ("512", 768), ("1024", 1024)):
        calls.clear()
        out = run(buf, SQUARE, {"size": size}, "webp")
        assert out.width == int(size)
        assert len(calls) == 1 and round(1024 / calls[0]) == decoded, (size, calls)
        assert decoded >= 1.5 * int(size) or decoded == 1024  # never below the margin, never enlarged


def test_jpeg_takes_the_power_of_two_scale_below_when_it_leaves_room(monkeypatch):
    # libjpeg-turbo's odd scales (3/8, 5/8, ...) have no SIMD: 2048 -> 800 px decodes at 1/2 (1024 px,
    # 1.28x the target) rather than 5/8; 1024 -> 256 keeps 3/8, as 1/4 would leave nothing to filter.
    calls = []
    real = jpeg.decode
    monkeypatch.setattr(jpeg, "decode", lambda buf, scale, o: calls.append(scale) or real(buf, scale, o))
    for (w, h), query, profile, decoded in (((2048, 1536), {"width": "800"}, BANNER, 1024),
                                            ((1024, 1024), {"size": "256"}, SQUARE, 384)):
        calls.clear()
        out = run(media.jpeg(w, h), profile, query, "webp")
        assert out.width == int(query.get("width", query.get("size")))
        assert len(calls) == 1 and round(w / calls[0]) == decoded, (w, query, calls)


def test_small_jpeg_outputs_decode_straight_at_the_dct_scale(monkeypatch):
    # JPEG thumbnails up to 128x128 take the DCT scale nearest above the target, with no margin (PIL's
    # draft()): 1024 -> 128 decodes at 1/8 and is served as decoded; a WebP of the same size keeps the margin.
    calls = []
    real = jpeg.decode
    monkeypatch.setattr(jpeg, "decode", lambda buf, scale, o: calls.append(scale) or real(buf, scale, o))
    for (w, h), size, ext, decoded in (((1024, 1024), "128", "jpeg", 128), ((1024, 1024), "64", "jpeg", 128),
                                       ((1000, 1000), "128", "jpeg", 250), ((1024, 1024), "128", "webp", 256),
                                       ((1024, 1024), "160", "jpeg", 256)):
        calls.clear()
        out = run(media.jpeg(w, h), SQUARE, {"size": size}, ext)
        assert (out.width, out.height) == (int(size), int(size))
        assert len(calls) == 1 and round(w / calls[0]) == decoded, (w, size, ext, calls)


def quadrants(width: int, height: int) -> pyvips.Image:
    """Red top-left, green top-right, blue bottom-left, white bottom-right."""
    w, h = width // 2, height // 2
    tiles = [pyvips.Image.black(w, h).new_from_image(c) for c in ([230, 20, 20], [20, 230, 20], [20, 20, 230],
                                                                 [235, 235, 235])]
    return pyvips.Image.arrayjoin(tiles, across=2).cast("uchar").copy(interpretation="srgb")


# what EXIF orientation n does to the stored picture to make it upright
_UPRIGHT = {
    1: lambda im: im, 2: lambda im: im.fliphor(), 3: lambda im: im.rot180(), 4: lambda im: im.flipver(),
    5: lambda im: im.rot90().fliphor(), 6: lambda im: im.rot90(), 7: lambda im: im.rot270().fliphor(),
    8: lambda im: im.rot270(),
}


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("query", [{"width": "160"}, {"width": "300"}, {}])
def test_every_exif_orientation_on_every_decode_path(orientation, query):
    upright = quadrants(1200, 800)
    # store the picture so that applying the orientation gives `upright` back
    inverse = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}[orientation]
    stored = _UPRIGHT[inverse](upright).copy()
    stored.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    buf = stored.jpegsave_buffer(Q=95)
    out = media.decode(run(buf, BANNER, query, "png").body)
    want_w = int(query.get("width", 1200))
    assert (out.width, out.height) == (want_w, round(want_w * 2 / 3))
    for (fx, fy), colour in (((0.25, 0.25), (230, 20, 20)), ((0.75, 0.25), (20, 230, 20)),
                             ((0.25, 0.75), (20, 20, 230)), ((0.75, 0.75), (235, 235, 235))):
        got = out.getpoint(int(out.width * fx), int(out.height * fy))
        assert all(abs(g - c) < 12 for g, c in zip(got, colour, strict=True)), (orientation, query, fx, fy, got)


@pytest.mark.parametrize("query", [{}, {"width": "300"}, {"width": "100"}])
def test_display_p3_becomes_srgb_without_a_shift(query):
    # In-gamut sRGB colours, stored as Display P3 with its profile: they must come back as the same sRGB.
    colours = [(200, 40, 40), (40, 180, 60), (50, 70, 210), (240, 200, 40), (128, 128, 128), (30, 30, 30)]
    tiles = [pyvips.Image.black(200, 200).new_from_image(list(c)) for c in colours]
    srgb = pyvips.Image.arrayjoin(tiles, across=3).cast("uchar").copy(interpretation="srgb")
    p3 = srgb.icc_transform("p3", input_profile="srgb", intent="relative")
    buf = p3.cast("uchar").jpegsave_buffer(Q=100, subsample_mode="off", keep="icc")
    assert media.decode(buf).get_typeof("icc-profile-data")
    assert abs(media.decode(buf).getpoint(100, 100)[1] - 40) > 3  # the stored numbers are P3, not sRGB
    out = media.decode(run(buf, BANNER, query, "png").body)
    tile = out.width // 3
    for i, c in enumerate(colours):
        got = out.getpoint(i % 3 * tile + tile // 2, i // 3 * tile + tile // 2)
        assert all(abs(g - w) <= 3 for g, w in zip(got[:3], c, strict=True)), (query, c, got)


@pytest.mark.parametrize("colour", [(255, 255, 255), (0, 0, 0), (250, 30, 30)])
@pytest.mark.parametrize("ext", ["png", "webp"])
def test_alpha_edges_have_no_halo(colour, ext):
    # An antialiased disc on a fully transparent background whose hidden colour is the opposite:
    # filtering without premultiplied alpha bleeds that hidden colour into the edge.
    size = 512
    xyz = pyvips.Image.xyz(size, size)
    d = ((xyz[0] - size / 2) ** 2 + (xyz[1] - size / 2) ** 2) ** 0.5
    ramp = (d * -1 + size * 0.35) * 64 + 128  # a one-pixel antialiased edge
    alpha = (ramp > 255).ifthenelse(255, (ramp < 0).ifthenelse(0, ramp)).cast("uchar")
    hidden = [255 - v for v in colour]
    rgb = (alpha > 0).ifthenelse(list(colour), hidden)
    src = rgb.bandjoin(alpha).cast("uchar").copy(interpretation="srgb").pngsave_buffer()
    query = {"size": "64", "quality": "lossless"} if ext == "webp" else {"size": "64"}
    out = media.decode(run(src, SQUARE, query, ext).body)
    assert out.bands == 4
    mask = out[3] > 16  # every pixel that shows at all
    for band, want in enumerate(colour):
        diff = (out[band].cast("int") - want).abs()
        assert mask.ifthenelse(diff, 0).max() <= 12, (colour, band)
    assert out[3].min() == 0 and out[3].max() == 255  # still a disc with a transparent surround


@pytest.mark.parametrize("alpha", [False, True])
def test_webp_written_by_pillow_has_libvips_pixels(monkeypatch, alpha):
    # Still lossy WebP without sharp YUV goes through Pillow's libwebp at libvips' saver settings:
    # the same picture (alpha kept, nothing else carried), whichever library writes it.
    im = quadrants(600, 600)
    if alpha:
        im = im.bandjoin((pyvips.Image.xyz(600, 600)[0] * 255 / 599).cast("uchar"))
    buf = im.pngsave_buffer()
    ours = run(buf, SQUARE, {"size": "256"}, "webp").body
    monkeypatch.setattr(P, "WEBP_PILLOW", False)
    libvips = run(buf, SQUARE, {"size": "256"}, "webp").body
    a, b = media.decode(ours), media.decode(libvips)
    assert a.bands == b.bands == (4 if alpha else 3)
    assert (a.cast("int") - b.cast("int")).abs().max() <= 2
    assert not [f for f in a.get_fields() if f.startswith(("exif", "xmp", "icc"))]


def test_large_webp_preset_reaches_the_encoder_and_only_large_outputs(monkeypatch):
    # WEBP_PRESET_LARGE (bench/quality.py's preset variants) is libvips' saver's preset for outputs over
    # WEBP_LARGE_PIXELS; smaller outputs keep libwebp's defaults.
    src = (quadrants(1200, 900).cast("float") + pyvips.Image.gaussnoise(1200, 900, sigma=20)).cast("uchar")
    buf = src.copy(interpretation="srgb").pngsave_buffer()
    before = {size: run(buf, BANNER, {"width": size}, "webp").body for size in ("800", "300")}
    monkeypatch.setattr(P, "WEBP_PRESET_LARGE", "drawing")
    after = {size: run(buf, BANNER, {"width": size}, "webp").body for size in ("800", "300")}
    assert after["300"] == before["300"]
    assert after["800"] != before["800"]
    im = pyvips.Image.new_from_buffer(buf, "").thumbnail_image(800, size="force", height=600)
    assert after["800"] == im.webpsave_buffer(Q=80, keep="none", effort=P.WEBP_EFFORT_LARGE, preset="drawing")


def animation(delays: list[int], loop: int) -> bytes:
    frames = [pyvips.Image.black(200, 200).new_from_image([i * 40, 255 - i * 40, 128]) for i in range(len(delays))]
    strip = pyvips.Image.arrayjoin(frames, across=1).cast("uchar").copy(interpretation="srgb")
    strip.set_type(pyvips.GValue.gint_type, "page-height", 200)
    strip.set_type(pyvips.GValue.array_int_type, "delay", delays)
    strip.set_type(pyvips.GValue.gint_type, "loop", loop)
    return strip.gifsave_buffer()


@pytest.mark.parametrize("loop", [0, 1, 3])
@pytest.mark.parametrize("ext", ["webp", "gif"])
def test_animation_keeps_every_delay_and_the_loop_count(loop, ext):
    delays = [40, 70, 100, 20, 500, 60]
    out = run(animation(delays, loop), BOX, {"size": "128", "animated": "true"}, ext)  # WebP moves only with it
    im = media.decode(out.body, all_frames=True)
    assert out.frames == 6 and im.get("page-height") == 128 and im.width == 128
    assert list(im.get("delay")) == delays
    assert im.get("loop") == loop
    for i in range(6):  # every frame is its own picture, resampled, not a copy of the first
        got = im.crop(0, 128 * i, 128, 128).getpoint(64, 64)
        assert abs(got[0] - i * 40) < 10 and abs(got[1] - (255 - i * 40)) < 10, (i, got)


@pytest.mark.parametrize("quality", ["85", "90", "95"])
def test_jpeg_quality_90_keeps_chroma_subsampling(quality):
    # libvips' saver turns 4:2:0 off at Q >= 90 on its own, for 1.5x the bytes; the pipeline does not.
    out = run(media.jpeg(1024, 1024), BANNER, {"width": "600", "quality": quality}, "jpeg").body
    assert pyvips.Image.new_from_buffer(out, "").get("jpeg-chroma-subsample") == "4:2:0"

"""The pyvips pipeline without HTTP: geometry, animation, colour, limits."""

from __future__ import annotations

import multiprocessing
import resource
import struct
import zlib
from functools import cache

import pytest
import pyvips

from mediaproxy.errors import BadRequest, TooLarge
from mediaproxy.media import pipeline as P
from mediaproxy.media.spec import ATTACHMENT, BANNER, BOX, FITS, SQUARE, parse_spec

from . import media
from .cdnutil import gif6, webp6

LIMITS = P.Limits(max_pixels=100_000_000, max_frames=1000, max_animation_pixels=400_000_000)


def run(buf: bytes, profile, query: dict, ext: str = "png", limits=LIMITS):
    return P.transform(buf, parse_spec(profile, query, ext), limits)


def spec(query: dict, profile=BANNER):
    return parse_spec(profile, query, "png")


# ---------------------------------------------------------------- geometry plan


@pytest.mark.parametrize(
    "fit, box, src, resize, out",
    [
        # 640x480 into 200x200
        ("cover", (200, 200), (640, 480), (267, 200), (200, 200)),
        ("contain", (200, 200), (640, 480), (200, 150), (200, 200)),
        ("fill", (200, 200), (640, 480), (200, 200), (200, 200)),
        ("inside", (200, 200), (640, 480), (200, 150), (200, 150)),
        ("outside", (200, 200), (640, 480), (267, 200), (267, 200)),
        # portrait source
        ("cover", (100, 100), (300, 600), (100, 200), (100, 100)),
        ("inside", (100, 100), (300, 600), (50, 100), (50, 100)),
        ("outside", (100, 100), (300, 600), (100, 200), (100, 200)),
        # never enlarge: a box bigger than the source is scaled down until the image is not enlarged
        ("cover", (2000, 2000), (640, 480), (640, 480), (480, 480)),
        ("contain", (2000, 2000), (640, 480), (640, 480), (640, 640)),
        ("fill", (2000, 2000), (640, 480), (480, 480), (480, 480)),
        ("inside", (2000, 2000), (640, 480), (640, 480), (640, 480)),
        ("outside", (2000, 2000), (640, 480), (640, 480), (640, 480)),
        # one axis bigger than the source: no axis of the image grows
        ("cover", (1000, 100), (640, 480), (640, 480), (640, 64)),
        ("fill", (1000, 100), (640, 480), (640, 64), (640, 64)),
        ("inside", (1000, 100), (640, 480), (133, 100), (133, 100)),
        ("outside", (1000, 100), (640, 480), (640, 480), (640, 480)),
    ],
)
def test_plan(fit, box, src, resize, out):
    pl = P.plan(spec({"width": str(box[0]), "height": str(box[1]), "fit": fit}), *src)
    assert (pl.resize_w, pl.resize_h) == resize
    assert (pl.out_w, pl.out_h) == out
    # never enlarged
    assert pl.resize_w <= src[0] or pl.resize_h <= src[1]
    if fit != "contain":
        assert pl.out_w <= max(src[0], pl.resize_w) and pl.out_h <= max(src[1], pl.resize_h)


@pytest.mark.parametrize(
    "query, out",
    [
        ({"width": "320"}, (320, 240)),
        ({"height": "120"}, (160, 120)),
        ({"width": "4096"}, (640, 480)),  # never enlarged
        ({"height": "4096"}, (640, 480)),
        ({}, (640, 480)),
    ],
)
def test_plan_one_axis(query, out):
    pl = P.plan(spec(query), 640, 480)
    assert (pl.out_w, pl.out_h) == out


@pytest.mark.parametrize("fit", sorted(FITS))
@pytest.mark.parametrize("src", [(1, 1), (1, 3000), (3000, 1), (7, 5)])
def test_plan_degenerate_sources(fit, src):
    pl = P.plan(spec({"width": "64", "height": "48", "fit": fit}), *src)
    assert min(pl.resize_w, pl.resize_h, pl.out_w, pl.out_h) >= 1
    assert pl.out_w <= max(64, src[0]) and pl.out_h <= max(48, src[1])


# ---------------------------------------------------------------- transform


@cache
def jpeg640() -> bytes:
    return media.jpeg(640, 480)




@pytest.mark.parametrize("fit", sorted(FITS))
def test_transform_matches_plan(fit):
    out = run(jpeg640(), BANNER, {"width": "200", "height": "200", "fit": fit}, "png")
    im = media.decode(out.body)
    pl = P.plan(spec({"width": "200", "height": "200", "fit": fit}), 640, 480)
    assert (im.width, im.height) == (out.width, out.height) == (pl.out_w, pl.out_h)


def test_probe_reads_the_header():
    p = P.probe(gif6())
    assert (p.format, p.width, p.height, p.pages, p.animated) == ("gif", 120, 90, 6, True)
    p = P.probe(media.oriented_jpeg(200, 100, 6))
    assert (p.width, p.height) == (100, 200)  # upright
    p = P.probe(media.png(30, 20, alpha=True))
    assert p.has_alpha and not p.animated


@pytest.mark.parametrize("src", ["gif", "webp"])
def test_animation_keeps_frames_and_timing(src):
    buf = gif6() if src == "gif" else webp6()
    for ext in ("gif", "webp"):
        out = run(buf, SQUARE, {"size": "64", "animated": "true"}, ext)
        im = media.decode(out.body, all_frames=True)
        assert out.frames == 6 and media.pages(out.body) == 6
        assert im.get("page-height") == 64 and im.width == 64
        assert list(im.get("delay")) == [70] * 6
        # frames are distinct (not six copies of the first)
        firsts = {tuple(round(v) for v in im.crop(0, 64 * i, 64, 64).getpoint(32, 32)) for i in range(6)}
        assert len(firsts) == 6


@pytest.mark.parametrize("fit", sorted(FITS))
def test_animation_every_fit(fit):
    out = run(gif6(), BANNER, {"width": "50", "height": "30", "fit": fit}, "gif")
    im = media.decode(out.body, all_frames=True)
    pl = P.plan(spec({"width": "50", "height": "30", "fit": fit}), 120, 90)
    assert media.pages(out.body) == 6
    assert (im.width, im.get("page-height")) == (pl.out_w, pl.out_h)


@pytest.mark.parametrize("src", ["gif", "webp"])
def test_animation_is_decided_by_the_output_format(src):
    buf = gif6() if src == "gif" else webp6()
    for profile in (SQUARE, BOX, BANNER):
        # GIF output keeps the animation whatever `animated` says
        for q in ({}, {"animated": "false"}, {"animated": "true"}):
            assert run(buf, profile, {"size": "64", **q}, "gif").frames == 6
        # WebP output only with animated=true
        assert run(buf, profile, {"size": "64"}, "webp").frames == 1
        assert run(buf, profile, {"size": "64", "animated": "false"}, "webp").frames == 1
        assert run(buf, profile, {"size": "64", "animated": "true"}, "webp").frames == 6
        # every other format is the first frame
        for ext in ("png", "jpeg", "avif"):
            assert run(buf, profile, {"size": "64", "animated": "true"}, ext).frames == 1


@pytest.mark.parametrize("src", ["gif", "webp"])
def test_attachments_keep_animation_only_when_asked(src):
    buf = gif6() if src == "gif" else webp6()
    for fmt in ("gif", "webp"):
        assert run(buf, ATTACHMENT, {"width": "64", "format": fmt}, None).frames == 1
        assert run(buf, ATTACHMENT, {"width": "64", "format": fmt, "animated": "false"}, None).frames == 1
        assert run(buf, ATTACHMENT, {"width": "64", "format": fmt, "animated": "true"}, None).frames == 6
    assert run(buf, ATTACHMENT, {"width": "64"}, None).frames == 1  # the source's own format
    assert run(buf, ATTACHMENT, {"width": "64", "animated": "true"}, None).frames == 6


@pytest.mark.parametrize("pos", ["entropy", "attention"])
def test_smart_crop_on_animation_keeps_frames(pos):
    out = run(media.animation(100, 300, frames=3), SQUARE, {"size": "100", "position": pos, "animated": "true"},
              "webp")
    assert out.frames == 3 and (out.width, out.height) == (100, 100)


def test_entropy_and_attention_find_the_interesting_part():
    flat = pyvips.Image.black(100, 200).new_from_image([128, 128, 128]).cast("uchar")
    noise = pyvips.Image.gaussnoise(100, 100, sigma=60, mean=128).cast("uchar")
    busy = flat.join(noise.bandjoin([noise, noise]), "vertical").copy(interpretation="srgb").pngsave_buffer()
    assert media.decode(run(busy, SQUARE, {"size": "100", "position": "entropy"}).body).deviate() > 20
    assert media.decode(run(busy, SQUARE, {"size": "100", "position": "center"}).body).deviate() < 1

    grey = pyvips.Image.black(100, 200).new_from_image([120, 120, 120]).cast("uchar")
    red = pyvips.Image.black(100, 100).new_from_image([230, 30, 40]).cast("uchar")
    salient = grey.join(red, "vertical").copy(interpretation="srgb").pngsave_buffer()
    out = media.decode(run(salient, SQUARE, {"size": "100", "position": "attention"}).body)
    assert out.getpoint(50, 95) == [230, 30, 40]


def test_exif_orientation_applied():
    # landscape red|blue, EXIF 6 (rotate 90° clockwise): upright is portrait, red on top
    out = run(media.oriented_jpeg(200, 100, 6), BANNER, {}, "png")
    im = media.decode(out.body)
    assert (im.width, im.height) == (100, 200)
    top, bottom = im.getpoint(50, 20), im.getpoint(50, 180)
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60
    assert not im.get_typeof("orientation") or im.get("orientation") == 1


def test_lossless_webp_is_pixel_equal():
    src = media.png(100, 80)
    out = run(src, BANNER, {"quality": "lossless"}, "webp")
    assert (media.decode(out.body) - media.decode(src)).abs().max() == 0


def test_colour_sources_become_srgb_8bit():
    grad = media.gradient(100, 80)
    rgb16 = (grad.cast("ushort") * 256).copy(interpretation="rgb16").pngsave_buffer()
    grey16 = (grad[0].cast("ushort") * 256).copy(interpretation="grey16").pngsave_buffer()
    cmyk = grad.colourspace("cmyk").jpegsave_buffer()
    p3 = grad.icc_export(output_profile="p3").jpegsave_buffer()
    for name, buf in (("rgb16", rgb16), ("grey16", grey16), ("cmyk", cmyk), ("p3", p3)):
        for ext in ("png", "webp", "jpeg"):
            im = media.decode(run(buf, BANNER, {"width": "50"}, ext).body)
            assert im.format == "uchar", (name, ext)
            assert im.interpretation in ("srgb", "b-w"), (name, ext)
            assert not im.get_typeof("icc-profile-data"), (name, ext)
            if name != "grey16":
                # colours survive: the centre of the gradient is about (128, 128, 64)
                r, g, b = im.getpoint(25, 20)[:3]
                assert abs(r - 128) < 16 and abs(g - 128) < 16 and abs(b - 64) < 16, (name, ext, r, g, b)


def test_metadata_stripped():
    im = media.gradient(100, 80).copy()
    im.set_type(pyvips.GValue.gstr_type, "exif-ifd0-Artist", "Secret Person")
    im.set_type(pyvips.GValue.gstr_type, "exif-ifd0-Copyright", "Secret Person")
    src = im.jpegsave_buffer()
    assert b"Secret Person" in src
    for ext in ("jpeg", "png", "webp", "avif", "gif"):
        for q in ({}, {"width": "50"}):
            out = run(src, BANNER, q, ext)
            assert b"Secret Person" not in out.body and b"Exif" not in out.body, (ext, q)
            fields = media.decode(out.body).get_fields()
            assert not [f for f in fields if f.startswith(("exif", "xmp", "icc", "iptc"))], (ext, fields)


def test_alpha_flattened_for_jpeg_and_kept_for_png():
    src = pyvips.Image.black(40, 40).new_from_image([255, 0, 0, 0]).cast("uchar").copy(interpretation="srgb")
    out = run(src.pngsave_buffer(), BANNER, {}, "jpeg")
    im = media.decode(out.body)
    assert im.bands == 3 and min(im.getpoint(20, 20)) > 245  # transparent → white
    im = media.decode(run(src.pngsave_buffer(), BANNER, {}, "png").body)
    assert im.bands == 4 and im.getpoint(20, 20)[3] == 0


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "png", "avif"])
def test_alpha_survives_a_downscale(fmt):
    """A transparent PNG made smaller (the resample may run outside libvips, whose images it hands
    back must still say sRGB with alpha): flattened onto white for JPEG, transparent elsewhere."""
    src = pyvips.Image.black(512, 512).new_from_image([255, 0, 0, 0]).cast("uchar").copy(interpretation="srgb")
    im = media.decode(run(src.pngsave_buffer(), SQUARE, {"size": "64"}, fmt).body)
    if fmt == "jpeg":
        assert im.bands == 3 and min(im.getpoint(32, 32)) > 245
    else:
        assert im.hasalpha() and im.getpoint(32, 32)[3] == 0


def test_contain_letterbox_is_transparent_or_white():
    out = run(jpeg640(), BANNER, {"width": "200", "height": "200", "fit": "contain"}, "png")
    im = media.decode(out.body)
    assert im.bands == 4 and im.getpoint(100, 2)[3] == 0 and im.getpoint(100, 100)[3] == 255
    out = run(jpeg640(), BANNER, {"width": "200", "height": "200", "fit": "contain", "position": "top"}, "png")
    im = media.decode(out.body)
    assert im.getpoint(100, 2)[3] == 255 and im.getpoint(100, 197)[3] == 0  # image at the top
    out = run(jpeg640(), BANNER, {"width": "200", "height": "200", "fit": "contain"}, "jpeg")
    im = media.decode(out.body)
    assert im.bands == 3 and min(im.getpoint(100, 2)) > 245


@pytest.mark.parametrize("ext, loader", [("jpeg", "jpeg"), ("png", "png"), ("webp", "webp"), ("avif", "heif"),
                                         ("gif", "gif")])
def test_every_output_format(ext, loader):
    out = run(jpeg640(), SQUARE, {"size": "64"}, ext)
    assert media.loader(out.body) == loader
    assert out.content_type == f"image/{ext}"


def test_quality_changes_lossy_bytes():
    small = run(jpeg640(), BANNER, {"quality": "20"}, "jpeg").body
    big = run(jpeg640(), BANNER, {"quality": "95"}, "jpeg").body
    assert len(small) < len(big)
    assert run(jpeg640(), BANNER, {"quality": "low"}, "jpeg").body == small


# ---------------------------------------------------------------- limits


def test_limits_from_the_header():
    small = P.Limits(max_pixels=10_000, max_frames=4, max_animation_pixels=50_000)
    with pytest.raises(TooLarge):
        run(media.png(200, 100), SQUARE, {"size": "16"}, limits=small)
    with pytest.raises(TooLarge):  # 6 frames > 4
        run(media.animation(40, 30, frames=6), SQUARE, {"size": "16"}, "gif", limits=small)
    # the first frame alone is within the limits
    assert run(media.animation(40, 30, frames=6), SQUARE, {"size": "16"}, "png", limits=small).frames == 1
    with pytest.raises(TooLarge):  # each frame is within max_pixels, 3 x 100x100 is over 25 000
        run(media.animation(100, 100, frames=3), SQUARE, {"size": "16"}, "gif",
            limits=P.Limits(max_pixels=10_000, max_frames=4, max_animation_pixels=25_000))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A real, valid 1-bit PNG of zeros: ~50 KB on disk, 400 megapixels decoded."""
    row = b"\0" * (1 + (width + 7) // 8)
    z = zlib.compressobj(9)
    data = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def _bomb_child(conn) -> None:
    buf = png_bomb()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        run(buf, SQUARE, {"size": "64"})
        conn.send(("served", 0))
    except TooLarge as exc:
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        conn.send((str(exc), after - before))


def test_decompression_bomb_refused_with_bounded_memory():
    bomb = png_bomb()
    assert len(bomb) < 100_000
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_bomb_child, args=(child,))
    proc.start()
    assert parent.poll(120)
    what, grown_kib = parent.recv()
    proc.join(30)
    assert "20000x20000" in what
    assert grown_kib < 64 * 1024  # decoding would need 400 MB; the header alone costs nothing


def test_unsupported_and_undecodable():
    svg = b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>"
    for buf in (b"", b"garbage" * 50, svg, b"%PDF-1.4\n" + b"0" * 100, b"P5 1 1 255\n\x00"):
        with pytest.raises(BadRequest):
            run(buf, SQUARE, {})


@pytest.mark.parametrize("bands, interpretation", [(3, "srgb"), (1, "b-w")])
@pytest.mark.parametrize("size, target", [((384, 384), (256, 256)), ((1000, 750), (200, 150)),
                                          ((301, 97), (300, 96)), ((640, 480), (64, 17)), ((77, 1203), (5, 80))])
def test_the_plain_resize_gives_thumbnail_image_s_pixels(bands, interpretation, size, target):
    """An upright frame without alpha skips thumbnail_image for libvips' resize: the same pixels."""
    w, h = size
    noise = pyvips.Image.gaussnoise(w, h, mean=128, sigma=50)
    im = noise.bandjoin([noise.rot180().resize(1, vscale=1)] * (bands - 1)) if bands > 1 else noise
    im = (im + pyvips.Image.xyz(w, h)[0] * (100 / w)).cast("uchar").copy_memory().copy(interpretation=interpretation)
    fast = P._resize_vips(im, *target)
    assert fast is not None
    slow = im.thumbnail_image(target[0], height=target[1], size="force")
    assert (fast.width, fast.height, fast.bands, fast.interpretation) == (slow.width, slow.height, slow.bands,
                                                                           slow.interpretation)
    assert fast.write_to_memory() == slow.write_to_memory()


def test_the_plain_resize_leaves_the_rest_to_thumbnail_image():
    rgb = media.gradient(64, 64).cast("uchar").copy(interpretation="srgb")
    assert P._resize_vips(rgb.bandjoin(255), 32, 32) is None  # alpha: premultiplied by thumbnail
    assert P._resize_vips(rgb.cast("ushort"), 32, 32) is None
    assert P._resize_vips(rgb.copy(interpretation="multiband"), 32, 32) is None
    assert P._resize_vips(rgb, 65, 32) is None  # an enlargement

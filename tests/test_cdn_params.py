"""Every image parameter value class over real HTTP, outputs decoded and checked."""

from __future__ import annotations

import pytest

from mediaproxy.media.spec import SIZES

from . import media
from .cdnutil import (
    assert_error,
    gif6,
    hash_,
    jpeg640,
    snowflake,
    square_src,
    stripes_tall,
    stripes_wide,
    webp6,
)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def near(px, colour, tol: int = 40) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(px[:3], colour, strict=True))


def avatar(server, data: bytes) -> str:
    u, h = snowflake(), hash_()
    server.put("cdn", f"avatars/{u}/{h}", data)
    return f"/avatars/{u}/{h}"


def banner(server, data: bytes) -> str:
    g, h = snowflake(), hash_()
    server.put("cdn", f"banners/{g}/{h}", data)
    return f"/banners/{g}/{h}"


def dims(r) -> tuple[int, int]:
    assert r.status_code == 200, r.text
    im = media.decode(r.content)
    return im.width, im.height


# ---------------------------------------------------------------- size


def test_every_size(server):
    path = avatar(server, square_src(512))
    for size in sorted(SIZES):
        want = min(size, 512)  # never enlarged past the source
        assert dims(server.get(f"{path}.webp?size={size}")) == (want, want), size


def test_large_size_really_resizes(server):
    path = avatar(server, media.jpeg(1100, 1100))
    assert dims(server.get(f"{path}.jpg?size=1024")) == (1024, 1024)


def test_default_size_is_128(server):
    path = avatar(server, jpeg640())
    r = server.get(f"{path}.png")
    assert dims(r) == (128, 128)
    assert server.get(f"{path}.png?size=128").headers["ETag"] == r.headers["ETag"]


@pytest.mark.parametrize("value", ["0", "15", "129", "5000", "-1", "abc", "", "128.0", "%C2%B2", "0x80", "1e2",
                                   "%20128", "99999999999999999999999"])
def test_bad_size_is_400(server, value):
    path = avatar(server, jpeg640())
    assert_error(server.get(f"{path}.png?size={value}"), 400)
    assert server.head(f"{path}.png?size={value}").status_code == 400


def test_size_on_banner_is_a_box(server):
    path = banner(server, jpeg640())
    assert dims(server.get(f"{path}.png?size=256")) == (256, 192)


# ---------------------------------------------------------------- width / height


def test_width_height(server):
    path = banner(server, jpeg640())
    assert dims(server.get(f"{path}.png?width=320")) == (320, 240)
    assert dims(server.get(f"{path}.png?height=120")) == (160, 120)
    assert dims(server.get(f"{path}.png?width=100&height=100")) == (100, 100)  # fit=cover
    assert dims(server.get(f"{path}.png?width=4096")) == (640, 480)  # never enlarged
    assert dims(server.get(f"{path}.png?height=4096")) == (640, 480)
    assert dims(server.get(f"{path}.png?width=1&height=1")) == (1, 1)
    assert dims(server.get(f"{path}.png?width=2000&height=2000")) == (480, 480)  # the box shrinks, not the image


@pytest.mark.parametrize("query", ["width=0", "width=4097", "height=-5", "height=abc", "width=", "width=1.5",
                                   "width=%C2%B2", "height=100000000"])
def test_bad_width_height_is_400(server, query):
    path = banner(server, jpeg640())
    assert_error(server.get(f"{path}.png?{query}"), 400)


# ---------------------------------------------------------------- format


@pytest.mark.parametrize("fmt, ctype, loader", [
    ("jpeg", "image/jpeg", "jpeg"), ("jpg", "image/jpeg", "jpeg"), ("png", "image/png", "png"),
    ("webp", "image/webp", "webp"), ("avif", "image/avif", "heif"), ("gif", "image/gif", "gif"),
])
def test_format(server, fmt, ctype, loader):
    path = avatar(server, jpeg640())
    for url in (f"{path}.png?format={fmt}&size=64", f"{path}.{fmt}?size=64"):
        r = server.get(url)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == ctype
        assert media.loader(r.content) == loader
        assert dims(r) == (64, 64)
    if loader == "heif":
        assert media.decode(r.content).get("heif-compression") == "av1"


def test_jpg_alias_gives_the_same_bytes(server):
    path = avatar(server, jpeg640())
    etags = {server.get(u).headers["ETag"] for u in (f"{path}.jpg", f"{path}.jpeg", f"{path}.png?format=jpg",
                                                      f"{path}.webp?format=jpeg")}
    assert len(etags) == 1


@pytest.mark.parametrize("url", ["{p}.png?format=bmp", "{p}.png?format=", "{p}.png?format=svg", "{p}.bmp",
                                 "{p}.svg", "{p}.json", "{p}.tiff", "{p}", "{p}."])
def test_bad_format_is_400(server, url):
    path = avatar(server, jpeg640())
    assert_error(server.get(url.format(p=path)), 400)


# ---------------------------------------------------------------- quality


def test_quality_numbers_and_presets(server):
    path = banner(server, jpeg640())

    def get(q: str, ext: str = "jpg"):
        r = server.get(f"{path}.{ext}?width=320{q}")
        assert r.status_code == 200, r.text
        return r

    q1, q50, q100 = (get(f"&quality={q}") for q in (1, 50, 100))
    assert len(q1.content) < len(q50.content) < len(q100.content)
    assert get("&quality=high").headers["ETag"] == get("&quality=80").headers["ETag"] == get("").headers["ETag"]
    assert get("&quality=low").headers["ETag"] == get("&quality=20").headers["ETag"]
    webp = get("", "webp").headers["ETag"]  # WebP default: `high` (80), as the platform's API reference says
    assert webp == get("&quality=80", "webp").headers["ETag"] == get("&quality=high", "webp").headers["ETag"]
    assert webp != get("&quality=85", "webp").headers["ETag"]
    assert get("&quality=lossless").headers["ETag"] == q100.headers["ETag"]  # JPEG: lossless is Q=100
    a20, a90 = get("&quality=20", "avif"), get("&quality=90", "avif")
    assert len(a20.content) < len(a90.content)


def test_lossless_webp_and_avif_are_pixel_equal(server):
    src = media.png(120, 80)
    path = banner(server, src)
    for ext in ("webp", "avif"):
        r = server.get(f"{path}.{ext}?quality=lossless")
        assert r.status_code == 200
        diff = (media.decode(r.content) - media.decode(src)).abs().max()
        assert diff == 0 if ext == "webp" else diff <= 2, (ext, diff)  # AVIF lossless is RGB↔YUV 4:4:4


@pytest.mark.parametrize("value", ["0", "101", "-1", "abc", "medium", "", "50.5", "1000"])
def test_bad_quality_is_400(server, value):
    path = avatar(server, jpeg640())
    assert_error(server.get(f"{path}.webp?quality={value}"), 400)


# ---------------------------------------------------------------- fit


def test_every_fit(server):
    path = banner(server, jpeg640())
    q = "width=200&height=200"
    assert dims(server.get(f"{path}.png?{q}&fit=cover")) == (200, 200)
    assert dims(server.get(f"{path}.png?{q}&fit=inside")) == (200, 150)
    assert dims(server.get(f"{path}.png?{q}&fit=outside")) == (267, 200)

    r = server.get(f"{path}.png?{q}&fit=contain")
    im = media.decode(r.content)
    assert (im.width, im.height) == (200, 200)
    assert im.bands == 4 and im.getpoint(100, 3)[3] == 0 and im.getpoint(100, 196)[3] == 0  # letterbox
    assert im.getpoint(100, 100)[3] == 255

    r = server.get(f"{path}.png?{q}&fit=fill")
    im = media.decode(r.content)
    assert (im.width, im.height) == (200, 200)
    # stretched, nothing cropped: the corners are the source's corners
    assert near(im.getpoint(0, 0), (0, 0, 64), 20) and near(im.getpoint(199, 199), (255, 255, 64), 20)

    r = server.get(f"{path}.png?{q}&fit=cover")
    im = media.decode(r.content)
    assert near(im.getpoint(0, 0), (40, 0, 64), 25)  # cropped at the sides: left edge is not R=0


def test_contain_on_jpeg_is_white(server):
    path = banner(server, jpeg640())
    im = media.decode(server.get(f"{path}.jpg?width=200&height=200&fit=contain").content)
    assert im.bands == 3 and min(im.getpoint(100, 3)) > 240


@pytest.mark.parametrize("value", ["crop", "", "scale-down"])
def test_bad_fit_is_400(server, value):
    assert_error(server.get(f"{banner(server, jpeg640())}.png?width=10&height=10&fit={value}"), 400)


# ---------------------------------------------------------------- position


@pytest.mark.parametrize("position, colour", [
    ("top", RED), ("center", GREEN), ("centre", GREEN), ("bottom", BLUE), ("left", GREEN), ("right", GREEN),
])
def test_position_on_tall_image(server, position, colour):
    path = avatar(server, stripes_tall())
    im = media.decode(server.get(f"{path}.png?size=100&position={position}").content)
    assert (im.width, im.height) == (100, 100)
    for y in (5, 50, 95):
        assert near(im.getpoint(50, y), colour), (position, y, im.getpoint(50, y))


@pytest.mark.parametrize("position, colour", [
    ("left", RED), ("center", GREEN), ("right", BLUE), ("top", GREEN), ("bottom", GREEN),
])
def test_position_on_wide_image(server, position, colour):
    path = avatar(server, stripes_wide())
    im = media.decode(server.get(f"{path}.png?size=100&position={position}").content)
    for x in (5, 50, 95):
        assert near(im.getpoint(x, 50), colour), (position, x)


def test_smart_positions(server):
    import pyvips

    flat = pyvips.Image.black(100, 200).new_from_image([128, 128, 128]).cast("uchar")
    noise = pyvips.Image.gaussnoise(100, 100, sigma=60, mean=128).cast("uchar")
    busy = flat.join(noise.bandjoin([noise, noise]), "vertical").copy(interpretation="srgb")
    path = avatar(server, busy.pngsave_buffer())
    ent = media.decode(server.get(f"{path}.png?size=100&position=entropy").content)
    cen = media.decode(server.get(f"{path}.png?size=100&position=center").content)
    assert ent.deviate() > 20 and cen.deviate() < 1

    grey = pyvips.Image.black(100, 200).new_from_image([120, 120, 120]).cast("uchar")
    red = pyvips.Image.black(100, 100).new_from_image([230, 30, 40]).cast("uchar")
    path = avatar(server, grey.join(red, "vertical").copy(interpretation="srgb").pngsave_buffer())
    att = media.decode(server.get(f"{path}.png?size=100&position=attention").content)
    assert near(att.getpoint(50, 95), (230, 30, 40), 5)


def test_position_with_contain(server):
    path = banner(server, stripes_wide())
    im = media.decode(server.get(f"{path}.png?width=300&height=300&fit=contain&position=top").content)
    assert (im.width, im.height) == (300, 300)
    assert im.getpoint(150, 5)[3] == 255 and im.getpoint(150, 295)[3] == 0


@pytest.mark.parametrize("value", ["middle", "north", ""])
def test_bad_position_is_400(server, value):
    assert_error(server.get(f"{avatar(server, jpeg640())}.png?position={value}"), 400)


# ---------------------------------------------------------------- animated


def test_animated_param(server):
    gif = avatar(server, gif6())
    webp = avatar(server, webp6())
    cases = [
        # GIF output: always animated; WebP output: only with animated=true; the others: the first frame
        (f"{gif}.gif?size=64", 6), (f"{gif}.gif?size=64&animated=true", 6), (f"{gif}.gif?size=64&animated=false", 6),
        (f"{gif}.webp?size=64", 1), (f"{gif}.webp?size=64&animated=false", 1), (f"{gif}.webp?animated=true", 6),
        (f"{gif}.png?animated=true", 1), (f"{gif}.jpg?animated=true", 1), (f"{gif}.avif?animated=true", 1),
        (f"{webp}.webp?size=64", 1), (f"{webp}.webp?size=64&animated=true", 6), (f"{webp}.gif?animated=true", 6),
        (f"{webp}.gif", 6), (f"{webp}.gif?animated=false", 6), (f"{webp}.png?animated=true", 1),
    ]
    for url, frames in cases:
        r = server.get(url)
        assert r.status_code == 200, (url, r.text)
        assert media.pages(r.content) == frames, url
        if frames > 1:
            im = media.decode(r.content, all_frames=True)
            assert list(im.get("delay")) == [70] * 6, url
            # every frame is different (a real animation, not one frame repeated)
            ph = im.get("page-height")
            firsts = {tuple(round(v) for v in im.getpoint(im.width // 2, ph * i + ph // 2)) for i in range(6)}
            assert len(firsts) == 6, url


@pytest.mark.parametrize("value", ["yes", "2", ""])
def test_bad_animated_is_400(server, value):
    assert_error(server.get(f"{avatar(server, gif6())}.gif?animated={value}"), 400)


# ---------------------------------------------------------------- other


def test_unknown_params_are_ignored(server):
    path = avatar(server, jpeg640())
    a = server.get(f"{path}.png?size=64")
    b = server.get(f"{path}.png?size=64&v=2&cache_buster=xyz&width=abc")  # width does not apply to avatars
    assert b.status_code == 200 and a.headers["ETag"] == b.headers["ETag"]


def test_exif_orientation_over_http(server):
    path = banner(server, media.oriented_jpeg(200, 100, 6))
    r = server.get(f"{path}.png")
    im = media.decode(r.content)
    assert (im.width, im.height) == (100, 200)
    assert near(im.getpoint(50, 20), RED, 60) and near(im.getpoint(50, 180), BLUE, 60)
    path = avatar(server, media.oriented_jpeg(200, 100, 6))
    im = media.decode(server.get(f"{path}.png?size=64&position=top").content)
    assert near(im.getpoint(32, 32), RED, 60)  # the upright top is red

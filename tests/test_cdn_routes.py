"""Every CDN image route of the contract over real HTTP, on both storage backends."""

from __future__ import annotations

import secrets

import orjson
import pytest

from . import media
from .cdnutil import assert_error, gif6, hash_, jpeg640, snowflake, webp6

IMMUTABLE = "public, max-age=31536000, immutable"


def routes():
    """(name, url path without extension, object key, square?) for one fresh object per route."""
    g, u, h, e = snowflake(), snowflake(), hash_(), snowflake()
    return [
        ("avatar", f"/avatars/{u}/{h}", f"avatars/{u}/{h}", "square"),
        ("icon", f"/icons/{g}/{h}", f"icons/{g}/{h}", "square"),
        ("banner", f"/banners/{g}/{h}", f"banners/{g}/{h}", "banner"),
        ("splash", f"/splashes/{g}/{h}", f"splashes/{g}/{h}", "banner"),
        ("embed-splash", f"/embed-splashes/{g}/{h}", f"embed-splashes/{g}/{h}", "banner"),
        ("emoji", f"/emojis/{e}", f"emojis/{e}", "box"),
        ("sticker", f"/stickers/{e}", f"stickers/{e}", "box"),
        ("member-avatar", f"/guilds/{g}/users/{u}/avatars/{h}", f"guilds/{g}/users/{u}/avatars/{h}", "square"),
        ("member-banner", f"/guilds/{g}/users/{u}/banners/{h}", f"guilds/{g}/users/{u}/banners/{h}", "banner"),
    ]


ROUTE_NAMES = [r[0] for r in routes()]
# 640x480 source with no parameters: squares are 128x128, boxes fit 128x128, banners keep their size
DEFAULT_DIMS = {"square": (128, 128), "box": (128, 96), "banner": (640, 480)}


def check_media_headers(r, ctype: str) -> None:
    assert r.headers["Content-Type"] == ctype
    assert r.headers["Cache-Control"] == IMMUTABLE
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["ETag"].startswith('"') and r.headers["ETag"].endswith('"')
    assert r.headers["Last-Modified"].endswith(" GMT")


@pytest.mark.parametrize("name", ROUTE_NAMES)
def test_route_get_and_head(server, name):
    _, path, key, kind = next(r for r in routes() if r[0] == name)
    server.put("cdn", key, jpeg640())
    for ext, ctype, loader in (("png", "image/png", "png"), ("webp", "image/webp", "webp"),
                               ("jpg", "image/jpeg", "jpeg")):
        r = server.get(f"{path}.{ext}")
        assert r.status_code == 200, r.text
        check_media_headers(r, ctype)
        assert int(r.headers["Content-Length"]) == len(r.content)
        im = media.decode(r.content)
        assert media.loader(r.content) == loader
        assert (im.width, im.height) == DEFAULT_DIMS[kind]
        h = server.head(f"{path}.{ext}")
        assert h.status_code == 200 and h.content == b""
        for header in ("Content-Type", "Content-Length", "ETag", "Last-Modified", "Cache-Control"):
            assert h.headers[header] == r.headers[header], header
    # pixel content: the gradient's centre stays the centre (R≈128, G≈128, B=64)
    r = server.get(f"{path}.png")
    im = media.decode(r.content)
    red, green, blue = im.getpoint(im.width // 2, im.height // 2)[:3]
    assert abs(red - 128) < 12 and abs(green - 128) < 12 and abs(blue - 64) < 6


@pytest.mark.parametrize("name", ROUTE_NAMES)
def test_route_missing_object_is_404(server, name):
    _, path, _, _ = next(r for r in routes() if r[0] == name)
    assert_error(server.get(f"{path}.png"), 404)
    h = server.head(f"{path}.png")
    assert h.status_code == 404 and h.content == b""


@pytest.mark.parametrize("name", ["avatar", "icon", "member-avatar", "banner", "member-banner"])
def test_animated_hash_strips_prefix_and_animates_by_format(server, name):
    _, path, key, kind = next(r for r in routes() if r[0] == name)
    server.put("cdn", key, gif6())
    head, _, stem = path.rpartition("/")
    apath = f"{head}/a_{stem}"
    r = server.get(f"{apath}.gif?size=64")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "image/gif"
    assert media.pages(r.content) == 6
    # `a_` turns nothing on: platform clients ask for a_….webp to show a still
    r = server.get(f"{apath}.webp?size=64")
    assert media.loader(r.content) == "webp" and media.pages(r.content) == 1
    r = server.get(f"{apath}.webp?size=64&animated=true")
    assert media.loader(r.content) == "webp" and media.pages(r.content) == 6
    im = media.decode(r.content, all_frames=True)
    assert list(im.get("delay")) == [70] * 6
    if kind == "square":
        assert (im.width, im.get("page-height")) == (64, 64)
    else:
        assert (im.width, im.get("page-height")) == (64, 48)  # a banner's size is a box
    # without the prefix, GIF output is still animated, even with animated=false
    r = server.get(f"{path}.gif?size=64")
    assert media.pages(r.content) == 6
    assert media.pages(server.get(f"{path}.gif?size=64&animated=false").content) == 6
    # a still format gives the first frame
    r = server.get(f"{apath}.png?size=64")
    assert media.pages(r.content) == 1 and media.loader(r.content) == "png"


def test_animated_webp_avatar(server):
    u, h = snowflake(), hash_()
    server.put("cdn", f"avatars/{u}/{h}", webp6())
    assert media.pages(server.get(f"/avatars/{u}/a_{h}.webp?size=64").content) == 1
    assert media.pages(server.get(f"/avatars/{u}/{h}.webp?size=64").content) == 1
    assert media.pages(server.get(f"/avatars/{u}/{h}.webp?size=64&animated=true").content) == 6
    assert media.pages(server.get(f"/avatars/{u}/a_{h}.webp?size=64&animated=true").content) == 6
    assert media.pages(server.get(f"/avatars/{u}/a_{h}.webp?size=64&animated=false").content) == 1
    assert media.pages(server.get(f"/avatars/{u}/a_{h}.gif?size=64").content) == 6
    assert media.pages(server.get(f"/avatars/{u}/{h}.gif?size=64&animated=false").content) == 6


@pytest.mark.parametrize("src", ["gif", "webp"])
def test_same_output_same_cache_entry(server, src):
    """`a_x.webp` and `x.webp` are one entry; so are `x.gif` with and without animated=false."""
    u, h = snowflake(), hash_()
    server.put("cdn", f"avatars/{u}/{h}", gif6() if src == "gif" else webp6())

    def get(path: str):
        r = server.get(path)
        assert r.status_code == 200, r.text
        return r

    groups = [
        [f"/avatars/{u}/a_{h}.webp?size=64", f"/avatars/{u}/{h}.webp?size=64",
         f"/avatars/{u}/{h}.webp?size=64&animated=false", f"/avatars/{u}/a_{h}.webp?size=64&animated=0"],
        [f"/avatars/{u}/a_{h}.webp?size=64&animated=true", f"/avatars/{u}/{h}.webp?size=64&animated=1"],
        [f"/avatars/{u}/{h}.gif?size=64", f"/avatars/{u}/{h}.gif?size=64&animated=false",
         f"/avatars/{u}/a_{h}.gif?size=64&animated=true", f"/avatars/{u}/a_{h}.gif?size=64"],
        [f"/avatars/{u}/{h}.png?size=64", f"/avatars/{u}/a_{h}.png?size=64&animated=true"],
    ]
    tags = []
    for group in groups:
        first = get(group[0])
        assert first.headers["X-Cache"] == "MISS", group[0]
        for path in group[1:]:
            r = get(path)
            assert r.headers["X-Cache"] == "HIT", path  # the first one's entry
            assert r.headers["ETag"] == first.headers["ETag"] and r.content == first.content, path
        tags.append(first.headers["ETag"])
    assert len(set(tags)) == len(groups)  # and different outputs are different entries


def test_sticker_kinds(server):
    static, gif, webp, lottie = (snowflake() for _ in range(4))
    server.put("cdn", f"stickers/{static}", media.png(320, 320, alpha=True))
    server.put("cdn", f"stickers/{gif}", gif6())
    server.put("cdn", f"stickers/{webp}", webp6())
    doc = orjson.dumps({"v": "5.7.4", "fr": 60, "ip": 0, "op": 60, "w": 320, "h": 320, "layers": []})
    server.put("cdn", f"stickers/{lottie}", doc)

    r = server.get(f"/stickers/{static}.png?size=160")
    im = media.decode(r.content)
    assert (im.width, im.height, im.bands) == (160, 160, 4)  # alpha kept
    r = server.get(f"/stickers/{gif}.gif?size=80")
    assert media.pages(r.content) == 6 and media.decode(r.content).width == 80
    r = server.get(f"/stickers/{gif}.webp?size=80")
    assert media.pages(r.content) == 1  # WebP output animates only with animated=true
    r = server.get(f"/stickers/{gif}.webp?size=80&animated=true")
    assert media.pages(r.content) == 6
    r = server.get(f"/stickers/{webp}.webp?size=80")
    assert media.pages(r.content) == 1
    r = server.get(f"/stickers/{webp}.webp?size=80&animated=true")
    assert media.pages(r.content) == 6

    r = server.get(f"/stickers/{lottie}.json")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.content == doc
    assert r.headers["Cache-Control"] == IMMUTABLE and r.headers["Accept-Ranges"] == "bytes"
    h = server.head(f"/stickers/{lottie}.json")
    assert h.status_code == 200 and h.content == b"" and h.headers["Content-Length"] == str(len(doc))
    r = server.get(f"/stickers/{lottie}.json", headers={"Range": "bytes=0-4"})
    assert r.status_code == 206 and r.content == doc[:5]
    r = server.get(f"/stickers/{lottie}.json", headers={"If-None-Match": r.headers["ETag"]})
    assert r.status_code == 304
    assert_error(server.get(f"/stickers/{snowflake()}.json"), 404)
    # .json is only the stickers' Lottie representation
    assert_error(server.get(f"/emojis/{lottie}.json"), 400)
    # ... and only when the stored object is JSON: an image sticker has none (as if missing)
    for image in (static, gif, webp):
        assert_error(server.get(f"/stickers/{image}.json"), 404)
        h = server.head(f"/stickers/{image}.json")
        assert h.status_code == 404 and h.content == b""


@pytest.mark.parametrize("doc", [b'{"v":"5.7.4","layers":[]}', b'\xef\xbb\xbf \r\n\t{"v":"5.7.4"}', b"[]"])
@pytest.mark.parametrize("stored_type", [None, "application/json", "application/octet-stream", "image/png"])
def test_lottie_is_served_when_the_bytes_are_json(server, doc, stored_type):
    s = snowflake()
    server.put("cdn", f"stickers/{s}", doc, stored_type)
    r = server.get(f"/stickers/{s}.json")
    assert r.status_code == 200 and r.content == doc
    assert r.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("data", [media.png(8, 8), b"", b"   ", b"GIF89a{", b"<html>{}</html>", b"\x00{}"])
def test_non_json_sticker_has_no_lottie(server, data):
    s = snowflake()
    server.put("cdn", f"stickers/{s}", data, "application/json")  # whatever the store says
    assert_error(server.get(f"/stickers/{s}.json"), 404)


def test_emoji_gif_stays_animated_and_boxed(server):
    e = snowflake()
    server.put("cdn", f"emojis/{e}", gif6())
    r = server.get(f"/emojis/{e}.gif")
    assert r.status_code == 200 and media.pages(r.content) == 6
    im = media.decode(r.content)
    assert (im.width, im.height) == (120, 90)  # default 128 box, never enlarged
    r = server.get(f"/emojis/{e}.webp?size=48&animated=true")
    im = media.decode(r.content)
    assert (im.width, im.height) == (48, 36) and media.pages(r.content) == 6
    assert media.pages(server.get(f"/emojis/{e}.webp?size=48").content) == 1
    r = server.get(f"/emojis/{e}.png?size=48")
    assert media.pages(r.content) == 1


def theme_id() -> str:
    """The platform's theme ids: 16 lowercase hex digits."""
    return secrets.token_hex(8)


def test_theme(server):
    t = theme_id()
    css = b"body { color: #fff; }\n/* \xe2\x9c\x93 */\n" * 50
    server.put("cdn", f"themes/{t}.css", css)
    r = server.get(f"/themes/{t}.css")
    assert r.status_code == 200 and r.content == css
    assert r.headers["Content-Type"] == "text/css; charset=utf-8"
    assert r.headers["Cache-Control"] == IMMUTABLE
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    h = server.head(f"/themes/{t}.css")
    assert h.status_code == 200 and h.content == b"" and h.headers["Content-Length"] == str(len(css))
    assert h.headers["ETag"] == r.headers["ETag"]
    r2 = server.get(f"/themes/{t}.css", headers={"Range": "bytes=10-19"})
    assert r2.status_code == 206 and r2.content == css[10:20]
    assert r2.headers["Content-Range"] == f"bytes 10-19/{len(css)}"
    assert server.get(f"/themes/{t}.css", headers={"If-None-Match": r.headers["ETag"]}).status_code == 304
    assert_error(server.get(f"/themes/{t}.css", headers={"Range": f"bytes={len(css)}-"}), 416)
    assert_error(server.get(f"/themes/{theme_id()}.css"), 404)


@pytest.mark.parametrize("bad", ["abc", "1" * 21, "123456789012345678", "0123456789ABCDEF", "0123456789abcde",
                                 "0123456789abcdef0", "0123456789abcdeg", "０123456789abcdef", "0123456789abcde%20",
                                 "%00123456789abcdef", "0123456789abcdef.css"])
def test_bad_theme_ids_are_400(server, bad):
    assert_error(server.get(f"/themes/{bad}.css"), 400)


def test_bad_theme_id_is_400_before_any_storage_lookup(make_server):
    """With storage unreachable, a bad id is still 400 (no lookup); a good one is the storage error."""
    from .server import free_port

    srv = make_server("s3", env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
                                 "MEDIAPROXY_S3_CONNECT_TIMEOUT": "1"})
    assert_error(srv.get("/themes/123456789012345678.css"), 400)
    assert srv.get(f"/themes/{theme_id()}.css").status_code == 502


def test_empty_theme(server):
    t = theme_id()
    server.put("cdn", f"themes/{t}.css", b"")
    r = server.get(f"/themes/{t}.css")
    assert r.status_code == 200 and r.content == b"" and r.headers["Content-Length"] == "0"

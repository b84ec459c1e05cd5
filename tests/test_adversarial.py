"""Hostile inputs: broken media, bombs, traversal, odd query strings. Never a 500."""

from __future__ import annotations

import struct
import zlib

import pytest

from . import media
from .cdnutil import assert_error, gif6, hash_, jpeg640, raw_request, snowflake
from .test_pipeline import png_bomb


def put_avatar(server, data: bytes) -> str:
    u, h = snowflake(), hash_()
    server.put("cdn", f"avatars/{u}/{h}", data)
    return f"/avatars/{u}/{h}"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(w: int, h: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + _chunk(b"IEND", b"")


def png_few_rows(w: int, h: int) -> bytes:
    """IHDR claims w×h; the IDAT holds a few rows only."""
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(b"\0" * (1 + 3 * w)) for _ in range(4)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def handmade_gif(frames: int, w: int = 1, h: int = 1) -> bytes:
    """A GIF of ``frames`` frames of w×h whose single coded pixel alternates black/white."""
    out = [b"GIF89a", struct.pack("<HHBBB", w, h, 0x80, 0, 0), b"\0\0\0\xff\xff\xff",
           b"\x21\xff\x0bNETSCAPE2.0\x03\x01\0\0\0"]
    for i in range(frames):
        out.append(b"\x21\xf9\x04\x00" + struct.pack("<H", 5) + b"\0\0")  # 50 ms
        out.append(b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0))
        out.append(b"\x02\x02" + (b"\x4c" if i % 2 else b"\x44") + b"\x01\x00")  # LZW: clear, pixel, end
    out.append(b"\x3b")
    return b"".join(out)


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.95])
@pytest.mark.parametrize("kind", ["jpeg", "png", "webp"])
def test_truncated_stills_are_400(server, kind, fraction):
    full = {"jpeg": jpeg640, "png": lambda: media.png(300, 200), "webp": lambda: media.webp(300, 200)}[kind]()
    path = put_avatar(server, full[: int(len(full) * fraction)])
    for ext in ("png", "webp", "jpg"):
        assert_error(server.get(f"{path}.{ext}?size=64"), 400)


def test_truncated_gif(server):
    """Cut in its header: 400. Cut mid-animation: the complete frames, as browsers show them."""
    data = gif6()
    assert_error(server.get(f"{put_avatar(server, data[:40])}.gif"), 400)
    r = server.get(f"{put_avatar(server, data[: len(data) // 2])}.gif?size=64")
    assert r.status_code == 200
    assert 1 <= media.pages(r.content) < 6


@pytest.mark.parametrize("data", [b"", b"\0", b"garbage" * 100, b"\xff\xd8\xff" + b"\0" * 50, b"GIF89a",
                                  b"RIFF\0\0\0\0WEBPVP8 ", b"\x89PNG\r\n\x1a\n", png_header_only(100, 100)],
                         ids=["empty", "nul", "garbage", "jpeg-magic", "gif-magic", "webp-magic", "png-magic",
                              "png-no-pixels"])
def test_garbage_is_400(server, data):
    assert_error(server.get(f"{put_avatar(server, data)}.png"), 400)


def test_huge_dimensions_in_tiny_files_are_413(server):
    bomb = png_bomb()
    assert len(bomb) < 100_000
    for data in (bomb, png_few_rows(60000, 60000), handmade_gif(2, 65535, 65535)):
        path = put_avatar(server, data)
        assert_error(server.get(f"{path}.png"), 413)
        assert_error(server.get(f"{path}.webp?animated=true"), 413)


def test_absurd_frame_count(server):
    data = handmade_gif(5000)  # over the default 1000-frame limit, in 115 KB
    assert media.pages(data) == 5000 and len(data) < 200_000
    path = put_avatar(server, data)
    assert_error(server.get(f"{path}.gif"), 413)
    r = server.get(f"{path}.png")  # a still needs the first frame only
    assert r.status_code == 200 and media.pages(r.content) == 1


@pytest.mark.parametrize("path", [
    "/avatars/../../etc/passwd.png",
    "/avatars/1/..%2F..%2Fsecret.png",
    "/avatars/1/%2e%2e.png",
    "/avatars/..%2F..%2F/x.png",
    "/avatars/1/a%00b.png",
    "/avatars/1%00/abc.png",
    "/emojis/..%2Fsecret.png",
    "/emojis/1%2F..%2F..%2Fsecret.png",
    "/themes/..%2Fsecret.css",
    "/themes/1%00.css",
    "/stickers/%2e%2e%2fsecret.json",
    "/guilds/1/users/..%2F..%2F/avatars/x.png",
    "/avatars/1/" + "a" * 5000 + ".png",
    "/avatars/" + "1" * 3000 + "/abc.png",
    "/avatars/1/a%E2%80%AEb.png",
    "/avatars/1/%C0%AE%C0%AE.png",
    "/avatars/%EF%BC%91/abc.png",
])
def test_path_traversal_and_odd_segments(server, path):
    # a secret one level up from the bucket (local backend) and inside it: never served
    server.put("cdn", "secret", b"top secret")
    for method in ("GET", "HEAD"):
        status, headers, body = raw_request(server.base, method, path)
        assert status in (400, 404, 414), (path, status)
        assert b"top secret" not in body
        if status in (400, 404):
            assert headers.get("cache-control") == "no-store", path


def test_repeated_params_last_wins(server):
    path = put_avatar(server, jpeg640())
    r = server.get(f"{path}.png?size=64&size=32")
    assert r.status_code == 200 and media.decode(r.content).width == 32
    assert_error(server.get(f"{path}.png?size=64&size=33"), 400)
    assert_error(server.get(f"{path}.png?format=png&format=bmp"), 400)
    r = server.get(f"{path}.png?size=16,32")
    assert_error(r, 400)


def test_long_query_strings(server):
    path = put_avatar(server, jpeg640())
    r = server.get(f"{path}.png?size=64&" + "&".join(f"x{i}=y" for i in range(300)))
    assert r.status_code == 200 and media.decode(r.content).width == 64
    r = server.get(f"{path}.png?size=64&pad=" + "a" * 3000)
    assert r.status_code == 200
    r = server.get(f"{path}.png?size=" + "1" * 3000)
    assert_error(r, 400)
    status, _, _ = raw_request(server.base, "GET", f"{path}.png?pad=" + "a" * 20000)
    assert status in (400, 414)  # the server's request-line limit, not a crash


@pytest.mark.parametrize("query", ["size=%FF", "format=%00png", "quality=%C2%B2", "fit=%E2%80%AE",
                                   "position=top%00", "animated=tr%0Aue", "width=%EF%BC%91"])
def test_odd_bytes_in_params_are_400(server, query):
    path = put_avatar(server, jpeg640())
    if not query.startswith("width"):  # avatars take `size`, not width
        assert_error(server.get(f"{path}.png?{query}"), 400)
    assert_error(server.get(f"/banners/1/{hash_()}.png?{query}"), 400)


def test_bad_headers_do_not_break_anything(server):
    path = put_avatar(server, jpeg640())
    for headers in ({"Range": "bytes=" + "9" * 400 + "-"}, {"Range": "bytes=-" + "9" * 400},
                    {"If-Modified-Since": "Mon, 99 Foo 99999 99:99:99 GMT"}, {"If-None-Match": "\"" * 300},
                    {"If-Range": "garbage"}, {"Range": "bytes=\u00b2-"}):
        status, _, _ = raw_request(server.base, "GET", f"{path}.png", headers)
        assert status in (200, 206, 416), headers


@pytest.mark.parametrize("fit", ["inside", "outside"])
def test_square_routes_answer_a_square_for_every_fit(server, fit):
    key = put_avatar(server, media.jpeg(200, 100))
    r = server.get(f"{key}.png?size=64&fit={fit}")
    assert r.status_code == 200, r.text
    im = media.decode(r.content)
    assert (im.width, im.height) == (64, 64)


@pytest.mark.parametrize(("ext", "side"), [("webp", 16383), ("avif", 16384), ("jpg", 65500)])
def test_output_wider_than_the_format_allows_is_400_with_a_reason(server, ext, side):
    guild, h = snowflake(), hash_()
    wide = media.gradient(side + 1, 2).pngsave_buffer()  # a valid, small source: 2 rows
    server.put("cdn", f"banners/{guild}/{h}", wide)
    r = server.get(f"/banners/{guild}/{h}.{ext}")
    assert_error(r, 400)
    assert f"at most {side} pixels" in r.text
    r = server.get(f"/banners/{guild}/{h}.{ext}?width=4096")
    assert r.status_code == 200 and media.decode(r.content).width == 4096

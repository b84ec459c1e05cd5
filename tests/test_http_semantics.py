"""Conditional requests, ranges, cache hits and every error status of the image routes."""

from __future__ import annotations

import threading
from email.utils import formatdate, parsedate_to_datetime

import pytest
import xxhash

from mediaproxy.context import Context
from mediaproxy.errors import Overloaded
from mediaproxy.settings import Settings

from . import media
from .cdnutil import assert_error, gif6, hash_, jpeg640, noise_png, snowflake
from .server import free_port
from .test_storage import BlackHole


def put_avatar(server, data: bytes) -> str:
    u, h = snowflake(), hash_()
    server.put("cdn", f"avatars/{u}/{h}", data)
    return f"/avatars/{u}/{h}"


def put_banner(server, data: bytes) -> str:
    g, h = snowflake(), hash_()
    server.put("cdn", f"banners/{g}/{h}", data)
    return f"/banners/{g}/{h}"


def test_etag_is_strong_and_from_the_bytes(server):
    path = put_avatar(server, jpeg640())
    r = server.get(f"{path}.png?size=64")
    assert r.headers["ETag"] == '"' + xxhash.xxh3_128_hexdigest(r.content) + '"'
    other = server.get(f"{path}.png?size=32")
    assert other.headers["ETag"] != r.headers["ETag"]


def test_last_modified_is_the_sources(server):
    path = put_avatar(server, jpeg640())
    lm = parsedate_to_datetime(server.get(f"{path}.png").headers["Last-Modified"])
    assert lm == parsedate_to_datetime(server.get(f"{path}.webp?size=32").headers["Last-Modified"])


def test_miss_then_hit_same_bytes(server):
    path = put_banner(server, noise_png())  # the result is a few hundred KB: a file in the cache
    first = server.get(f"{path}.png")
    second = server.get(f"{path}.png")
    assert first.headers["X-Cache"] == "MISS" and second.headers["X-Cache"] == "HIT"
    assert len(first.content) > 100_000 and first.content == second.content
    assert first.headers["ETag"] == second.headers["ETag"]
    assert second.headers["Content-Length"] == str(len(first.content))
    h = server.head(f"{path}.png")
    assert h.status_code == 200 and h.content == b"" and h.headers["Content-Length"] == str(len(first.content))


@pytest.mark.parametrize("big", [False, True], ids=["memory", "file"])
def test_conditional_requests(server, big):
    path = put_banner(server, noise_png() if big else jpeg640())
    url = f"{path}.png"
    for _ in range(2):  # a miss, then a hit
        r = server.get(url)
        etag, lm = r.headers["ETag"], r.headers["Last-Modified"]
        ts = parsedate_to_datetime(lm).timestamp()
        for headers, status in [
            ({"If-None-Match": etag}, 304),
            ({"If-None-Match": f'"nope", {etag}'}, 304),
            ({"If-None-Match": "W/" + etag}, 304),  # weak comparison
            ({"If-None-Match": "*"}, 304),
            ({"If-None-Match": '"nope"'}, 200),
            ({"If-Modified-Since": lm}, 304),
            ({"If-Modified-Since": formatdate(ts + 3600, usegmt=True)}, 304),
            ({"If-Modified-Since": formatdate(ts - 3600, usegmt=True)}, 200),
            ({"If-Modified-Since": "yesterday-ish"}, 200),
            ({"If-None-Match": '"nope"', "If-Modified-Since": lm}, 200),  # If-None-Match wins
        ]:
            c = server.get(url, headers=headers)
            assert c.status_code == status, headers
            if status == 304:
                assert c.content == b"" and c.headers["ETag"] == etag
                assert c.headers["Cache-Control"] == "public, max-age=31536000, immutable"
                assert server.head(url, headers=headers).status_code == 304
            else:
                assert c.content == r.content


@pytest.mark.parametrize("big", [False, True], ids=["memory", "file"])
def test_ranges(server, big):
    path = put_banner(server, noise_png() if big else jpeg640())
    url = f"{path}.png"
    full = server.get(url).content
    n = len(full)
    for _ in range(2):  # a miss, then a hit
        for rng, start, end in [("bytes=0-9", 0, 9), ("bytes=-10", n - 10, n - 1), ("bytes=100-", 100, n - 1),
                                (f"bytes=5-{n + 1000}", 5, n - 1), (f"bytes={n - 1}-", n - 1, n - 1),
                                (f"bytes=-{n + 5}", 0, n - 1)]:
            r = server.get(url, headers={"Range": rng})
            assert r.status_code == 206, rng
            assert r.content == full[start : end + 1], rng
            assert r.headers["Content-Range"] == f"bytes {start}-{end}/{n}"
            assert r.headers["Content-Length"] == str(end - start + 1)
            h = server.head(url, headers={"Range": rng})
            assert h.status_code == 206 and h.content == b""
        for rng in (f"bytes={n}-", f"bytes={n + 10}-{n + 20}", "bytes=-0"):
            r = server.get(url, headers={"Range": rng})
            assert_error(r, 416)
            assert r.headers["Content-Range"] == f"bytes */{n}"
        # ranges we do not honour: the whole body
        for rng in ("bytes=0-1,5-6", "items=0-5", "bytes=abc", "bytes=9-3", "bytes=%C2%B2-"):
            r = server.get(url, headers={"Range": rng})
            assert r.status_code == 200 and r.content == full, rng
        etag = server.get(url).headers["ETag"]
        assert server.get(url, headers={"Range": "bytes=0-3", "If-Range": etag}).status_code == 206
        r = server.get(url, headers={"Range": "bytes=0-3", "If-Range": '"other"'})
        assert r.status_code == 200 and r.content == full


# ---------------------------------------------------------------- error statuses


def test_400_bad_path_segments(server):
    good = put_avatar(server, jpeg640())
    u = good.split("/")[2]
    for url in [f"/avatars/abc/{hash_()}.png", f"/avatars/{'1' * 21}/{hash_()}.png", f"/avatars/-1/{hash_()}.png",
                f"/avatars/{u}/{'a' * 101}.png", f"/avatars/{u}/bad-hash.png", f"/avatars/{u}/bad%20hash.png",
                f"/avatars/{u}/.png", f"/avatars/{u}/{hash_()}", "/emojis/abc.png", f"/emojis/{'9' * 21}.png",
                "/stickers/12ab.png", f"/icons/1.5/{hash_()}.png", f"/guilds/x/users/1/avatars/{hash_()}.png",
                f"/guilds/1/users/x/banners/{hash_()}.png", f"/banners/{u}/{hash_()}.exe"]:
        assert_error(server.get(url), 400)
    # at the limits: accepted (and then simply missing)
    assert_error(server.get(f"/avatars/{'1' * 20}/{'a' * 100}.png"), 404)


def test_400_undecodable_media(server):
    for data in (b"", b"this is not an image" * 10, jpeg640()[: len(jpeg640()) // 2], media.png(50, 50)[:200],
                 b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>"):
        path = put_avatar(server, data)
        assert_error(server.get(f"{path}.png"), 400)
        assert server.head(f"{path}.webp").status_code == 400
        assert_error(server.get(f"{path}.png"), 400)  # errors are not cached as results


@pytest.fixture(scope="session", params=["local", "s3"])
def limited(request, make_server):
    return make_server(request.param, env={
        "MEDIAPROXY_MAX_SOURCE_BYTES": "20000",
        "MEDIAPROXY_MAX_PIXELS": "40000",
        "MEDIAPROXY_MAX_FRAMES": "4",
        "MEDIAPROXY_MAX_ANIMATION_PIXELS": "10000",
    })


def test_413_limits(limited):
    noisy = noise_png(120, 120)
    assert len(noisy) > 20000
    assert_error(limited.get(f"{put_banner(limited, noisy)}.png"), 413)
    many_pixels = media.jpeg(300, 300, q=30)
    assert len(many_pixels) < 20000
    assert_error(limited.get(f"{put_avatar(limited, many_pixels)}.png?size=16"), 413)
    assert len(gif6()) < 20000
    frames = put_avatar(limited, gif6())
    assert_error(limited.get(f"{frames}.gif?size=16"), 413)  # 6 frames > 4
    assert limited.get(f"{frames}.webp?size=16").status_code == 200  # one frame is fine
    assert limited.get(f"{frames}.png?size=16").status_code == 200
    anim_px = put_avatar(limited, media.animation(80, 60, frames=3))  # 3 x 4800 > 10000
    assert_error(limited.get(f"{anim_px}.webp?size=16&animated=true"), 413)
    ok = put_avatar(limited, media.animation(40, 30, frames=3))  # 3 x 1200
    r = limited.get(f"{ok}.gif?size=16")
    assert r.status_code == 200 and media.pages(r.content) == 3


def test_502_storage_unreachable(make_server):
    srv = make_server("s3", env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
                                 "MEDIAPROXY_S3_CONNECT_TIMEOUT": "1"})
    assert_error(srv.get(f"/avatars/1/{hash_()}.png"), 502)
    assert_error(srv.get("/themes/0123456789abcdef.css"), 502)
    assert_error(srv.get("/stickers/1.json"), 502)
    assert srv.head(f"/icons/1/{hash_()}.png").status_code == 502


def test_504_storage_timeout(make_server):
    hole = BlackHole()
    try:
        srv = make_server("s3", env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{hole.port}",
                                     "MEDIAPROXY_S3_READ_TIMEOUT": "0.3"})
        assert_error(srv.get(f"/avatars/1/{hash_()}.png"), 504)
        assert_error(srv.get("/themes/0123456789abcdef.css"), 504)
    finally:
        hole.close()


def test_503_when_every_transform_slot_is_taken(tmp_path):
    settings = Settings.from_env({"MEDIAPROXY_SECRET_KEY": "x", "MEDIAPROXY_STORAGE": str(tmp_path),
                                  "MEDIAPROXY_CACHE_DIR": "", "MEDIAPROXY_MAX_CONCURRENT_TRANSFORMS": "1",
                                  "MEDIAPROXY_TRANSFORM_WAIT": "0"})
    ctx = Context.build(settings)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with ctx.transform_slot():
            holding.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    holding.wait(30)
    try:
        with pytest.raises(Overloaded) as info, ctx.transform_slot():
            pass
        assert info.value.status == 503 and info.value.headers["Retry-After"] == "1"
    finally:
        release.set()
        t.join()
    with ctx.transform_slot():  # free again
        pass


def test_errors_on_head_have_no_body(server):
    h = server.head(f"/avatars/abc/{hash_()}.png")
    assert h.status_code == 400 and h.content == b"" and h.headers["Cache-Control"] == "no-store"

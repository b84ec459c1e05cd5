"""The static-assets host (MEDIAPROXY_MODE=static) over real HTTP, on both storage backends."""

from __future__ import annotations

import os
import secrets
from urllib.parse import quote

import pytest

from mediaproxy import app as app_module
from mediaproxy import avatars, demo
from mediaproxy.errors import ConfigError
from mediaproxy.settings import MODES, Settings
from mediaproxy.storage.local import LocalStorage

from . import media
from .cdnutil import assert_error, gif6, raw_request

IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.fixture(scope="session", params=["local", "s3"])
def static_server(request, make_server):
    return make_server(request.param, env={"MEDIAPROXY_MODE": "static"})


def put(server, key: str, data: bytes, content_type: str | None = None) -> str:
    server.put("static", key, data, content_type)
    return "/" + quote(key)


def fresh(suffix: str = "") -> str:
    return f"t/{secrets.token_hex(6)}{suffix}"


# ---------------------------------------------------------------- default avatars


@pytest.fixture(scope="module")
def drawn() -> list[bytes]:
    return [avatars.png(i) for i in range(avatars.COUNT)]


def test_the_six_default_avatars(static_server, drawn):
    for i, data in enumerate(drawn):
        static_server.put("static", f"avatars/{i}.png", data, "image/png")
    colours = set()
    for i in range(avatars.COUNT):
        r = static_server.get(f"/avatars/{i}.png")
        assert r.status_code == 200 and r.content == drawn[i]
        assert r.headers["Content-Type"] == "image/png" and r.headers["Cache-Control"] == IMMUTABLE
        im = media.decode(r.content)
        assert (im.width, im.height, im.bands) == (512, 512, 4)
        assert im.getpoint(2, 2)[3] == 0 and im.getpoint(509, 509)[3] == 0  # transparent outside the disc
        assert im.getpoint(256, 40)[3] == 255  # opaque disc
        colours.add(tuple(round(v) for v in im.getpoint(256, 40)[:3]))
        # crisp at 512 (a vector drawing: hard edges, not an upscaled thumbnail) ...
        edge = [im.getpoint(t, t)[3] for t in range(66, 86)]  # across the disc's rim, on the diagonal
        assert edge[0] == 0 and edge[-1] == 255 and sum(0 < a < 255 for a in edge) <= 3
        # ... and still itself at 16 px: the disc's colour, a white face in the middle
        r16 = static_server.get(f"/avatars/{i}.png?size=16")
        small = media.decode(r16.content)
        assert (small.width, small.height, small.bands) == (16, 16, 4)
        assert small.getpoint(0, 0)[3] < 64 and small.getpoint(8, 2)[3] > 200
    assert len(colours) == avatars.COUNT  # six different colours


def test_demo_seeds_the_avatars_into_the_static_bucket(tmp_path):
    storage = LocalStorage(tmp_path)
    examples = demo.seed_static(storage, "static")
    assert sorted(p.name for p in (tmp_path / "static" / "avatars").iterdir()) == [f"{i}.png" for i in range(6)]
    assert (tmp_path / "static" / "avatars" / "3.png").read_bytes() == avatars.png(3)
    path = examples[0][1]
    assert path == f"/avatars/{int(demo.USER) % 6}.png"


def test_avatars_differ_in_shape_not_only_colour(drawn):
    # The white face (eyes and mouth) differs between every two avatars: colour-blind users can tell them apart.
    faces = []
    for data in drawn:
        im = media.decode(data)
        white = (im[0] > 240) & (im[1] > 240) & (im[2] > 240) & (im[3] > 240)
        faces.append(bytes(white.thumbnail_image(32).write_to_memory()))
    assert len(set(faces)) == avatars.COUNT


# ---------------------------------------------------------------- the attachment rules


def test_stream_range_conditional_and_headers(static_server):
    body = os.urandom(100_000)
    path = put(static_server, fresh(".bin"), body, "application/octet-stream")
    r = static_server.get(path)
    assert r.status_code == 200 and r.content == body
    for name, value in (("Cache-Control", IMMUTABLE), ("Accept-Ranges", "bytes"), ("Access-Control-Allow-Origin", "*"),
                        ("X-Content-Type-Options", "nosniff")):
        assert r.headers[name] == value
    assert r.headers["ETag"].startswith('"') and r.headers["Last-Modified"]
    h = static_server.head(path)
    assert h.status_code == 200 and h.content == b"" and h.headers["Content-Length"] == str(len(body))
    assert h.headers["ETag"] == r.headers["ETag"]
    part = static_server.get(path, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == body[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(body)}"
    assert static_server.get(path, headers={"If-None-Match": r.headers["ETag"]}).status_code == 304
    assert static_server.get(path, headers={"If-Modified-Since": r.headers["Last-Modified"]}).status_code == 304
    assert_error(static_server.get(path, headers={"Range": f"bytes={len(body)}-"}), 416)


def test_static_files_keep_their_types(static_server):
    css = b"body{color:#fff}\n" * 20
    path = put(static_server, fresh(".css"), css, "text/css")
    r = static_server.get(path + "?width=100&format=png")  # not an image: parameters change nothing
    assert r.status_code == 200 and r.content == css and r.headers["Content-Type"].startswith("text/css")
    html = put(static_server, fresh(".html"), b"<html><script>alert(1)</script></html>", "text/html")
    r = static_server.get(html)  # a type a browser would run: a sandboxed download, as for attachments
    assert r.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert r.headers["Content-Disposition"].startswith("attachment")


@pytest.mark.parametrize("src, ctype", [("png", "image/png"), ("jpeg", "image/jpeg"), ("webp", "image/webp"),
                                        ("gif", "image/gif")])
def test_images_take_the_image_parameters(static_server, src, ctype):
    data = {"png": media.png(400, 300, alpha=True), "jpeg": media.jpeg(400, 300), "webp": media.webp(400, 300),
            "gif": gif6()}[src]
    w, h = media.decode(data).width, media.decode(data).height
    path = put(static_server, fresh(f".{src}"), data, ctype)
    assert static_server.get(path).content == data  # no parameter: the stored bytes
    r = static_server.get(path + "?size=64")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == ctype and r.headers["X-Cache"] == "MISS"
    im = media.decode(r.content)
    assert max(im.width, im.height) == 64  # a 64x64 box, aspect kept
    again = static_server.get(path + "?size=64")
    assert again.headers["X-Cache"] == "HIT" and again.content == r.content
    r = static_server.get(path + "?width=100&format=webp&quality=low")
    assert r.headers["Content-Type"] == "image/webp"
    assert media.decode(r.content).width == 100
    r = static_server.get(path + f"?height={h // 2}&format=jpeg")
    im = media.decode(r.content)
    assert media.loader(r.content) == "jpeg" and (im.width, im.height) == (round(w / 2), h // 2)
    assert_error(static_server.get(path + "?size=17"), 400)
    assert_error(static_server.get(path + "?format=bmp"), 400)


def test_animation_only_when_asked(static_server):
    path = put(static_server, fresh(".gif"), gif6(), "image/gif")
    assert media.pages(static_server.get(path + "?size=64").content) == 1
    assert media.pages(static_server.get(path + "?size=64&animated=true").content) == 6
    assert static_server.get(path + "?animated=false").content == gif6()  # asks for nothing


def test_keys_are_any_path_under_the_bucket(static_server):
    for key in ("robots.txt", "a/b/c/d/e.txt", "fonts/Inter Var.woff2", "i18n/日本語.json", "x..y/z...txt",
                "no-extension", ".well-known/security.txt"):
        data = key.encode() * 3
        path = put(static_server, key, data)
        r = static_server.get(path)
        assert r.status_code == 200 and r.content == data, key
    assert_error(static_server.get("/" + fresh(".txt")), 404)
    assert_error(static_server.get("/avatars/6.png"), 404)


@pytest.mark.parametrize("path", ["/a/../b.txt", "/../static/a.txt", "/..", "/a/..", "/a//b.txt", "//a.txt",
                                  "/a/", "/a/./b.txt", "/.", "/", "/a%00b", "/a%0Ab", "/a%1Fb", "/a%7Fb", "/a%C2%85b",
                                  "/%FF.txt", "/a%2F..%2Fb", "/" + "k" * 1025])
def test_bad_keys_are_400(static_server, path):
    status, headers, body = raw_request(static_server.base, "GET", path)
    assert status == 400, (path, status, body[:100])
    assert headers["cache-control"] == "no-store" and headers["content-type"].startswith("text/plain")


def test_longest_key_is_accepted(static_server):
    key = "/".join(["k" * 200] * 5) + "/" + "k" * 19
    assert len(key) == 1024
    path = put(static_server, key, b"ok")
    assert static_server.get(path).content == b"ok"
    # a segment longer than a file name can be (local backend): no such object, not a storage error
    assert_error(static_server.get("/" + "k" * 300), 404)


def test_symlink_out_of_the_bucket_is_400(make_server):
    srv = make_server("local", env={"MEDIAPROXY_MODE": "static"})
    secret = srv.storage_dir / "cdn" / "secret.txt"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_bytes(b"not for the static host")
    inside = srv.storage_dir / "static" / "ok.txt"
    inside.parent.mkdir(parents=True, exist_ok=True)
    inside.write_bytes(b"fine")
    (srv.storage_dir / "static" / "leak.txt").symlink_to(secret)
    (srv.storage_dir / "static" / "up").symlink_to(srv.storage_dir / "cdn")
    (srv.storage_dir / "static" / "alias.txt").symlink_to(inside)  # stays inside: served
    assert_error(srv.get("/leak.txt"), 400)
    assert_error(srv.get("/up/secret.txt"), 400)
    assert srv.get("/alias.txt").content == b"fine"


# ---------------------------------------------------------------- the mode


def test_static_mode_serves_health_and_telemetry_only_besides_keys(static_server):
    assert static_server.get("/_health").text == "OK"
    assert static_server.head("/_health").status_code == 200
    r = static_server.get("/internal/telemetry")
    assert r.status_code == 200 and set(r.json()) == {"telemetry_enabled", "service", "timestamp"}
    assert static_server.head("/internal/telemetry").status_code == 200
    # the media routes are not there: their paths are keys of the static bucket
    user, h = "80351110224678912", secrets.token_hex(16)
    static_server.put("cdn", f"avatars/{user}/{h}", media.jpeg(64, 64))
    assert_error(static_server.get(f"/avatars/{user}/{h}.png"), 404)
    assert static_server.post("/_metadata", json={}).status_code == 405


def test_media_mode_does_not_serve_the_static_bucket(server):
    server.put("static", "robots.txt", b"User-agent: *\n")
    assert_error(server.get("/robots.txt"), 404)


def test_mode_setting():
    base = {"MEDIAPROXY_DEMO": "1"}
    assert Settings.from_env(base).mode == "media"
    s = Settings.from_env({**base, "MEDIAPROXY_MODE": "Static", "MEDIAPROXY_STATIC_BUCKET": "assets"})
    assert (s.mode, s.static_bucket) == ("static", "assets")
    assert Settings.from_env(base).static_bucket == "static"
    with pytest.raises(ConfigError, match="MEDIAPROXY_MODE"):
        Settings.from_env({**base, "MEDIAPROXY_MODE": "everything"})
    with pytest.raises(ConfigError, match="MEDIAPROXY_STATIC_BUCKET"):
        Settings.from_env({**base, "MEDIAPROXY_STATIC_BUCKET": "a/b"})
    assert set(app_module.MODES) == set(MODES)  # every accepted mode has its route groups

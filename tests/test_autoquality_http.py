"""quality=auto over real HTTP: the origin's image routes and the library's imgix-style auto=compress."""

from __future__ import annotations

import numpy as np
import pyvips

from . import media
from .cdnutil import assert_error, hash_, snowflake
from .test_library_media import upload


def flat_jpeg(n: int = 512) -> bytes:
    """An easy source: a smooth gradient."""
    return media.gradient(n, n).jpegsave_buffer(Q=95)


def busy_jpeg(n: int = 512) -> bytes:
    """A hard one: seeded noise over the gradient."""
    rng = np.random.default_rng(11)
    base = np.asarray(media.gradient(n, n).numpy(), np.float64)
    arr = np.clip(base + rng.normal(0, 45, base.shape), 0, 255).astype(np.uint8)
    return pyvips.Image.new_from_array(arr).copy(interpretation="srgb").jpegsave_buffer(Q=95)


def avatar(server, data: bytes) -> str:
    u, h = snowflake(), hash_()
    server.put("cdn", f"avatars/{u}/{h}", data)
    return f"/avatars/{u}/{h}"


def test_origin_quality_auto(server):
    easy, hard = avatar(server, flat_jpeg()), avatar(server, busy_jpeg())
    for ext, ctype in (("webp", "image/webp"), ("jpg", "image/jpeg"), ("avif", "image/avif")):
        size = 128 if ext == "jpg" else 256
        auto = server.get(f"{easy}.{ext}?size={size}&quality=auto")
        assert auto.status_code == 200, auto.text
        assert auto.headers["Content-Type"] == ctype
        im = media.decode(auto.content)
        assert (im.width, im.height) == (size, size)
        high = server.get(f"{easy}.{ext}?size={size}")
        assert auto.headers["ETag"] != high.headers["ETag"]
        assert len(auto.content) < len(high.content), ext  # an easy image needs less than `high` for the target
        # the same URL (any case of `auto`) gives the same bytes and ETag, from the cache or computed again
        again = server.get(f"{easy}.{ext}?size={size}&quality=AUTO")
        assert again.content == auto.content and again.headers["ETag"] == auto.headers["ETag"]
        hard_auto = server.get(f"{hard}.{ext}?size={size}&quality=auto")
        assert hard_auto.status_code == 200
        assert len(hard_auto.content) > len(auto.content)


def test_origin_quality_auto_bad_spellings(server):
    path = avatar(server, flat_jpeg(64))
    for bad in ("auto:eco", "autox", "eco"):
        assert_error(server.get(f"{path}.webp?quality={bad}"), 400)


def test_origin_quality_auto_is_recomputed_identically(make_server):
    """Two servers (no shared cache) give the same bytes: the choice is deterministic."""
    a, b = make_server("local"), make_server("local")
    src = busy_jpeg(300)
    bodies = []
    for srv in (a, b):
        path = avatar(srv, src)
        r = srv.get(f"{path}.webp?size=256&quality=auto")
        assert r.status_code == 200
        bodies.append((r.content, r.headers["ETag"]))
    assert bodies[0] == bodies[1]


def test_attachment_quality_auto_transforms(server):
    c, a = snowflake(), snowflake()
    src = flat_jpeg(400)
    server.put("cdn", f"attachments/{c}/{a}/g.jpg", src, "image/jpeg")
    r = server.get(f"/attachments/{c}/{a}/g.jpg?quality=auto")
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    assert r.content != src  # not the stored bytes: auto asks for an encode (attachments default to lossless)
    assert media.decode(r.content).width == 400


def test_library_auto_compress(library):
    m = upload(library, flat_jpeg(400), "g.jpg", "image/jpeg")
    url = m["publicDownloadUrl"]
    import requests

    def fetch(q: str) -> requests.Response:
        r = requests.get(url + q, headers={"Accept": "image/webp"}, timeout=60)
        assert r.status_code == 200, (q, r.text)
        return r

    default, compress = fetch("?w=300"), fetch("?w=300&auto=compress")
    assert len(compress.content) < len(default.content)
    assert fetch("?w=300&auto=compress").headers["ETag"] == compress.headers["ETag"]
    webp = fetch("?w=300&auto=format,compress")
    assert webp.headers["Content-Type"] == "image/webp" and len(webp.content) < len(fetch("?w=300&fm=webp").content)
    # an explicit q wins over compress
    assert fetch("?w=300&auto=compress&q=90").content == fetch("?w=300&q=90").content

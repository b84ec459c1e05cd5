"""Image geometry over real HTTP: a crop with a rotation of a large JPEG or PNG, and the exact size a
``w``/``h`` asks for on ``/v2/images/:id`` and ``/library/{key}`` (gunicorn + worker, every stack)."""

from __future__ import annotations

import pytest
import requests

from mediaproxy.library.api import schemas
from mediaproxy.library.api.common import decode
from mediaproxy.library.api.v2 import image_spec
from mediaproxy.media import pipeline

from . import media

# the gradient's corners: R grows left→right, G grows top→bottom
TOP_LEFT, TOP_RIGHT, BOTTOM_LEFT, BOTTOM_RIGHT = (0, 0), (255, 0), (0, 255), (255, 255)
# where each source corner ends after a clockwise rotation: (top-left, top-right, bottom-left, bottom-right)
TURNED = {
    0: (TOP_LEFT, TOP_RIGHT, BOTTOM_LEFT, BOTTOM_RIGHT),
    90: (BOTTOM_LEFT, TOP_LEFT, BOTTOM_RIGHT, TOP_RIGHT),
    180: (BOTTOM_RIGHT, BOTTOM_LEFT, TOP_RIGHT, TOP_LEFT),
    270: (TOP_RIGHT, BOTTOM_RIGHT, TOP_LEFT, BOTTOM_LEFT),
}


def corners(data: bytes) -> list[tuple[int, int]]:
    im = media.decode(data)
    w, h = im.width, im.height
    return [tuple(round(v) for v in im.getpoint(x, y)[:2]) for x, y in ((1, 1), (w - 2, 1), (1, h - 2), (w - 2, h - 2))]


def near(got: list[tuple[int, int]], want: tuple) -> bool:
    return all(abs(a - b) <= 24 for g, w in zip(got, want, strict=True) for a, b in zip(g, w, strict=True))


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_crop_rotates_large_images(library, fmt):
    """A 1200x900 JPEG or PNG, cropped whole and turned by 90, 180, 270: the size swaps (or not) and
    each corner lands where a clockwise turn puts it (a sequential decode refused it: 400)."""
    data = media.jpeg(1200, 900) if fmt == "jpeg" else media.png(1200, 900)
    for rotate in (90, 180, 270):
        m = library.upload(data, f"big.{'jpg' if fmt == 'jpeg' else 'png'}").json()
        r = library.api("POST", "/api/v1/media/crop", json={"id": m["id"], "x": 0, "y": 0, "width": 1200,
                                                            "height": 900, "rotate": rotate})
        assert r.status_code == 200, (rotate, r.text)
        c = r.json()
        want = (900, 1200) if rotate in (90, 270) else (1200, 900)
        assert (c["width"], c["height"]) == want and c["mimeType"] == f"image/{fmt}"
        body = requests.get(c["url"], timeout=30).content
        assert (media.decode(body).width, media.decode(body).height) == want
        assert near(corners(body), TURNED[rotate]), (rotate, corners(body))


def test_crop_of_a_region_rotated_and_of_an_exif_oriented_jpeg(library):
    # a region of a large PNG, turned, to WebP
    m = library.upload(media.png(1600, 1000), "p.png").json()
    r = library.api("POST", "/api/v1/media/crop", json={"id": m["id"], "x": 800, "y": 500, "width": 800,
                                                        "height": 500, "rotate": 90, "format": "png"})
    assert r.status_code == 200, r.text
    c = r.json()
    assert (c["width"], c["height"]) == (500, 800)
    got = corners(requests.get(c["url"], timeout=30).content)
    # the region is the source's bottom-right quarter: its top-left corner is mid-grey in R and G
    assert got[1][0] < got[3][0] and got[0][1] > got[1][1]  # turned clockwise
    # a JPEG whose EXIF orientation turns it (the upright image is cropped): 1200x800 stored, 800x1200 upright
    oriented = media.oriented_jpeg(1200, 800, 6)
    m = library.upload(oriented, "o.jpg").json()
    assert (m["width"], m["height"]) == (800, 1200)
    r = library.api("POST", "/api/v1/media/crop", json={"id": m["id"], "x": 0, "y": 0, "width": 800,
                                                        "height": 1200, "format": "png"})
    assert r.status_code == 200, r.text
    c = r.json()
    assert (c["width"], c["height"]) == (800, 1200)
    body = requests.get(c["url"], timeout=30).content
    # bands red | blue left→right, turned 90° clockwise: red on top, blue below
    top, bottom = media.pixel(body, 400, 10), media.pixel(body, 400, 1190)
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60


SOURCES = [(1000, 750), (1024, 768), (333, 500), (4000, 3000), (1001, 667), (257, 1000)]


def encode(fmt: str, w: int, h: int) -> bytes:
    return {"jpeg": media.jpeg, "png": media.png, "webp": media.webp}[fmt](w, h)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_requested_width_is_exact(library, fmt):
    """``w=200`` is 200 pixels wide (and ``h`` that high), on the /v2 image service's URL and on the public
    ``/library/{key}`` URL; libvips' thumbnail fitting a box rounded its own scale (199 px)."""
    for w, h in SOURCES:
        r = library.api("POST", "/v2/images", files={"file": (f"s.{fmt}", encode(fmt, w, h),
                                                              "application/octet-stream")})
        assert r.status_code == 201, r.text
        m = r.json()
        for params, want in (({"w": 200}, (200, round(h * 200 / w))),
                             ({"h": 200}, (round(w * 200 / h), 200)),
                             ({"w": 150, "format": "jpeg"}, (150, round(h * 150 / w)))):
            got = media.decode(library.api("GET", f"/v2/images/{m['id']}", key=None, params=params).content)
            assert (got.width, got.height) == want, ((w, h), fmt, params)
        got = media.decode(requests.get(m["url"], params={"w": 200}, timeout=30).content)
        assert (got.width, got.height) == (200, round(h * 200 / w)), ((w, h), fmt, "library")


def test_the_pipeline_makes_the_planned_size():
    """In process, over many sources and requests: what comes out is the plan's size."""
    limits = pipeline.Limits(100_000_000, 100, 1_000_000_000)
    for w, h in [*SOURCES, (640, 480), (1200, 900), (800, 533), (3000, 4000)]:
        for fmt in ("jpeg", "png"):
            data = encode(fmt, w, h)
            for q in ({"w": "200"}, {"h": "200"}, {"w": "200", "h": "150"}, {"w": "150", "format": "jpeg"},
                      {"w": "100", "thumb": "true"}, {"w": "333", "format": "png"}):
                spec = image_spec(decode(q, schemas.ServeQuery, strings=True, repeated=True))
                out = pipeline.transform(data, spec, limits)
                plan = pipeline.plan(spec, w, h)
                assert (out.width, out.height) == (plan.out_w, plan.out_h), ((w, h), fmt, q)

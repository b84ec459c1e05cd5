"""/external/{signature}/{encoded_url} over real HTTP: a gunicorn server
fetching from a loopback origin (allowed by MEDIAPROXY_FETCH_ALLOW_CIDRS),
and a second one with the setting off."""

from __future__ import annotations

import base64
import itertools
from urllib.parse import quote

import pytest

from mediaproxy.signing import sign_path, signature

from . import avmedia, media
from .server import SECRET

_n = itertools.count()


@pytest.fixture(scope="module")
def srv(make_server):
    return make_server("local", env={"MEDIAPROXY_FETCH_TIMEOUT": "2", "MEDIAPROXY_FETCH_MAX_BYTES": "300000"})


@pytest.fixture(scope="module")
def strict_srv(make_server):
    """The shipped policy: no private address allowed."""
    return make_server("local", env={"MEDIAPROXY_FETCH_ALLOW_CIDRS": ""})


def ext(url: str, query: str = "") -> str:
    return f"/external/{sign_path(url, SECRET)}" + (f"?{query}" if query else "")


def unique(path: str) -> str:
    return f"/x{next(_n)}{path}"


def assert_error(r, status: int) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["Cache-Control"] == "no-store"
    assert len(r.content) < 200 and b"Traceback" not in r.content


def test_image_passthrough_cached_and_revalidated(srv, origin):
    png = media.png(120, 80)
    path = unique("/a.png")
    url = origin.add(path, png, headers={"Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"})
    r = srv.get(ext(url))
    assert r.status_code == 200, r.text
    assert r.content == png
    assert r.headers["Content-Type"] == "image/png"
    assert r.headers["Content-Length"] == str(len(png))
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert r.headers["Last-Modified"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["ETag"].startswith('"')
    assert r.headers["X-Cache"] == "MISS"
    again = srv.get(ext(url))
    assert again.content == png and again.headers["X-Cache"] == "HIT" and again.headers["ETag"] == r.headers["ETag"]
    reval = srv.get(ext(url), headers={"If-None-Match": r.headers["ETag"]})
    assert reval.status_code == 304 and reval.content == b""
    ims = srv.get(ext(url), headers={"If-Modified-Since": r.headers["Last-Modified"]})
    assert ims.status_code == 304
    part = srv.get(ext(url), headers={"Range": "bytes=0-7"})
    assert part.status_code == 206 and part.content == png[:8]
    # animated=false is the default: it asks for nothing, the original is passed through
    same = srv.get(ext(url, "animated=false"))
    assert same.content == png and same.headers["ETag"] == r.headers["ETag"]
    assert part.headers["Content-Range"] == f"bytes 0-7/{len(png)}"
    head = srv.head(ext(url))
    assert head.status_code == 200 and head.content == b"" and head.headers["Content-Length"] == str(len(png))
    assert origin.hits(path) == 1  # fetched once; every other answer came from the cache


def test_transform_uses_the_cached_original(srv, origin):
    path = unique("/b.jpg")
    url = origin.add(path, media.jpeg(400, 300), content_type="image/jpeg")
    r = srv.get(ext(url, "width=100&format=webp"))
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "image/webp"
    im = media.decode(r.content)
    assert (im.width, im.height) == (100, 75)
    r2 = srv.get(ext(url, "width=100&format=webp"))
    assert r2.headers["X-Cache"] == "HIT" and r2.content == r.content
    r3 = srv.get(ext(url, "height=30"))  # another variant: no new fetch
    assert r3.status_code == 200 and media.decode(r3.content).height == 30
    assert r3.headers["Content-Type"] == "image/jpeg"
    plain = srv.get(ext(url))
    assert plain.status_code == 200 and plain.headers["Content-Type"] == "image/jpeg"
    assert origin.hits(path) == 1


def test_bad_parameters_are_400_before_any_fetch(srv, origin):
    path = unique("/c.png")
    url = origin.add(path, media.png(10, 10))
    for q in ("width=0", "width=abc", "size=17", "format=bmp", "quality=101", "fit=squash", "animated=maybe"):
        assert_error(srv.get(ext(url, q)), 400)
    assert origin.hits(path) == 0


def test_video_passthrough_with_range_and_poster(srv, origin):
    mp4 = avmedia.video(320, 240, frames=10)
    path = unique("/v.mp4")
    url = origin.add(path, mp4, content_type="video/mp4")
    r = srv.get(ext(url))
    assert r.status_code == 200 and r.content == mp4 and r.headers["Content-Type"] == "video/mp4"
    part = srv.get(ext(url), headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == mp4[100:200]
    poster = srv.get(ext(url, "format=jpeg&width=160"))
    assert poster.status_code == 200, poster.text
    assert poster.headers["Content-Type"] == "image/jpeg"
    im = media.decode(poster.content)
    assert (im.width, im.height) == (160, 120)
    red, green, _ = im.getpoint(80, 60)
    assert red > 200 and green < 60  # frame 0 is red
    assert srv.get(ext(url, "width=100")).content == mp4  # no format: a video stays a video
    assert origin.hits(path) == 1


def test_audio_passthrough(srv, origin):
    m4a = avmedia.audio(0.5)
    path = unique("/a.m4a")
    url = origin.add(path, m4a, content_type="audio/mp4")
    r = srv.get(ext(url))
    assert r.status_code == 200 and r.content == m4a and r.headers["Content-Type"] == "audio/mp4"
    assert_error(srv.get(ext(url, "format=png")), 400)  # no picture to make a poster of


def test_signature_is_required(srv, origin):
    url = origin.add(unique("/sig.png"), media.png(10, 10))
    signed = sign_path(url, SECRET)
    sig, encoded = signed.split("/")
    assert_error(srv.get(f"/external/{'0' * 64}/{encoded}"), 403)
    assert_error(srv.get(f"/external/{sig.upper()}/{encoded}"), 403)
    assert_error(srv.get(f"/external/{sig[:-1]}/{encoded}"), 403)
    assert_error(srv.get(f"/external/{sign_path(url, 'another-secret')}"), 403)
    assert_error(srv.get(f"/external/{sig}/{encoded}A"), 403)  # signature of other text
    assert_error(srv.get(f"/external/{sig}/{encoded}/extra"), 403)
    assert srv.get(f"/external/{sig}/{encoded}").status_code == 200
    padded = base64.urlsafe_b64encode(url.encode()).decode()
    if padded != encoded:  # padding is optional, but the signature covers the text as sent
        assert srv.get(f"/external/{signature(padded, SECRET)}/{padded}").status_code == 200


@pytest.mark.parametrize("encoded", ["not*base64", "abcde", "gA", "-_-_-"])
def test_undecodable_url_is_400(srv, encoded):
    assert_error(srv.get(f"/external/{signature(encoded, SECRET)}/{quote(encoded)}"), 400)


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("file:///etc/passwd", 403),
        ("ftp://127.0.0.1/a.png", 403),
        ("http://169.254.169.254/latest/meta-data/", 403),
        ("http://10.0.0.1/a.png", 403),
        ("http://[fd00:ec2::254]/", 403),
        ("http://0xa9fea9fe/", 403),
        ("not a url", 400),
        ("/just/a/path.png", 403),
        ("http:///nohost", 400),
    ],
)
def test_refused_targets(srv, target, status):
    assert_error(srv.get(ext(target)), status)


def test_origin_failures(srv, origin):
    html = origin.add(unique("/page.html"), b"<html><script>alert(1)</script></html>", content_type="text/html")
    svg = origin.add(unique("/i.svg"), b'<svg xmlns="http://www.w3.org/2000/svg"/>', content_type="image/svg+xml")
    liar = origin.add(unique("/liar.png"), b"<!DOCTYPE html><html>hi</html>", content_type="image/png")
    slow = origin.add(unique("/slow.png"), media.png(8, 8), delay=4)
    trickle = origin.add(unique("/trickle.png"), media.png(8, 8) + b"\0" * 400, trickle=0.02)
    big = origin.add(unique("/big.png"), media.png(8, 8) + b"\0" * 400_000)
    big_stream = origin.add(unique("/bigs.png"), b"\0" * 65536, length=False, repeat=50)
    broken = origin.add(unique("/broken.png"), b"\x89PNG\r\n\x1a\n garbage")
    err = origin.add(unique("/e.png"), b"boom", status=503)
    assert_error(srv.get(ext(html)), 400)
    assert_error(srv.get(ext(svg)), 400)
    assert_error(srv.get(ext(liar)), 400)
    assert_error(srv.get(ext(origin.url(unique("/missing.png")))), 404)
    assert_error(srv.get(ext(err)), 502)
    assert_error(srv.get(ext(slow)), 504)
    assert_error(srv.get(ext(trickle)), 504)
    assert_error(srv.get(ext(big)), 413)
    assert_error(srv.get(ext(big_stream)), 413)
    assert_error(srv.get(ext(broken, "width=10")), 400)
    assert_error(srv.get(ext(origin.url("/chain/6"))), 502)
    origin.add("/chain/0", media.png(12, 12))
    assert srv.get(ext(origin.url("/chain/5"))).status_code == 200


def test_redirect_to_refused_address_is_403(srv, origin):
    for target in ("http://169.254.169.254/latest/meta-data/iam/", "http://192.168.0.1/", "gopher://127.0.0.1/"):
        r = srv.get(ext(origin.url("/redirect?to=" + quote(target, safe=""))))
        assert_error(r, 403)


def test_setting_off_refuses_loopback(strict_srv, origin):
    path = unique("/strict.png")
    origin.add(path, media.png(10, 10))
    for host in ("127.0.0.1", "localhost", "[::1]", "127.0.0.2", "0x7f000001", "2130706433", "[::ffff:127.0.0.1]"):
        assert_error(strict_srv.get(ext(origin.url(path, host=host))), 403)
    assert origin.hits(path) == 0


def test_verify_takes_any_text_as_a_signature():
    """The route checks the form first; verify itself answers False, never raises, on any text."""
    from mediaproxy.signing import verify

    encoded = sign_path("https://example.com/a.png", "k").split("/", 1)[1]
    assert verify(signature(encoded, "k"), encoded, "k")
    assert not verify("\u00e9" * 64, encoded, "k") and not verify("", encoded, "k")

"""The presigned /media API over real HTTP: presigned upload, uploader-only reads, placeholders, content
addressing, and imgix-style parameters on the public URL."""

from __future__ import annotations

import hashlib
import time

import pytest
import requests

from mediaproxy.media.placeholder import thumbhash_average

from . import media


def create(library, filename="photo.png", ctype="image/png", user="user-1", key="default"):
    return library.api("POST", "/media", key=key, headers={"X-User-Id": user},
                       json={"filename": filename, "contentType": ctype})


def put(created: dict, data: bytes, ctype: str = "image/png") -> requests.Response:
    headers = {**created["headers"], "Content-Type": ctype,
               "Content-Disposition": created["contentDispositionHeader"]}
    return requests.put(created["uploadUrl"], data=data, headers=headers, timeout=30)


def get(library, media_id: str, user="user-1", key="default") -> requests.Response:
    return library.api("GET", f"/media/{media_id}", key=key, headers={"X-User-Id": user})


def wait_placeholders(library, media_id: str, user="user-1", timeout=90.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = get(library, media_id, user).json()
        if body["blurHash"] and body["canonicalUri"]:
            return body
        time.sleep(0.1)
    raise AssertionError(f"no placeholders: {body}")


def upload(library, data: bytes, filename="photo.png", ctype="image/png", user="user-1") -> dict:
    r = create(library, filename, ctype, user)
    assert r.status_code == 201, r.text
    c = r.json()
    assert put(c, data, ctype).status_code == 200
    return wait_placeholders(library, c["media"]["id"], user)


def test_the_presigned_flow(library):
    data = media.bands(200, 100, [(200, 30, 60)]).pngsave_buffer()
    r = create(library, "Photo été.png")
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["media"]["filename"] == "Photo été.png" and c["media"]["contentType"] == "image/png"
    assert c["contentDispositionHeader"].startswith('inline; filename="Photo')
    mid = c["media"]["id"]
    before = get(library, mid).json()
    assert before["publicDownloadUrl"] is None and before["blurHash"] is None and before["canonicalUri"] is None
    assert put(c, data).status_code == 200
    m = wait_placeholders(library, mid)
    assert m["size"] == len(data) and (m["width"], m["height"]) == (200, 100)
    assert m["canonicalUri"].endswith("/sha256/" + hashlib.sha256(data).hexdigest())
    r_, g_, b_, a_ = thumbhash_average(m["thumbHash"])
    assert abs(r_ - 200 / 255) < 0.05 and abs(g_ - 30 / 255) < 0.05 and abs(b_ - 60 / 255) < 0.05 and a_ == 1.0
    for url in (m["publicDownloadUrl"], m["canonicalUri"]):
        r = requests.get(url, timeout=30)
        assert r.status_code == 200 and r.content == data
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"


def test_only_the_uploader_sees_the_record(library):
    c = create(library).json()
    mid = c["media"]["id"]
    assert get(library, mid).status_code == 200
    assert get(library, mid, user="someone-else").status_code == 404
    assert get(library, mid, key=library.other_key).status_code == 404
    assert library.api("GET", f"/media/{mid}").status_code == 400  # no X-User-Id
    assert get(library, "0" * 32).status_code == 404
    assert library.api("GET", f"/media/{mid}", key=None, headers={"X-User-Id": "user-1"}).status_code == 401


def test_identical_uploads_are_stored_once(library):
    data = media.jpeg(90, 60)
    a = upload(library, data, "a.jpg", "image/jpeg")
    b = upload(library, data, "b.jpg", "image/jpeg", user="user-2")
    assert a["id"] != b["id"]
    assert a["canonicalUri"] == b["canonicalUri"]
    assert library.stored_keys(f"acme/{b['id']}/") == []
    # one object, and a public URL per record (each record's privacy governs its own URL)
    assert a["publicDownloadUrl"] != b["publicDownloadUrl"]
    assert requests.get(a["publicDownloadUrl"], timeout=30).content == data
    assert requests.get(b["publicDownloadUrl"], timeout=30).content == data


@pytest.mark.parametrize("body,status", [
    ({"filename": "x.svg", "contentType": "image/svg+xml"}, 415),
    ({"filename": "x.avif", "contentType": "image/avif"}, 415),
    ({"filename": "x.png"}, 400),
    ({"contentType": "image/png"}, 400),
    ({"filename": 5, "contentType": "image/png"}, 400),
])
def test_bad_create_requests(library, body, status):
    r = library.api("POST", "/media", headers={"X-User-Id": "u"}, json=body)
    assert r.status_code == status, r.text
    assert "error" in r.json()
    r = library.api("POST", "/media", headers={"X-User-Id": "u", "Content-Type": "application/json"}, data=b"{")
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]


def test_wrong_bytes_never_become_public(library):
    c = create(library).json()
    r = put(c, b"GIF89a" + b"\0" * 100, "image/png")  # not a PNG, but a GIF would be allowed...
    mid = c["media"]["id"]
    if library.server.backend == "local":
        assert r.status_code == 200  # a GIF is one of the /media API's types: accepted by its bytes
        assert get(library, mid).json()["contentType"] == "image/gif"
    c = create(library).json()
    mid = c["media"]["id"]
    r = put(c, b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>")
    if library.server.backend == "local":
        assert r.status_code == 415
    else:
        library.refused(f"acme/{mid}/")
    m = get(library, mid).json()
    assert m["publicDownloadUrl"] is None and m["status"] == "pending_upload"


def test_ten_megabytes_at_most(library):
    c = create(library).json()
    big = media.png(10, 10) + b"\0" * (10 * 1000**2)
    r = put(c, big)
    if library.server.backend == "s3":
        library.refused(f"acme/{c['media']['id']}/")
    m = get(library, c["media"]["id"]).json()
    assert m["publicDownloadUrl"] is None
    if library.server.backend == "local":
        assert r.status_code == 413
    assert library.stored_keys(f"acme/{c['media']['id']}/") == []
    assert library.stored_keys(f"incoming/acme/{c['media']['id']}/") == []  # S3: moved when checked, then refused


def test_a_declared_size_is_signed_into_the_upload_url(library):
    """An optional `size` binds the URL to exactly that many bytes: S3 signs
    Content-Length (moto does not check signatures, so the URL is checked), the local backend's
    URL refuses any other length with 403 before reading; over the limit is 413 at once."""
    data = media.png(30, 20)
    r = library.api("POST", "/media", headers={"X-User-Id": "user-1"},
                    json={"filename": "s.png", "contentType": "image/png", "size": len(data)})
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["headers"]["Content-Length"] == str(len(data))
    if library.server.backend == "s3":
        assert "content-length" in c["uploadUrl"].split("X-Amz-SignedHeaders=")[1].split("&")[0]
    else:
        assert put(c, data + b"\0").status_code == 403
        assert put(c, data[:-1]).status_code == 403
        assert requests.put(c["uploadUrl"], data=iter([data]), headers={"Content-Type": "image/png"},
                            timeout=30).status_code == 403  # chunked: no Content-Length to match the signed one
        assert requests.put(c["uploadUrl"].replace(f"size={len(data)}", f"size={len(data) + 1}"), data=data + b"\0",
                            headers={"Content-Type": "image/png"}, timeout=30).status_code == 403  # tampered
        assert library.stored_keys(f"acme/{c['media']['id']}/") == []
    assert put(c, data).status_code == 200
    assert wait_placeholders(library, c["media"]["id"])["size"] == len(data)
    for size, status in ((10 * 1000**2 + 1, 413), (0, 400), ("big", 400)):
        r = library.api("POST", "/media", headers={"X-User-Id": "user-1"},
                        json={"filename": "s.png", "contentType": "image/png", "size": size})
        assert r.status_code == status, (size, r.text)


def test_imgix_parameters(library):
    src = media.gradient(400, 300).jpegsave_buffer(Q=95)
    m = upload(library, src, "g.jpg", "image/jpeg")
    url = m["publicDownloadUrl"]

    def fetch(q: str, accept: str = "*/*") -> requests.Response:
        r = requests.get(url + q, headers={"Accept": accept}, timeout=60)
        assert r.status_code == 200, (q, r.text)
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        return r

    im = media.decode(fetch("?w=200").content)
    assert (im.width, im.height) == (200, 150)
    im = media.decode(fetch("?w=100&h=100&fit=crop").content)
    assert (im.width, im.height) == (100, 100)
    im = media.decode(fetch("?w=100&h=100&fit=clip").content)
    assert (im.width, im.height) == (100, 75)
    im = media.decode(fetch("?w=100&h=100&fit=scale").content)
    assert (im.width, im.height) == (100, 100)
    im = media.decode(fetch("?w=100&h=100&fit=fill").content)
    assert (im.width, im.height) == (100, 100)
    # auto=format: AVIF, WebP or the source's JPEG from Accept, with Vary: Accept
    for accept, ctype in (("image/avif,image/webp,*/*", "image/avif"), ("image/webp,*/*", "image/webp"),
                          ("*/*", "image/jpeg")):
        r = fetch("?w=120&auto=format", accept)
        assert r.headers["Content-Type"] == ctype and "Accept" in r.headers["Vary"]
    assert fetch("?w=120&auto=format&fm=png").headers["Content-Type"] == "image/png"
    full = len(fetch("?w=300").content)
    assert len(fetch("?w=300&auto=compress").content) < full
    for bad in ("?w=0", "?w=abc", "?fit=facearea", "?fm=bmp", "?auto=magic", "?q=101"):
        r = requests.get(url + bad, timeout=30)
        assert r.status_code == 400, bad
        assert "immutable" not in r.headers.get("Cache-Control", "")


def test_results_are_purged_with_the_media(library):
    src = media.gradient(200, 100).pngsave_buffer()
    r = library.upload(src, "p.png")
    m = r.json()
    url = m["url"] + "?w=50"
    assert requests.get(url, timeout=30).headers["X-Cache"] == "MISS"
    assert requests.get(url, timeout=30).headers["X-Cache"] == "HIT"
    library.api("PATCH", f"/api/v1/media/{m['id']}", json={"isPrivate": True})
    assert requests.get(url, timeout=30).status_code == 404
    library.api("PATCH", f"/api/v1/media/{m['id']}", json={"isPrivate": False})
    assert requests.get(url, timeout=30).headers["X-Cache"] == "MISS"  # purged when it went private

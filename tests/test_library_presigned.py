"""Presigned uploads over real HTTP on every stack: a seed-002 upload URL asked for without
``mimeType`` (the filename's type, or none and the bytes decide), and seed 003's
``Content-Disposition`` sent with the PUT, served again on the ``publicDownloadUrl``."""

from __future__ import annotations

import random

import requests

from . import media

PRESIGNED = "/api/v1/media/upload/presigned"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>' * 4


def presign(library, **body) -> dict:
    r = library.api("POST", PRESIGNED, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_presigned_upload_without_mime_type(library):
    # the filename's type is signed into the URL
    png = media.png(64, 48)
    p = presign(library, filename="shot.png")
    assert p["headers"]["Content-Type"] == "image/png"
    assert requests.put(p["uploadUrl"], data=png, headers=p["headers"], timeout=30).status_code == 200
    m = library.api("GET", f"/api/v1/media/{p['id']}").json()
    assert (m["status"], m["mimeType"], m["width"], m["height"]) == ("ready", "image/png", 64, 48)
    assert requests.get(m["url"], timeout=30).content == png
    # a name that tells no type (.bin, none): no type is signed, the bytes decide at completion
    jpeg = media.jpeg(40, 30)
    for filename in ("upload.bin", "blob"):
        p = presign(library, filename=filename)
        assert "Content-Type" not in p["headers"]
        assert requests.put(p["uploadUrl"], data=jpeg, headers=p["headers"], timeout=30).status_code == 200
        m = library.api("GET", f"/api/v1/media/{p['id']}").json()
        assert (m["status"], m["mimeType"], m["width"]) == ("ready", "image/jpeg", 40), filename
    # bytes of a type not allowed: refused at completion, nothing kept
    p = presign(library, filename="blob")
    r = requests.put(p["uploadUrl"], data=SVG, headers=p["headers"], timeout=30)
    if library.server.backend == "s3":
        assert r.status_code == 200  # S3 takes anything; the library judges when it completes
    else:
        assert r.status_code == 415
    m = library.api("GET", f"/api/v1/media/{p['id']}").json()
    assert m["status"] == "uploading" and m["url"] is None
    assert library.stored_keys(p["objectKey"]) == []
    # a name whose type is refused, or a mimeType that is, stays 415
    assert library.api("POST", PRESIGNED, json={"filename": "x.svg"}).status_code == 415
    assert library.api("POST", PRESIGNED, json={"filename": "x.png", "mimeType": "text/html"}).status_code == 415


def seed003(library, filename: str, data: bytes, disposition: str | None) -> tuple[dict, requests.Response]:
    user = {"X-User-Id": "ulrike"}
    r = library.api("POST", "/media", json={"filename": filename, "contentType": "image/jpeg"}, headers=user)
    assert r.status_code == 201, r.text
    body = r.json()
    headers = dict(body["headers"])
    if disposition is not None:
        headers["Content-Disposition"] = disposition
    put = requests.put(body["uploadUrl"], data=data, headers=headers, timeout=30)
    got = library.api("GET", f"/media/{body['media']['id']}", headers=user).json()
    return {**body, "got": got}, put


def test_seed003_content_disposition_is_served_with_the_public_url(library):
    data = media.jpeg(random.randint(50, 400), random.randint(50, 400))  # bytes of its own: not deduplicated
    body, put = seed003(library, "holiday photo.jpg", data, None)
    disposition = body["contentDispositionHeader"]
    assert disposition == 'inline; filename="holiday photo.jpg"'
    body, put = seed003(library, "holiday photo.jpg", data, disposition)
    assert put.status_code == 200, put.text
    url = body["got"]["publicDownloadUrl"]
    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and r.content == data
    assert r.headers["Content-Disposition"] == disposition
    assert requests.head(url, timeout=30).headers["Content-Disposition"] == disposition
    # a transformed result is another file: no disposition
    r = requests.get(url, params={"w": 20}, timeout=30)
    assert r.status_code == 200 and "Content-Disposition" not in r.headers
    # a PUT without one: none served
    other = media.jpeg(random.randint(401, 600), 40)
    body, put = seed003(library, "plain.jpg", other, None)
    r = requests.get(body["got"]["publicDownloadUrl"], timeout=30)
    assert r.status_code == 200 and "Content-Disposition" not in r.headers
    # the same bytes again (content-addressed onto the first object): its disposition stays
    body, put = seed003(library, "again.jpg", data, 'attachment; filename="again.jpg"')
    assert requests.get(body["got"]["publicDownloadUrl"], timeout=30).headers["Content-Disposition"] == disposition


def test_seed003_content_disposition_is_checked(library):
    """Only ``inline``/``attachment`` and their parameters in printable ASCII are kept: the local
    upload URL refuses anything else (400, nothing stored); one that S3 took is not served."""
    data = media.jpeg(random.randint(601, 800), 30)
    body, put = seed003(library, "x.jpg", data, 'form-data; name="x"')
    if library.server.backend == "s3":
        assert put.status_code == 200
        r = requests.get(body["got"]["publicDownloadUrl"], timeout=30)
        assert r.status_code == 200 and "Content-Disposition" not in r.headers
    else:
        assert put.status_code == 400 and "Content-Disposition" in put.json()["error"]
        assert body["got"]["status"] == "pending_upload" and library.stored_keys(f"acme/{body['got']['id']}/") == []

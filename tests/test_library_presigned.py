"""Presigned uploads over real HTTP on every stack: an /api/v1 upload URL asked for without
``mimeType`` (the filename's type, or none and the bytes decide), and the /media API's
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
    m = library.uploaded(f"/api/v1/media/{p['id']}")
    assert (m["status"], m["mimeType"], m["width"], m["height"]) == ("ready", "image/png", 64, 48)
    assert requests.get(m["url"], timeout=30).content == png
    # a name that tells no type (.bin, none): no type is signed, the bytes decide at completion
    jpeg = media.jpeg(40, 30)
    for filename in ("upload.bin", "blob"):
        p = presign(library, filename=filename)
        assert "Content-Type" not in p["headers"]
        assert requests.put(p["uploadUrl"], data=jpeg, headers=p["headers"], timeout=30).status_code == 200
        m = library.uploaded(f"/api/v1/media/{p['id']}")
        assert (m["status"], m["mimeType"], m["width"]) == ("ready", "image/jpeg", 40), filename
    # bytes of a type not allowed: refused at completion, nothing kept
    p = presign(library, filename="blob")
    r = requests.put(p["uploadUrl"], data=SVG, headers=p["headers"], timeout=30)
    if library.server.backend == "s3":
        assert r.status_code == 200  # S3 takes anything; the library judges when it completes
        library.refused(p["objectKey"])
    else:
        assert r.status_code == 415
    m = library.api("GET", f"/api/v1/media/{p['id']}").json()
    assert m["status"] == "uploading" and m["url"] is None
    assert library.stored_keys(p["objectKey"]) == []
    # a name whose type is refused, or a mimeType that is, stays 415
    assert library.api("POST", PRESIGNED, json={"filename": "x.svg"}).status_code == 415
    assert library.api("POST", PRESIGNED, json={"filename": "x.png", "mimeType": "text/html"}).status_code == 415


def presigned_put(library, user: str, filename: str, content_type: str, data: bytes,
                  disposition: str | None = None) -> tuple[dict, requests.Response]:
    """POST /media, then the PUT of ``data`` to its upload URL: (POST's answer, the PUT's)."""
    r = library.api("POST", "/media", json={"filename": filename, "contentType": content_type},
                    headers={"X-User-Id": user})
    assert r.status_code == 201, r.text
    body = r.json()
    headers = dict(body["headers"])
    if disposition is not None:
        headers["Content-Disposition"] = disposition
    return body, requests.put(body["uploadUrl"], data=data, headers=headers, timeout=30)


def media_api_upload(library, filename: str, data: bytes, disposition: str | None) -> tuple[dict, requests.Response]:
    body, put = presigned_put(library, "ulrike", filename, "image/jpeg", data, disposition)
    path, user = f"/media/{body['media']['id']}", {"X-User-Id": "ulrike"}
    got = library.uploaded(path, user) if put.status_code == 200 else library.api("GET", path, headers=user).json()
    return {**body, "got": got}, put


def test_media_api_content_disposition_is_served_with_the_public_url(library):
    data = media.jpeg(random.randint(50, 400), random.randint(50, 400))  # bytes of its own: not deduplicated
    body, put = media_api_upload(library, "holiday photo.jpg", data, None)
    disposition = body["contentDispositionHeader"]
    assert disposition == 'inline; filename="holiday photo.jpg"'
    body, put = media_api_upload(library, "holiday photo.jpg", data, disposition)
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
    body, put = media_api_upload(library, "plain.jpg", other, None)
    r = requests.get(body["got"]["publicDownloadUrl"], timeout=30)
    assert r.status_code == 200 and "Content-Disposition" not in r.headers
    # the same bytes again (content-addressed onto the first object): the new record's own disposition
    body, put = media_api_upload(library, "again.jpg", data, 'attachment; filename="again.jpg"')
    r = requests.get(body["got"]["publicDownloadUrl"], timeout=30)
    assert r.content == data and r.headers["Content-Disposition"] == 'attachment; filename="again.jpg"'


def test_media_api_content_disposition_is_checked(library):
    """Only ``inline``/``attachment`` and their parameters in printable ASCII are kept: the local
    upload URL refuses anything else (400, nothing stored); one that S3 took is not served."""
    data = media.jpeg(random.randint(601, 800), 30)
    body, put = media_api_upload(library, "x.jpg", data, 'form-data; name="x"')
    if library.server.backend == "s3":
        assert put.status_code == 200
        r = requests.get(body["got"]["publicDownloadUrl"], timeout=30)
        assert r.status_code == 200 and "Content-Disposition" not in r.headers
    else:
        assert put.status_code == 400 and "Content-Disposition" in put.json()["error"]
        assert body["got"]["status"] == "pending_upload" and library.stored_keys(f"acme/{body['got']['id']}/") == []


def colour_png(width: int = 64, height: int = 48) -> bytes:
    """A PNG of one random colour: bytes no other test uploads (not deduplicated onto theirs)."""
    import pyvips

    rgb = [random.randint(0, 255) for _ in range(3)]
    return (pyvips.Image.black(width, height, bands=3) + rgb).cast("uchar").write_to_buffer(".png")


def noise_png(side: int = 300) -> bytes:
    """A PNG of noise: over 64 KiB, so its body is still arriving when the request is handled."""
    import pyvips

    band = pyvips.Image.gaussnoise(side, side).cast("uchar")
    return band.bandjoin([pyvips.Image.gaussnoise(side, side).cast("uchar")] * 2).write_to_buffer(".png")


def media_api_upload_ready(library, user: str, filename: str, data: bytes,
                           disposition: str | None = None) -> tuple[dict, dict]:
    """A presigned /media upload, PUT and waited for: (POST /media's answer, GET /media/{id} once uploaded)."""
    from .test_library_media import wait_placeholders

    body, put = presigned_put(library, user, filename, "image/png", data, disposition)
    assert put.status_code == 200, put.text
    return body, wait_placeholders(library, body["media"]["id"], user=user)


def test_an_upload_url_cannot_change_a_completed_upload(library):
    """Once an upload is checked, its URL (still valid) changes nothing: not the record's bytes,
    not its content address, not a later identical upload deduplicated onto it. The local backend
    refuses the second PUT; S3 takes it, under a key no record points at."""
    import hashlib

    benign, evil = colour_png(), colour_png(120, 90)
    body, first = media_api_upload_ready(library, "mallory", "meme.png", benign)
    assert first["canonicalUri"].endswith(hashlib.sha256(benign).hexdigest())
    again = requests.put(body["uploadUrl"], data=evil, headers=body["headers"], timeout=30)
    assert again.status_code == (200 if library.server.backend == "s3" else 403), again.text
    seen = library.api("GET", f"/media/{first['id']}", headers={"X-User-Id": "mallory"}).json()
    assert (seen["size"], seen["width"]) == (len(benign), 64)
    assert requests.get(first["publicDownloadUrl"], timeout=30).content == benign
    assert requests.get(first["canonicalUri"], timeout=30).content == benign
    # another user's identical upload is deduplicated onto the checked bytes, not the later PUT's
    _, victor = media_api_upload_ready(library, "victor", "my-photo.png", benign)
    assert victor["canonicalUri"] == first["canonicalUri"]
    assert requests.get(victor["publicDownloadUrl"], timeout=30).content == benign


def test_deduplicated_uploads_keep_their_own_name_and_disposition(library):
    """Bob's upload of the bytes Alice uploaded (and made private) shares her object, but his public
    URL carries his file name, its answer his Content-Disposition; the content address, which
    names bytes and no record, carries none."""
    import hashlib

    data = colour_png()
    _, alice = media_api_upload_ready(library, "alice", "alice-tax-return-2026.png", data,
                             'attachment; filename="alice-tax-return-2026.png"')
    r = library.api("PATCH", f"/api/v1/media/{alice['id']}", json={"isPrivate": True})
    assert r.status_code == 200, r.text
    _, bob = media_api_upload_ready(library, "bob", "cat.png", data, 'inline; filename="cat.png"')
    assert library.stored_keys(f"acme/{bob['id']}/") == []  # stored once
    assert bob["publicDownloadUrl"].endswith(f"/library/acme/{bob['id']}/" + bob["publicDownloadUrl"].split("/")[-2]
                                             + "/cat.png")
    assert "alice" not in bob["publicDownloadUrl"]
    r = requests.get(bob["publicDownloadUrl"], timeout=30)
    assert r.status_code == 200 and r.content == data
    assert r.headers["Content-Disposition"] == 'inline; filename="cat.png"'
    # alice's own spelling under bob's folder is no URL of his
    wrong = bob["publicDownloadUrl"].rsplit("/", 1)[0] + "/alice-tax-return-2026.png"
    assert requests.get(wrong, timeout=30).status_code == 404
    r = requests.get(bob["canonicalUri"], timeout=30)
    assert r.status_code == 200 and r.content == data and "Content-Disposition" not in r.headers
    assert bob["canonicalUri"].endswith(hashlib.sha256(data).hexdigest())
    # alice public again: her URL, her disposition
    library.api("PATCH", f"/api/v1/media/{alice['id']}", json={"isPrivate": False})
    alice = library.api("GET", f"/media/{alice['id']}", headers={"X-User-Id": "alice"}).json()
    r = requests.get(alice["publicDownloadUrl"], timeout=30)
    assert r.headers["Content-Disposition"] == 'attachment; filename="alice-tax-return-2026.png"'


POLYGLOT = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00"
            b"\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;<html><script>alert(document.domain)</script></html>")


def test_a_presigned_download_has_the_type_of_the_bytes(library):
    """A presigned upload without mimeType signs no Content-Type: its client may tell S3 any. A
    download URL S3 answers itself still says the type judged from the bytes."""
    if library.server.backend != "s3":
        import pytest

        pytest.skip("the local backend's download URLs are the server's own, which sends the recorded type")
    p = presign(library, filename="report")
    assert "Content-Type" not in p["headers"]
    put = requests.put(p["uploadUrl"], data=POLYGLOT, headers={"Content-Type": "text/html"}, timeout=30)
    assert put.status_code == 200
    m = library.uploaded(f"/api/v1/media/{p['id']}")
    assert (m["status"], m["mimeType"]) == ("ready", "image/gif")
    r = library.api("GET", "/api/v1/media/presign", params={"objectKey": p["objectKey"]})
    assert r.status_code == 200, r.text
    got = requests.get(r.json()["url"], timeout=30)
    assert got.status_code == 200 and got.content == POLYGLOT
    assert got.headers["Content-Type"] == "image/gif"


def test_one_upload_url_takes_one_put_at_a_time(library):
    """The local backend's upload URL: a second PUT while the first one's body is arriving is 409
    (the first one's record is not rewritten after it answered); a PUT that fails gives the URL
    back, so that a retry works."""
    import socket
    import time
    from urllib.parse import urlsplit

    if library.server.backend != "local":
        import pytest

        pytest.skip("S3 answers PUTs to its own URLs")
    first, second = noise_png(), colour_png()
    p = presign(library, filename="race.png")
    u = urlsplit(p["uploadUrl"])
    head = (f"PUT {u.path}?{u.query} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            f"Content-Length: {len(first)}\r\n\r\n").encode()
    # a PUT whose client goes away half-way: the URL is given back
    with socket.create_connection((u.hostname, u.port)) as s:
        s.sendall(head + first[:100_000])
        time.sleep(1.0)
    deadline = time.monotonic() + 10
    while True:
        r = requests.put(p["uploadUrl"], data=b"not an image at all" * 300, headers={"Content-Type": "image/png"},
                         timeout=30)
        if r.status_code != 409 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 415, r.text  # refused: given back again
    s = socket.create_connection((u.hostname, u.port))
    try:
        s.sendall(head + first[:200])
        time.sleep(1.0)
        r = requests.put(p["uploadUrl"], data=second, headers={"Content-Type": "image/png"}, timeout=30)
        assert r.status_code == 409, r.text
        s.sendall(first[200:])
        s.settimeout(30)
        answer = s.recv(4096).decode(errors="replace")
    finally:
        s.close()
    assert answer.startswith("HTTP/1.1 200"), answer
    m = library.api("GET", f"/api/v1/media/{p['id']}").json()
    assert (m["status"], m["size"], m["width"]) == ("ready", len(first), 300)
    assert requests.get(m["url"], timeout=30).content == first
    r = requests.put(p["uploadUrl"], data=second, headers={"Content-Type": "image/png"}, timeout=30)
    assert r.status_code == 403


def test_own_key_names_the_record_not_the_shared_object():
    from mediaproxy.library.services.base import incoming_key, own_key

    folder = "acme/" + "b" * 32 + "/" + "c" * 32
    assert own_key(folder, f"{folder}/x.png", "renamed.png") == f"{folder}/x.png"  # its own upload
    other = "acme/" + "a" * 32 + "/" + "d" * 32 + "/alice-tax-return.png"
    assert own_key(folder, other, "my cat.png") == f"{folder}/my_cat.png"
    assert incoming_key(other) == "incoming/" + other

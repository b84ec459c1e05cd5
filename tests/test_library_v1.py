"""The /api/v1 API over real HTTP: gunicorn + a real worker, on both storage backends."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
import pyvips
import requests

from . import media

JPEG = media.jpeg(640, 480)


def test_health(library):
    r = requests.get(library.base + "/healthz", timeout=30)
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_keys_are_required(library):
    for headers in ({}, {"X-API-Key": "nope"}, {"X-API-Key": library.key[:-1] + "x"},
                    {"Authorization": "Bearer " + library.key[:-2]}):
        r = library.api("GET", "/api/v1/media/list", key=None, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["Content-Type"] == "application/json"
        assert "error" in r.json()
    r = library.api("GET", "/api/v1/media/list", key=None, headers={"Authorization": "Bearer " + library.key})
    assert r.status_code == 200


def test_upload_with_variants(library):
    r = library.upload(JPEG, "holiday photo.jpg", orgSlug="acme", alt="a gradient", caption="c",
                       generateVariants=True)
    assert r.status_code == 201, r.text
    m = r.json()
    assert m["mimeType"] == "image/jpeg" and m["size"] == len(JPEG)
    assert (m["width"], m["height"]) == (640, 480)
    assert m["filename"] == "holiday_photo.jpg"
    assert m["objectKey"].startswith(f"acme/{m['id']}/") and m["objectKey"].endswith("/holiday_photo.jpg")
    assert m["alt"] == "a gradient" and m["caption"] == "c" and m["description"] is None
    assert m["isPrivate"] is False and m["blurHash"] and m["thumbHash"] and m["createdAt"].endswith("Z")
    names = {v["name"]: v for v in m["variants"]}
    assert set(names) == {"thumbnail", "small", "medium", "large", "original_webp"}
    assert (names["thumbnail"]["width"], names["thumbnail"]["height"]) == (150, 150)
    assert (names["small"]["width"], names["small"]["height"]) == (320, 240)
    assert (names["large"]["width"], names["large"]["height"]) == (640, 480)  # never enlarged
    # the public URL serves the original, immutable; a variant URL serves the WebP
    r = requests.get(m["url"], timeout=30)
    assert r.status_code == 200 and r.content == JPEG
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    r = requests.get(names["small"]["url"], timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/webp"
    assert media.decode(r.content).width == 320
    # the record as GET gives it
    got = library.api("GET", f"/api/v1/media/{m['id']}").json()
    assert got == m
    assert library.api("GET", f"/api/v1/media/{m['id']}/variants").json()["variants"] == m["variants"]


def test_upload_async_runs_on_the_worker(library):
    r = library.upload(media.png(300, 200), "p.png", generateVariants=True, **{"async": True})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["state"] == "pending" and body["media"]["variants"] == []
    job = library.wait_job(body["jobId"])
    assert job["state"] == "completed", job
    assert job["failedReason"] is None and job["result"]["media"] == body["media"]["id"]
    m = library.api("GET", f"/api/v1/media/{body['media']['id']}").json()
    assert len(m["variants"]) == 5 and m["blurHash"]


def test_over_the_limit_is_413_and_stores_nothing(library):
    before = library.api("GET", "/api/v1/media/list").json()["total"]
    stored = set(library.stored_keys("acme/"))
    big = media.png(16, 16) + b"\0" * (4 * 1024**2)
    r = library.upload(big, "big.png")
    assert r.status_code == 413, r.text
    assert "limit" in r.json()["error"]
    # without a Content-Length (chunked), the limit is counted as the bytes arrive
    def gen():
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        yield media.png(16, 16)
        for _ in range(64):
            yield b"\0" * (64 * 1024)
        yield b"\r\n--xyz--\r\n"
    r = library.api("POST", "/api/v1/media/upload", data=gen(),
                    headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 413, r.text
    assert library.api("GET", "/api/v1/media/list").json()["total"] == before
    assert set(library.stored_keys("acme/")) == stored


def test_type_is_judged_by_the_bytes(library):
    r = library.upload(b"<html><script>alert(1)</script></html>" * 200, "cat.png")
    assert r.status_code == 415, r.text
    assert "text/html" in r.json()["error"]
    r = library.upload(b"%PDF-1.4 " + b"x" * 5000, "doc.jpg")
    assert r.status_code == 415
    r = library.upload(media.webp(), "named-wrong.txt")
    assert r.status_code == 201 and r.json()["mimeType"] == "image/webp"
    r = library.upload(b"", "empty.png")
    assert r.status_code == 400


@pytest.mark.parametrize("body,ctype,reason", [
    (b"not multipart", "text/plain", "multipart"),
    (b"--x\r\nbroken", "multipart/form-data", "Boundary"),
    (b"--x\r\nContent-Disposition: form-data; name=\"alt\"\r\n\r\nhi\r\n--x--\r\n", "multipart/form-data; boundary=x",
     "no file"),
])
def test_malformed_forms_are_400(library, body, ctype, reason):
    r = library.api("POST", "/api/v1/media/upload", data=body, headers={"Content-Type": ctype})
    assert r.status_code == 400, r.text
    assert reason in r.json()["error"]


def test_org_slug_must_be_the_keys(library):
    r = library.upload(JPEG, orgSlug="other-org")
    assert r.status_code == 403


def test_other_orgs_and_unknown_ids_are_404(library):
    m = library.upload(JPEG).json()
    for path in (f"/api/v1/media/{m['id']}", f"/api/v1/media/{m['id']}/variants"):
        assert library.api("GET", path, key=library.other_key).status_code == 404
        assert library.api("GET", path.replace(m["id"], "0" * 32)).status_code == 404
        assert library.api("GET", path.replace(m["id"], "../etc")).status_code == 404
    assert library.api("PATCH", f"/api/v1/media/{m['id']}", key=library.other_key, json={"alt": "x"}).status_code == 404
    assert library.api("DELETE", f"/api/v1/media/?id={m['id']}", key=library.other_key).status_code == 404
    q = {"objectKey": m["objectKey"], "bucket": "library"}
    assert library.api("GET", "/api/v1/media/variants/info", key=library.other_key, params=q).status_code == 404
    assert library.api("GET", "/api/v1/media/presign", key=library.other_key, params=q).status_code == 404
    assert library.api("GET", f"/api/v1/media/download/library/{m['objectKey']}",
                       key=library.other_key).status_code == 404
    r = library.api("POST", "/api/v1/media/batch", key=library.other_key, json={"ids": [m["id"]]})
    assert r.json()["items"] == []
    assert library.api("GET", f"/api/v1/media/{m['id']}").status_code == 200


def test_list_search_type_sort_paginate(library):
    tag = "lst" + str(id(library))[-6:]
    made = []
    for i, (data, name) in enumerate([(media.jpeg(40 + i, 30), f"{tag}-b.jpg") for i in range(3)]
                                      + [(media.png(20, 20), f"{tag}-a.png")]):
        r = library.upload(data, name, alt=f"n{i}")
        assert r.status_code == 201
        made.append(r.json())
    r = library.api("GET", "/api/v1/media/list", params={"search": tag, "sort": "filename", "order": "asc"})
    body = r.json()
    assert body["total"] == 4 and body["limit"] == 20 and body["offset"] == 0
    assert [m["filename"] for m in body["items"]] == sorted(m["filename"] for m in made)
    r = library.api("GET", "/api/v1/media/list", params={"search": tag, "type": "image/png"})
    assert [m["id"] for m in r.json()["items"]] == [made[3]["id"]]
    page = library.api("GET", "/api/v1/media/list", params={"search": tag, "limit": 2, "offset": 2,
                                                            "sort": "createdAt", "order": "desc"}).json()
    assert page["total"] == 4 and len(page["items"]) == 2
    assert library.api("GET", "/api/v1/media/list", params={"search": tag},
                       key=library.other_key).json()["total"] == 0
    for bad in ({"limit": 0}, {"limit": 101}, {"offset": -1}, {"sort": "password"}, {"order": "up"},
                {"limit": "ten"}, {"limit": "--5"}, {"offset": "²"}, {"search": "tab\there"}, {"search": "x" * 201}):
        r = library.api("GET", "/api/v1/media/list", params=bad)
        assert r.status_code == 400, bad
    # LIKE wildcards in the search are literal
    assert library.api("GET", "/api/v1/media/list", params={"search": "%"}).json()["total"] == 0



def test_list_search_is_a_case_insensitive_substring_kept_in_step(library):
    """The search matches substrings of filename, alt and caption, ignoring ASCII case, whatever its
    length (SQLite answers 3+ characters from the FTS5 trigram table, shorter ones by LIKE; PostgreSQL
    from pg_trgm), and follows patches, the org boundary and deletes (the index is kept in step)."""
    tag = "Sub" + str(id(library))[-6:]

    def found(search: str, key: str = "default") -> set[str]:
        body = library.api("GET", "/api/v1/media/list", key=key, params={"search": search, "limit": 100}).json()
        assert body["total"] == len(body["items"])
        return {m["id"] for m in body["items"]}

    a = library.upload(media.png(8, 8), f"{tag}-Alpha.png", alt="Quiet RIVER bank").json()
    b = library.upload(media.png(8, 8), "plain.png", caption=f"in the {tag.upper()}zone").json()
    mine = {a["id"], b["id"]}
    assert found(tag.lower()) == mine and found(tag.upper()) == mine
    assert found(tag[1:5].lower()) >= mine  # a substring from the middle
    assert a["id"] in found("river ba") and a["id"] in found("ALPHA.P")
    assert found(f"{tag}-alpha") == {a["id"]}
    # under three characters: no trigram can serve it, the answer is the same
    assert a["id"] in found("Ph") and a["id"] in found("q") and b["id"] in found("zO")
    # quotes and FTS syntax are literal text, never a query language
    assert found(f'"{tag}" OR NOT x') == set() and found(f"{tag}*") == set() and found(f"{tag} AND") == set()
    assert found(tag, key=library.other_key) == set()
    r = library.api("PATCH", f"/api/v1/media/{a['id']}", json={"alt": f"now {tag}xyzzy"})
    assert r.status_code == 200
    assert found(f"{tag}xyzzy") == {a["id"]} and a["id"] not in found("quiet river")
    assert library.api("DELETE", "/api/v1/media/", params={"id": b["id"]}).status_code == 200
    assert found(tag) == {a["id"]}

def test_batch(library):
    a, b = library.upload(JPEG).json(), library.upload(media.png()).json()
    r = library.api("POST", "/api/v1/media/batch", json={"ids": [b["id"], "0" * 32, a["id"]]})
    assert r.status_code == 200
    assert [m["id"] for m in r.json()["items"]] == [b["id"], a["id"]]
    assert r.json()["missing"] == ["0" * 32]
    r = library.api("POST", "/api/v1/media/batch", json={"ids": f"{a['id']},{b['id']}"})
    assert len(r.json()["items"]) == 2
    assert library.api("POST", "/api/v1/media/batch", json={"ids": ["x"] * 101}).status_code == 400
    assert library.api("POST", "/api/v1/media/batch", json={"ids": []}).status_code == 400
    r = library.api("POST", "/api/v1/media/batch", data=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]


def test_patch_changes_only_the_fields_given(library):
    m = library.upload(JPEG, alt="A", caption="C", description="D").json()
    r = library.api("PATCH", f"/api/v1/media/{m['id']}", json={"caption": "new"})
    assert r.status_code == 200
    p = r.json()
    assert (p["alt"], p["caption"], p["description"]) == ("A", "new", "D")
    assert library.api("PATCH", f"/api/v1/media/{m['id']}", json={"size": 1}).status_code == 400
    assert library.api("PATCH", f"/api/v1/media/{m['id']}", json={"alt": 5}).status_code == 400
    # a JSON list, null or number is not a boolean, nor a list an absent field: nothing changes
    for bad in ({"isPrivate": [None, None]}, {"isPrivate": []}, {"isPrivate": None}, {"isPrivate": 0},
                {"alt": [None, None]}, {"alt": []}):
        r = library.api("PATCH", f"/api/v1/media/{m['id']}", json=bad)
        assert r.status_code == 400 and r.json()["error"], bad
    assert library.api("GET", f"/api/v1/media/{m['id']}").json()["alt"] == "A"
    assert library.api("PATCH", f"/api/v1/media/{m['id']}", data=b"[1,",
                       headers={"Content-Type": "application/json"}).status_code == 400


def test_private_media_is_never_public(library):
    m = library.upload(JPEG, generateVariants=True).json()
    public_urls = [m["url"]] + [v["url"] for v in m["variants"]]
    assert all(requests.get(u, timeout=30).status_code == 200 for u in public_urls)
    r = library.api("PATCH", f"/api/v1/media/{m['id']}", json={"isPrivate": True})
    p = r.json()
    assert p["isPrivate"] is True and p["url"] is None and p["canonicalUri"] is None
    assert all(v["url"] is None for v in p["variants"])
    for u in public_urls + [u + "?w=10" for u in public_urls]:
        r = requests.get(u, timeout=30)
        assert r.status_code == 404, u
        assert "immutable" not in r.headers.get("Cache-Control", "")
    # with a key: streamed, with Range, and not for shared caches
    path = f"/api/v1/media/download/library/{m['objectKey']}"
    r = library.api("GET", path)
    assert r.status_code == 200 and r.content == JPEG
    assert r.headers["Cache-Control"].startswith("private")
    r = library.api("GET", path, headers={"Range": "bytes=0-9"})
    assert r.status_code == 206 and r.content == JPEG[:10]
    # a presigned URL works without a key
    r = library.api("GET", "/api/v1/media/presign", params={"objectKey": m["objectKey"], "expiry": 60})
    assert r.status_code == 200
    signed = r.json()["url"]
    r = requests.get(signed, timeout=30)
    assert r.status_code == 200 and r.content == JPEG
    assert "public" not in r.headers.get("Cache-Control", "")


def test_download_public_is_immutable(library):
    m = library.upload(JPEG).json()
    r = library.api("GET", f"/api/v1/media/download/library/{m['objectKey']}", headers={"Range": "bytes=5-"})
    assert r.status_code == 206 and r.content == JPEG[5:]
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert library.api("GET", "/api/v1/media/download/cdn/" + m["objectKey"]).status_code == 404
    assert library.api("GET", "/api/v1/media/download/library/acme/nothing").status_code == 404


def test_downloads_send_the_recorded_type_never_one_from_the_name(library):
    """GIF magic followed by a script, uploaded as `evil.html`: accepted as the GIF its bytes say it is,
    and every way to download it says image/gif, in a sandbox (no stored XSS on the media host)."""
    hostile = media.png(4, 4)  # a real image...
    m = library.upload(hostile, "evil.html").json()
    assert m["mimeType"] == "image/png" and m["objectKey"].endswith("evil.html")
    signed = library.api("GET", "/api/v1/media/presign", params={"objectKey": m["objectKey"], "expiry": 60}).json()
    for r in (library.api("GET", f"/api/v1/media/download/library/{m['objectKey']}"),
              requests.get(signed["url"], timeout=30)):
        assert r.status_code == 200 and r.content == hostile
        assert r.headers["Content-Type"] == "image/png"  # ...never text/html from the name
        if r.url.startswith(library.base):  # (S3's own presigned URLs are answered by S3, on its host)
            assert r.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
            assert r.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("expiry", ["0", "86401", "-5", "soon"])
def test_presign_expiry_bounds(library, expiry):
    m = library.upload(JPEG).json()
    r = library.api("GET", "/api/v1/media/presign", params={"objectKey": m["objectKey"], "expiry": expiry})
    assert r.status_code == 400


def test_local_presigned_urls_tampered_or_expired_are_403(library):
    if library.server.backend == "s3":
        pytest.skip("S3 checks its own signatures")
    m = library.upload(JPEG).json()
    url = library.api("GET", "/api/v1/media/presign", params={"objectKey": m["objectKey"], "expiry": 600}).json()["url"]
    assert requests.get(url, timeout=30).status_code == 200
    tampered = url.replace("signature=", "signature=0")
    assert requests.get(tampered, timeout=30).status_code == 403
    other = url.replace(m["objectKey"], m["objectKey"] + "x")
    assert requests.get(other, timeout=30).status_code == 403
    assert requests.get(url.split("?")[0], timeout=30).status_code == 403
    # digits that str.isdigit() takes and int() refuses are a 403 too, not a crash
    expires = url.split("expires=")[1].split("&")[0]
    assert requests.get(url.replace(f"expires={expires}", "expires=%C2%B2"), timeout=30).status_code == 403
    # and a signature that is not ASCII
    assert requests.get(url.split("signature=")[0] + "signature=%C3%A9", timeout=30).status_code == 403
    # expired: the same URL signed (as the server signs) for a moment a minute ago
    path = url.split("?")[0]
    bucket, key = path.split("/api/v1/media/signed/")[1].split("/", 1)

    def signed(expires_at: int) -> str:
        msg = f"GET\n{bucket}\n{key}\n{expires_at}".encode()
        sig = hmac.new(library.env["MEDIAPROXY_SECRET_KEY"].encode(), msg, hashlib.sha256).hexdigest()
        return f"{path}?expires={expires_at}&signature={sig}"

    assert requests.get(signed(int(time.time()) + 60), timeout=30).status_code == 200  # signed as the server does
    r = requests.get(signed(int(time.time()) - 60), timeout=30)
    assert r.status_code == 403 and "expired" in r.json()["error"]


def test_crop_moves_the_pointer(library):
    src = media.gradient(400, 200).pngsave_buffer()
    m = library.upload(src, "g.png", generateVariants=True).json()
    old_key, old_url = m["objectKey"], m["url"]
    r = library.api("POST", "/api/v1/media/crop", json={"objectKey": old_key, "bucketName": "library", "x": 200,
                                                        "y": 0, "width": 200, "height": 100, "format": "png",
                                                        "regenerateVariants": True})
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["id"] == m["id"] and c["objectKey"] != old_key
    assert (c["width"], c["height"]) == (200, 100) and c["mimeType"] == "image/png"
    assert len(c["variants"]) == 5
    body = requests.get(c["url"], timeout=30).content
    r0, g0, _ = media.pixel(body, 0, 0)
    assert r0 > 120 and g0 < 10  # the right half of the gradient
    assert requests.get(old_url, timeout=30).status_code == 404
    assert old_key not in library.stored_keys(f"acme/{m['id']}/")
    assert all(k.startswith(c["objectKey"].rsplit("/", 1)[0]) for k in library.stored_keys(f"acme/{m['id']}/"))
    # rotate and scale, to WebP
    r = library.api("POST", "/api/v1/media/crop", json={"id": m["id"], "x": 0, "y": 0, "width": 200, "height": 100,
                                                        "rotate": 90, "scale": 0.5, "format": "webp",
                                                        "quality": 70})
    c2 = r.json()
    assert (c2["width"], c2["height"], c2["mimeType"]) == (50, 100, "image/webp")


@pytest.mark.parametrize("bad", [
    {"x": 0, "y": 0, "width": 1000, "height": 10},
    {"x": 0, "y": 0, "width": 10},
    {"x": 0, "y": 0, "width": 10, "height": 10, "rotate": 45},
    {"x": 0, "y": 0, "width": 10, "height": 10, "format": "gif"},
    {"x": -1, "y": 0, "width": 10, "height": 10},
    {"x": 0, "y": 0, "width": 10, "height": 10, "scale": "nan"},
])
def test_crop_bad_input_is_400(library, bad):
    m = library.upload(JPEG).json()
    r = library.api("POST", "/api/v1/media/crop", json={"objectKey": m["objectKey"], **bad})
    assert r.status_code == 400, r.text
    assert library.api("GET", f"/api/v1/media/{m['id']}").json()["objectKey"] == m["objectKey"]


def test_crop_async(library):
    m = library.upload(JPEG).json()
    r = library.api("POST", "/api/v1/media/crop", json={"objectKey": m["objectKey"], "x": 10, "y": 10, "width": 100,
                                                        "height": 50, "async": True})
    assert r.status_code == 202
    job = library.wait_job(r.json()["jobId"])
    assert job["state"] == "completed", job
    got = library.api("GET", f"/api/v1/media/{m['id']}").json()
    assert (got["width"], got["height"]) == (100, 50) and got["objectKey"] == job["result"]["objectKey"]


def test_failed_job_says_why(library):
    m = library.upload(JPEG).json()
    r = library.api("POST", "/api/v1/media/crop", json={"objectKey": m["objectKey"], "x": 600, "y": 0, "width": 100,
                                                        "height": 50, "async": True})
    job = library.wait_job(r.json()["jobId"])
    assert job["state"] == "failed" and "outside" in job["failedReason"]
    assert library.api("GET", f"/api/v1/media/job/{job['jobId']}", key=library.other_key).status_code == 404
    assert library.api("GET", "/api/v1/media/job/nope").status_code == 404


def test_regenerate_variants_and_info_and_redirect(library):
    m = library.upload(JPEG).json()
    assert m["variants"] == []
    r = library.api("POST", "/api/v1/media/variants", json={"objectKey": m["objectKey"], "bucketName": "library"})
    assert r.status_code == 202
    assert library.wait_job(r.json()["jobId"])["state"] == "completed"
    info = library.api("GET", "/api/v1/media/variants/info", params={"objectKey": m["objectKey"],
                                                                     "bucket": "library"}).json()
    assert {v["name"] for v in info["variants"]} == {"thumbnail", "small", "medium", "large", "original_webp"}
    folder = m["objectKey"].rsplit("/", 1)[0]
    r = library.api("GET", f"/api/v1/media/variant/library/medium/{folder}", allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"] == next(v["url"] for v in info["variants"] if v["name"] == "medium")
    assert library.api("GET", f"/api/v1/media/variant/library/huge/{folder}", allow_redirects=False).status_code == 404
    assert library.api("GET", f"/api/v1/media/variant/library/medium/{folder}", key=library.other_key,
                       allow_redirects=False).status_code == 404


def test_delete_by_id_and_by_key(library):
    m = library.upload(JPEG, generateVariants=True).json()
    prefix = f"acme/{m['id']}/"
    assert len(library.stored_keys(prefix)) == 6
    r = library.api("DELETE", "/api/v1/media/", params={"id": m["id"]})
    assert r.status_code == 200 and r.json()["deleted"] is True
    assert library.stored_keys(prefix) == []
    assert requests.get(m["url"], timeout=30).status_code == 404
    assert library.api("GET", f"/api/v1/media/{m['id']}").status_code == 404
    m2 = library.upload(media.png(), "p.png", generateVariants=True).json()
    r = library.api("DELETE", "/api/v1/media/", json={"objectKey": m2["objectKey"], "bucketName": "library"})
    assert r.status_code == 200
    assert library.stored_keys(f"acme/{m2['id']}/") == []
    assert library.api("DELETE", "/api/v1/media/", json={}).status_code == 400


def test_identical_uploads_share_the_canonical_uri(library):
    data = media.jpeg(123, 77)
    a, b = library.upload(data, "one.jpg").json(), library.upload(data, "two.jpg").json()
    assert a["objectKey"] != b["objectKey"]  # the /api/v1 API: each upload keeps its own folder
    assert a["canonicalUri"] == b["canonicalUri"] and a["canonicalUri"].endswith("/sha256/" + __import__(
        "hashlib").sha256(data).hexdigest())
    r = requests.get(a["canonicalUri"], timeout=30)
    assert r.status_code == 200 and r.content == data
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    library.api("DELETE", "/api/v1/media/", params={"id": a["id"]})
    assert requests.get(b["canonicalUri"], timeout=30).content == data  # still b's
    library.api("PATCH", f"/api/v1/media/{b['id']}", json={"isPrivate": True})
    assert requests.get(b["canonicalUri"], timeout=30).status_code == 404


def test_presigned_upload_flow(library):
    png = media.png(64, 48)
    r = library.api("POST", "/api/v1/media/upload/presigned", json={"orgSlug": "acme", "filename": "up.png",
                                                                    "mimeType": "image/png"})
    assert r.status_code == 201, r.text
    p = r.json()
    assert p["method"] == "PUT" and p["expiresAt"] and p["objectKey"].endswith("/up.png")
    r = requests.put(p["uploadUrl"], data=png, headers=p["headers"], timeout=30)
    assert r.status_code == 200, r.text
    r = library.api("POST", "/api/v1/media/variants", json={"objectKey": p["objectKey"], "bucketName": "library"})
    assert r.status_code == 202, r.text
    assert library.wait_job(r.json()["jobId"])["state"] == "completed"
    m = library.api("GET", f"/api/v1/media/{p['id']}").json()
    assert m["status"] == "ready" and (m["width"], m["height"]) == (64, 48) and len(m["variants"]) == 5
    assert requests.get(m["url"], timeout=30).content == png
    r = library.api("POST", "/api/v1/media/upload/presigned", json={"filename": "x.svg", "mimeType": "image/svg+xml"})
    assert r.status_code == 415
    r = library.api("POST", "/api/v1/media/upload/presigned", json={"mimeType": "image/png"})
    assert r.status_code == 400
    r = library.api("POST", "/api/v1/media/upload/presigned", json={"filename": "big.png", "mimeType": "image/png",
                                                                    "size": 10**12})
    assert r.status_code == 413
    r = library.api("POST", "/api/v1/media/upload/presigned", json={"filename": "s.png", "mimeType": "image/png",
                                                                    "size": 1234})
    assert r.status_code == 201 and r.json()["headers"]["Content-Length"] == "1234"
    if library.server.backend == "s3":  # moto does not check signatures: the URL says what S3 would check
        assert "content-length" in r.json()["uploadUrl"].split("X-Amz-SignedHeaders=")[1].split("&")[0]


def test_local_presigned_put_checks_bytes_and_size(library):
    if library.server.backend == "s3":
        pytest.skip("the PUT goes to S3 itself")
    p = library.api("POST", "/api/v1/media/upload/presigned",
                    json={"filename": "a.png", "mimeType": "image/png"}).json()
    assert requests.put(p["uploadUrl"], data=b"<svg onload=alert(1)>" * 10, headers=p["headers"],
                        timeout=30).status_code == 415
    assert requests.put(p["uploadUrl"], data=b"\x89PNG\r\n\x1a\n" + b"\0" * (4 * 1024**2), headers=p["headers"],
                        timeout=30).status_code == 413
    assert requests.put(p["uploadUrl"].replace("signature=", "signature=1"), data=media.png(),
                        timeout=30).status_code == 403
    assert library.stored_keys(p["objectKey"]) == []
    assert requests.put(p["uploadUrl"], data=media.png(), headers=p["headers"], timeout=30).status_code == 200
    # objects never change under a key: the URL is spent
    assert requests.put(p["uploadUrl"], data=media.png(20, 20), headers=p["headers"], timeout=30).status_code == 403
    # with `size`, the URL takes exactly that many bytes (the length is signed, as S3 signs Content-Length)
    png = media.png(12, 12)
    p = library.api("POST", "/api/v1/media/upload/presigned",
                    json={"filename": "b.png", "mimeType": "image/png", "size": len(png)}).json()
    assert p["headers"]["Content-Length"] == str(len(png)) and f"size={len(png)}" in p["uploadUrl"]
    assert requests.put(p["uploadUrl"], data=png + b"\0", headers={"Content-Type": "image/png"},
                        timeout=30).status_code == 403
    assert requests.put(p["uploadUrl"], data=png, headers=p["headers"], timeout=30).status_code == 200


def test_an_upload_named_like_a_variant_keeps_its_original(library):
    """``small.webp`` is also where the ``small`` variant is stored in the version's folder: the
    original is stored beside it under another name (the record keeps the file's), never overwritten."""
    webp = pyvips.Image.new_from_buffer(media.jpeg(900, 600), "").webpsave_buffer(Q=90)
    r = library.upload(webp, "small.webp", generateVariants=True)
    assert r.status_code == 201, r.text
    m = r.json()
    assert m["filename"] == "small.webp" and m["objectKey"].endswith("/original-small.webp")
    original = pyvips.Image.new_from_buffer(requests.get(m["url"], timeout=30).content, "")
    assert (original.width, original.height) == (900, 600)
    small = next(v for v in m["variants"] if v["name"] == "small")
    assert small["objectKey"].endswith("/small.webp") and small["width"] == 320
    got = pyvips.Image.new_from_buffer(requests.get(small["url"], timeout=30).content, "")
    assert got.width == 320

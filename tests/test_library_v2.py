"""The /v2 image service over real HTTP (gunicorn + worker; local/S3 storage, SQLite/PostgreSQL, huey on
SQLite/Redis): images, privacy and the fallback image, share links, avatars, albums and their
tokens, the client's status and statistics, and the abuse cases of each."""

from __future__ import annotations

import time

import pytest

from . import media

V2 = "/v2"


def img(width=320, height=200, colour=(200, 30, 60)) -> bytes:
    return media.bands(width, height, [colour, (20, 120, 220)]).pngsave_buffer()


def upload(library, data: bytes | None = None, user: str | None = "alice", key="default", tags=(),
           filename="photo.png", **fields):
    form = [("file", (filename, data if data is not None else img(), "application/octet-stream"))]
    for t in tags:
        form.append(("tags[]", (None, t)))
    for k, v in fields.items():
        form.append((k, (None, str(v).lower() if isinstance(v, bool) else str(v))))
    headers = {"X-User-Id": user} if user else {}
    return library.api("POST", f"{V2}/images", key=key, files=form, headers=headers)


def created(library, **kw) -> dict:
    r = upload(library, **kw)
    assert r.status_code == 201, r.text
    return r.json()


def get(library, image_id: str, user: str | None = None, key: str | None = None, **params):
    headers = {"X-User-Id": user} if user else {}
    return library.api("GET", f"{V2}/images/{image_id}", key=key, headers=headers, params=params)


def fallback(library) -> bytes:
    r = get(library, "0" * 32)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/webp"
    return r.content


def is_fallback(library, r) -> bool:
    return (r.status_code == 200 and r.content == fallback(library)
            and r.headers["Cache-Control"] == "private, no-store")


def test_upload_serve_resize_and_info(library):
    data = img(640, 400)
    m = created(library, data=data, tags=["Sunset", "beach", "sunset"], description="at the sea")
    assert m["mimeType"] == "image/png" and (m["width"], m["height"]) == (640, 400)
    assert m["tags"] == ["beach", "sunset"] and m["description"] == "at the sea" and m["userId"] == "alice"
    assert m["isPrivate"] is False and m["url"] and m["imageUrl"].endswith(f"/v2/images/{m['id']}")
    r = get(library, m["id"])  # no key: a public image can sit in an <img>
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/webp", r.text
    assert media.decode(r.content).width == 640
    assert r.headers["Cache-Control"] == "public, no-cache" and r.headers["ETag"]
    again = library.api("GET", f"{V2}/images/{m['id']}", key=None, headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304
    r = get(library, m["id"], w=256, t=12345)
    assert r.status_code == 200 and media.decode(r.content).width == 256 and r.headers["X-Cache"] == "MISS"
    assert get(library, m["id"], w=256, t=999).headers["X-Cache"] == "HIT"  # t busts caches, not ours
    r = get(library, m["id"], w=100, h=100, format="jpeg", q=70)
    assert r.headers["Content-Type"] == "image/jpeg" and media.decode(r.content).width in (99, 100)  # inside 100²
    r = get(library, m["id"], thumb="true")
    t = media.decode(r.content)
    assert (t.width, t.height) == (256, 256)
    info = get(library, m["id"], key=library.key, info="true")
    assert info.status_code == 200 and info.json()["id"] == m["id"] and info.json()["tags"] == ["beach", "sunset"]
    assert info.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("params", [{"w": "0"}, {"w": "abc"}, {"h": "99999"}, {"q": "101"},
                                    {"format": "bmp"}, {"thumb": "maybe"}])
def test_malformed_parameters_are_400(library, params):
    m = created(library)
    r = get(library, m["id"], **params)
    assert r.status_code == 400 and "error" in r.json()
    assert get(library, "0" * 32, **params).status_code == 400  # whatever the image


def test_private_images_show_only_to_their_owner_or_a_token(library):
    a = created(library, isPrivate=True, user="alice")
    b = created(library, data=img(100, 80, (0, 255, 0)), isPrivate=True, user="bob")
    assert a["isPrivate"] and a["url"] is None and a["canonicalUri"] is None
    assert all(v["url"] is None for v in a["variants"])
    own = get(library, a["id"], user="alice", key=library.key, w=64)
    assert own.status_code == 200 and media.decode(own.content).width == 64
    assert own.headers["Cache-Control"] == "private, no-cache"
    fb = fallback(library)
    forbidden = [get(library, a["id"]),  # no key, no user
                 get(library, a["id"], user="alice"),  # a user without the client's key proves nothing
                 get(library, a["id"], user="bob", key=library.key),
                 get(library, a["id"], user="alice", key=library.other_key),
                 get(library, b["id"], user="alice", key=library.key, w=64),
                 get(library, a["id"], token="not-a-token"),
                 get(library, "f" * 32), get(library, "not-an-id%00"), get(library, "A" * 300)]
    for r in forbidden:
        assert r.status_code == 200 and r.content == fb, r.text
        assert r.headers["Cache-Control"] == "private, no-store" and "ETag" not in r.headers
    assert get(library, a["id"], key="mpk_000000000000_" + "x" * 43).status_code == 401  # a wrong key is 401
    # JSON: another user or client sees 404, like a missing id
    assert get(library, a["id"], user="bob", key=library.key, info="true").status_code == 404
    assert get(library, a["id"], user="alice", key=library.other_key, info="true").status_code == 404
    assert get(library, a["id"], info="true").status_code == 401
    # no other URL shows it: the origin's public URL of the object, its canonical address
    assert library.api("GET", f"/library/{a['objectKey']}", key=None).status_code == 404
    # lists: a private image is listed to its owner only
    ids = {i["id"] for i in library.api("GET", f"{V2}/images", headers={"X-User-Id": "bob"},
                                        params={"limit": 100}).json()["items"]}
    assert a["id"] not in ids and b["id"] in ids


def test_share_links_expire_and_are_revoked(library):
    a = created(library, isPrivate=True, user="alice")
    r = library.api("POST", f"{V2}/images/{a['id']}/share", headers={"X-User-Id": "bob"}, json={})
    assert r.status_code == 404  # only the owner shares
    r = library.api("POST", f"{V2}/images/{a['id']}/share", headers={"X-User-Id": "alice"}, json={"expiresIn": 600})
    assert r.status_code == 201, r.text
    share = r.json()
    token = share["token"]
    assert share["url"].endswith(f"/v2/images/share/{token}") and share["expiresAt"]
    r = library.api("GET", f"{V2}/images/share/{token}", key=None, params={"w": 50})
    assert r.status_code == 200 and media.decode(r.content).width == 50
    assert r.headers["Cache-Control"] == "private, no-store"
    assert get(library, a["id"], token=token).content != fallback(library)
    # a token of one image opens no other
    b = created(library, isPrivate=True, user="alice")
    assert is_fallback(library, get(library, b["id"], token=token))
    # revoked: the fallback everywhere
    r = library.api("DELETE", f"{V2}/images/{a['id']}/share/{token}", headers={"X-User-Id": "alice"})
    assert r.status_code == 204
    assert is_fallback(library, library.api("GET", f"{V2}/images/share/{token}", key=None))
    assert is_fallback(library, get(library, a["id"], token=token))
    assert library.api("DELETE", f"{V2}/images/{a['id']}/share/nope", headers={"X-User-Id": "alice"}).status_code == 404
    # expired
    short = library.api("POST", f"{V2}/images/{a['id']}/share", headers={"X-User-Id": "alice"},
                        json={"expiresIn": 60}).json()["token"]
    assert library.api("GET", f"{V2}/images/share/{short}", key=None, params={"w": 50}).status_code == 200
    library.expire_share_token(short)
    assert is_fallback(library, library.api("GET", f"{V2}/images/share/{short}", key=None))
    for bad in ({"expiresIn": 0}, {"expiresIn": "soon"}, {"expiresIn": 10**10}):
        r = library.api("POST", f"{V2}/images/{a['id']}/share", headers={"X-User-Id": "alice"}, json=bad)
        assert r.status_code == 400, bad


def test_list_filters_and_pages(library):
    owner = f"lister-{time.monotonic_ns()}"
    made = [created(library, user=owner, tags=["red" if i % 2 else "blue"]) for i in range(5)]
    hidden = created(library, user=owner, tags=["red"], isPrivate=True)
    base = {"userId": owner}
    r = library.api("GET", f"{V2}/images", params={**base, "limit": 2}).json()
    assert r["total"] == 5 and len(r["items"]) == 2 and r["limit"] == 2 and r["offset"] == 0
    page3 = library.api("GET", f"{V2}/images", params={**base, "limit": 2, "page": 3}).json()
    assert len(page3["items"]) == 1 and page3["offset"] == 4
    seen = {i["id"] for o in (0, 2, 4) for i in library.api("GET", f"{V2}/images",
                                                            params={**base, "limit": 2, "offset": o}).json()["items"]}
    assert seen == {m["id"] for m in made}
    red = library.api("GET", f"{V2}/images", params={**base, "tag": "RED"}).json()
    assert red["total"] == 2
    mine = library.api("GET", f"{V2}/images", headers={"X-User-Id": owner},
                       params={**base, "tag": "red", "isPrivate": "true"}).json()
    assert [i["id"] for i in mine["items"]] == [hidden["id"]]
    assert library.api("GET", f"{V2}/images", params={**base, "from": "2999-01-01"}).json()["total"] == 0
    assert library.api("GET", f"{V2}/images", params={**base, "to": "2999-01-01T00:00:00Z"}).json()["total"] == 5
    assert library.api("GET", f"{V2}/images", key=library.other_key, params=base).json()["total"] == 0
    for bad in ({"limit": 0}, {"limit": 1000}, {"offset": -1}, {"from": "yesterday"}, {"isPrivate": "perhaps"}):
        r = library.api("GET", f"{V2}/images", params=bad)
        assert r.status_code == 400 and r.json()["error"], bad


def test_patch_and_delete(library):
    m = created(library, tags=["a"])
    r = library.api("PATCH", f"{V2}/images/{m['id']}", headers={"X-User-Id": "alice"},
                    json={"tags": ["b", "c"], "description": "new", "isPrivate": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tags"] == ["b", "c"] and body["description"] == "new" and body["isPrivate"] and body["url"] is None
    assert is_fallback(library, get(library, m["id"]))  # the result cache does not outlive the privacy change
    assert library.api("GET", f"/library/{m['objectKey']}", key=None).status_code == 404
    for bad in ({"isPrivate": "yes"}, {"tags": "x" * 100}, {"tags": [1]}, {"owner": "mallory"},
                {"description": 5}):
        r = library.api("PATCH", f"{V2}/images/{m['id']}", headers={"X-User-Id": "alice"}, json=bad)
        assert r.status_code == 400, bad
    r = library.api("PATCH", f"{V2}/images/{m['id']}", headers={"X-User-Id": "alice"}, data=b"{not json",
                    )
    assert r.status_code == 400
    assert library.api("PATCH", f"{V2}/images/{m['id']}", headers={"X-User-Id": "bob"},
                       json={"isPrivate": False}).status_code == 404
    assert library.api("PATCH", f"{V2}/images/{m['id']}", key=library.other_key, headers={"X-User-Id": "alice"},
                       json={"isPrivate": False}).status_code == 404
    assert library.api("DELETE", f"{V2}/images/{m['id']}", key=library.other_key,
                       headers={"X-User-Id": "alice"}).status_code == 404
    prefix = m["objectKey"].rsplit("/", 2)[0] + "/"
    assert library.stored_keys(prefix)
    assert library.api("DELETE", f"{V2}/images/{m['id']}", headers={"X-User-Id": "alice"}).status_code == 204
    assert library.stored_keys(prefix) == []
    assert get(library, m["id"], key=library.key, user="alice", info="true").status_code == 404
    assert is_fallback(library, get(library, m["id"], key=library.key, user="alice"))
    assert library.api("DELETE", f"{V2}/images/{m['id']}", headers={"X-User-Id": "alice"}).status_code == 404


def test_bad_uploads(library):
    before = library.api("GET", f"{V2}/client/stats").json()
    assert upload(library, key=None).status_code == 401
    assert upload(library, key="mpk_000000000000_" + "x" * 43).status_code == 401
    big = media.png(16, 16) + b"\0" * (4 * 1024**2)
    r = upload(library, data=big, filename="huge.png")
    assert r.status_code == 413 and "limit" in r.json()["error"]
    r = upload(library, data=b"<html>" * 1000, filename="x.png")
    assert r.status_code == 415
    assert upload(library, user=None, isPrivate=True).status_code == 400  # a private image needs its owner
    assert upload(library, tags=["x" * 65]).status_code == 400
    assert upload(library, albumId="0" * 32).status_code == 404
    assert upload(library, isPrivate="perhaps").status_code == 400
    r = library.api("POST", f"{V2}/images", data=b"file=1",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400
    r = library.api("POST", f"{V2}/images", files={"description": (None, "no file")})
    assert r.status_code == 400
    after = library.api("GET", f"{V2}/client/stats").json()
    assert after["images"] == before["images"] and after["imageBytes"] == before["imageBytes"]
    assert all(not k.endswith(("huge.png", "x.png")) for k in library.stored_keys("acme/"))


def test_placeholders_by_the_worker(library):
    m = created(library)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = get(library, m["id"], key=library.key, info="true").json()
        if info["blurHash"]:
            break
        time.sleep(0.1)
    assert info["blurHash"] and info["thumbHash"]


# -- avatars ------------------------------------------------------------------------------------

def put_avatar(library, user: str, data: bytes, key="default"):
    return library.api("POST", f"{V2}/avatars", key=key,
                       files={"file": ("me.png", data, "image/png"), "externalUserId": (None, user)})


def test_avatars_one_per_user(library):
    user = f"user-{time.monotonic_ns()}"
    r = put_avatar(library, user, img(300, 300, (255, 0, 0)))
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["externalUserId"] == user and first["url"].endswith(f"/v2/avatars/{user}")
    g = library.api("GET", f"{V2}/avatars/{user}", params={"w": 64})
    assert g.status_code == 200 and g.headers["Content-Type"] == "image/webp"
    assert media.decode(g.content).width == 64
    assert g.headers["Cache-Control"] == "private, max-age=60, must-revalidate"
    etag = g.headers["ETag"]
    assert library.api("GET", f"{V2}/avatars/{user}", params={"w": 64},
                       headers={"If-None-Match": etag}).status_code == 304
    # replaced: the stable URL answers the new one at once (the ETag changes), the old bytes are gone
    second = put_avatar(library, user, img(300, 300, (0, 0, 255))).json()
    assert second["id"] != first["id"]
    g2 = library.api("GET", f"{V2}/avatars/{user}", params={"w": 64}, headers={"If-None-Match": etag})
    assert g2.status_code == 200 and g2.headers["ETag"] != etag
    assert media.pixel(g2.content, 5, 5)[2] > 200
    old_prefix = first["versionedUrl"].split("/library/", 1)[1].rsplit("/", 2)[0] + "/"
    assert library.stored_keys(old_prefix) == []
    info = library.api("GET", f"{V2}/avatars/{user}", params={"info": "true"}).json()
    assert info["id"] == second["id"]
    # another client sees none; then delete
    assert library.api("GET", f"{V2}/avatars/{user}", key=library.other_key).status_code == 404
    assert library.api("DELETE", f"{V2}/avatars/{user}", key=library.other_key).status_code == 404
    assert library.api("DELETE", f"{V2}/avatars/{user}").status_code == 204
    assert library.api("GET", f"{V2}/avatars/{user}").status_code == 404
    assert library.api("GET", f"{V2}/avatars/{user}", key=None).status_code == 401


def test_avatar_abuse(library):
    assert put_avatar(library, "", img()).status_code == 400
    r = library.api("POST", f"{V2}/avatars", files={"file": ("me.png", img(), "image/png")})
    assert r.status_code == 400
    r = put_avatar(library, "huge", media.png(16, 16) + b"\0" * (4 * 1024**2))
    assert r.status_code == 413
    assert library.api("GET", f"{V2}/avatars/huge").status_code == 404


# -- albums -------------------------------------------------------------------------------------

def album_api(library, method, path="", user="alice", key="default", **kw):
    headers = {"X-User-Id": user} if user else {}
    return library.api(method, f"{V2}/albums{path}", key=key, headers=headers, **kw)


def test_albums(library):
    assert album_api(library, "POST", user=None, json={"name": "x"}).status_code == 400
    for bad in ({}, {"name": ""}, {"name": 5}, {"name": "x", "isPublic": "yes"}, {"name": "x", "extra": 1}):
        assert album_api(library, "POST", json=bad).status_code == 400, bad
    r = album_api(library, "POST", json={"name": "Trip", "description": "d", "albumId": "ext-1"})
    assert r.status_code == 201, r.text
    al = r.json()
    assert al["name"] == "Trip" and al["isPublic"] is False and al["albumId"] == "ext-1" and al["imageCount"] == 0
    aid = al["id"]
    assert album_api(library, "GET", f"/{aid}").json()["name"] == "Trip"
    assert album_api(library, "GET", f"/{aid}", user="bob").status_code == 404
    assert album_api(library, "GET", f"/{aid}", key=library.other_key).status_code == 404
    assert album_api(library, "PATCH", f"/{aid}", user="bob", json={"name": "mine"}).status_code == 404
    r = album_api(library, "PATCH", f"/{aid}", json={"name": "Trip 2"})
    assert r.status_code == 200 and r.json()["name"] == "Trip 2"
    # images: the owner's (private ones too) and public ones; never another user's private one
    mine = created(library, user="alice", isPrivate=True)
    pub = created(library, user="carol")
    theirs = created(library, user="bob", isPrivate=True)
    r = album_api(library, "POST", f"/{aid}/images", json={"imageIds": [mine["id"], pub["id"]]})
    assert r.status_code == 200 and r.json()["added"] == 2 and r.json()["album"]["imageCount"] == 2
    assert album_api(library, "POST", f"/{aid}/images", json={"imageIds": [theirs["id"]]}).status_code == 404
    assert album_api(library, "POST", f"/{aid}/images", json={"imageIds": ["0" * 32]}).status_code == 404
    assert album_api(library, "POST", f"/{aid}/images", json={"imageIds": []}).status_code == 400
    listed = album_api(library, "GET", f"/{aid}/images").json()
    assert {i["id"] for i in listed["items"]} == {mine["id"], pub["id"]} and listed["total"] == 2
    assert {i["id"] for i in library.api("GET", f"{V2}/images", headers={"X-User-Id": "alice"},
                                         params={"albumId": aid}).json()["items"]} == {mine["id"], pub["id"]}
    # an access token lets another user see the private album and its images; revoked: 404 / fallback
    r = album_api(library, "POST", f"/{aid}/tokens", json={"expiresIn": 600})
    assert r.status_code == 201
    token = r.json()["token"]
    assert album_api(library, "POST", f"/{aid}/tokens", user="bob", json={}).status_code == 404
    assert album_api(library, "GET", f"/{aid}", user="bob", params={"token": token}).status_code == 200
    seen = album_api(library, "GET", f"/{aid}/images", user="bob", params={"token": token}).json()
    assert {i["id"] for i in seen["items"]} == {mine["id"], pub["id"]}
    assert not is_fallback(library, get(library, mine["id"], token=token))
    assert is_fallback(library, get(library, theirs["id"], token=token))
    assert album_api(library, "DELETE", f"/{aid}/tokens/{token}", user="bob").status_code == 404
    assert album_api(library, "DELETE", f"/{aid}/tokens/{token}").status_code == 204
    assert album_api(library, "GET", f"/{aid}", user="bob", params={"token": token}).status_code == 404
    assert is_fallback(library, get(library, mine["id"], token=token))
    # public albums are seen by every user of the client, without their owner's private images
    album_api(library, "PATCH", f"/{aid}", json={"isPublic": True})
    seen = album_api(library, "GET", f"/{aid}/images", user="bob").json()
    assert {i["id"] for i in seen["items"]} == {pub["id"]}
    r = album_api(library, "DELETE", f"/{aid}/images", json={"imageIds": [pub["id"]]})
    assert r.json()["removed"] == 1
    lst = album_api(library, "GET", params={"limit": 100}).json()
    assert aid in {a["id"] for a in lst["items"]}
    assert album_api(library, "GET", params={"limit": 0}).status_code == 400
    assert album_api(library, "DELETE", f"/{aid}", user="bob").status_code == 404
    assert album_api(library, "DELETE", f"/{aid}").status_code == 204
    assert album_api(library, "GET", f"/{aid}").status_code == 404
    assert get(library, mine["id"], key=library.key, user="alice", info="true").status_code == 200  # images stay


def test_album_token_expires(library):
    aid = album_api(library, "POST", json={"name": "soon"}).json()["id"]
    token = album_api(library, "POST", f"/{aid}/tokens", json={"expiresIn": 60}).json()["token"]
    assert album_api(library, "GET", f"/{aid}", user="bob", params={"token": token}).status_code == 200
    library.expire_share_token(token)
    assert album_api(library, "GET", f"/{aid}", user="bob", params={"token": token}).status_code == 404


# -- client -------------------------------------------------------------------------------------

def test_status_and_stats(library):
    r = library.api("GET", f"{V2}/status")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["client"]["slug"] == "acme"
    assert library.api("GET", f"{V2}/status", key=None).status_code == 401
    assert library.api("GET", f"{V2}/status", headers={"Authorization": f"Bearer {library.key}"},
                       key=None).status_code == 401  # the /v2 client key is X-API-Key only
    before = library.api("GET", f"{V2}/client/stats", key=library.other_key).json()
    m = created(library, key=library.other_key, data=img(50, 50))
    put_avatar(library, "stats-user", img(40, 40), key=library.other_key)
    album_api(library, "POST", key=library.other_key, json={"name": "s"})
    after = library.api("GET", f"{V2}/client/stats", key=library.other_key).json()
    assert after["client"]["slug"] == "other-org"
    assert after["images"] == before["images"] + 1 and after["imageBytes"] == before["imageBytes"] + m["size"]
    assert after["albums"] == before["albums"] + 1
    assert after["avatars"] == before["avatars"] + (0 if before["avatars"] else 1)


def test_concurrent_avatar_replacement_leaves_one(library):
    from concurrent.futures import ThreadPoolExecutor

    user = f"race-{time.monotonic_ns()}"
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: put_avatar(library, user, img(60, 60, (i * 40, 0, 0))), range(4)))
    codes = [r.status_code for r in answers]
    assert all(c in (201, 503) for c in codes) and 201 in codes, [r.text for r in answers]
    info = library.api("GET", f"{V2}/avatars/{user}", params={"info": "true"})
    assert info.status_code == 200
    made = [r.json()["id"] for r in answers if r.status_code == 201]
    assert info.json()["id"] in made
    for mid in made:  # every replaced one is gone from storage; only the one pointed at is left
        assert bool(library.stored_keys(f"acme/{mid}/")) == (mid == info.json()["id"])


def test_what_the_document_calls_invalid_is_refused_even_where_unused(library):
    """An over-long X-User-Id where the end user is optional, a token or an externalUserId the request
    does not come to use, a JSON null or list where the document wants a value: 400, nothing stored."""
    m = created(library)
    long_user = {"X-User-Id": "u" * 256}
    assert get(library, m["id"], key="default").status_code == 200
    for method, path, kw in (("GET", f"{V2}/images/{m['id']}", {}),
                             ("PATCH", f"{V2}/images/{m['id']}", {"json": {"description": "x"}}),
                             ("POST", f"{V2}/images/{m['id']}/share", {"json": {}})):
        r = library.api(method, path, headers=long_user, **kw)
        assert r.status_code == 400 and "X-User-Id" in r.json()["error"], (method, path)
    for path in (f"{V2}/images", f"{V2}/images/{m['id']}"):  # a public image needs no token
        r = library.api("GET", path, params={"token": "t" * 129})
        assert r.status_code == 400 and "token" in r.json()["error"], path
    r = library.api("POST", f"{V2}/images/{m['id']}/share", headers={"X-User-Id": "alice"}, json={"expiresIn": None})
    assert r.status_code == 400 and "expiresIn" in r.json()["error"]
    r = library.api("PATCH", f"{V2}/images/{m['id']}", headers={"X-User-Id": "alice"},
                    json={"description": [None, None]})
    assert r.status_code == 400 and "description" in r.json()["error"]
    r = library.api("POST", f"{V2}/albums", headers={"X-User-Id": "alice"}, json={"name": "a", "description": []})
    assert r.status_code == 400 and "description" in r.json()["error"]
    before = library.api("GET", f"{V2}/images").json()["total"]
    r = upload(library, externalUserId="e" * 256)
    assert r.status_code == 400 and "externalUserId" in r.json()["error"]
    assert library.api("GET", f"{V2}/images").json()["total"] == before


@pytest.mark.parametrize("value, private", [("1", True), ("TRUE", True), ("0", False), ("False", False)])
def test_form_booleans_read_as_documented(library, value, private):
    r = upload(library, isPrivate=value)
    assert r.status_code == 201 and r.json()["isPrivate"] is private, r.text

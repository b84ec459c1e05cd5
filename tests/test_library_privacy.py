"""Privacy over real HTTP (gunicorn + worker on each library stack): what an album's token may
show is decided at the moment of each request, with the album owner's eyes; a record's privacy
holds on every public spelling of its bytes, whichever other records share them."""

from __future__ import annotations

import requests

from . import media
from .test_library_media import create as media_create
from .test_library_media import put as media_put
from .test_library_media import wait_placeholders
from .test_library_v2 import V2, album_api, created, get, img, is_fallback


def listed(library, path: str, user: str | None, **params) -> set[str]:
    headers = {"X-User-Id": user} if user else {}
    r = library.api("GET", path, headers=headers, params={"limit": 100, **params})
    assert r.status_code == 200, r.text
    return {i["id"] for i in r.json()["items"]}


def test_an_album_token_grants_only_what_its_owner_may_see_now(library):
    alice = created(library, user="alice", data=img(120, 90, (10, 200, 90)))  # public, for now
    own = created(library, user="mallory", isPrivate=True, data=img(90, 60, (250, 250, 0)))
    aid = album_api(library, "POST", user="mallory", json={"name": "collected"}).json()["id"]
    r = album_api(library, "POST", f"/{aid}/images", user="mallory", json={"imageIds": [alice["id"], own["id"]]})
    assert r.status_code == 200 and r.json()["added"] == 2
    token = album_api(library, "POST", f"/{aid}/tokens", user="mallory", json={}).json()["token"]
    assert not is_fallback(library, get(library, alice["id"], token=token))

    # Alice makes hers private: Mallory's album token no longer shows it, in any form
    r = library.api("PATCH", f"{V2}/images/{alice['id']}", headers={"X-User-Id": "alice"},
                    json={"isPrivate": True})
    assert r.status_code == 200 and r.json()["isPrivate"] is True
    for params in ({}, {"w": "64"}, {"thumb": "true"}, {"format": "png", "q": "50"}):
        assert is_fallback(library, get(library, alice["id"], token=token, **params)), params
        assert is_fallback(library, get(library, alice["id"], token=token, user="mallory", key=library.key,
                                        **params)), params
    assert get(library, alice["id"], token=token, user="mallory", key=library.key,
               info="true").status_code == 404
    assert library.api("GET", f"/library/{alice['objectKey']}", key=None).status_code == 404
    # nor in the album's lists, for the token's holder or the album's owner
    for user in ("bob", "mallory"):
        assert listed(library, f"{V2}/albums/{aid}/images", user, token=token) == {own["id"]}, user
    for user in (None, "bob", "mallory"):
        assert listed(library, f"{V2}/images", user, albumId=aid, token=token) == {own["id"]}, user
    assert listed(library, f"{V2}/albums/{aid}/images", "mallory") == {own["id"]}
    # nor in its count
    for user, params in (("bob", {"token": token}), ("mallory", {})):
        assert album_api(library, "GET", f"/{aid}", user=user, params=params).json()["imageCount"] == 1
    # Alice still sees her own image, in the album's lists too
    assert not is_fallback(library, get(library, alice["id"], user="alice", key=library.key))
    # the token still shows what the album's owner may see: her own private image
    seen = get(library, own["id"], token=token, w=32)
    assert not is_fallback(library, seen) and media.decode(seen.content).width == 32

    # public again: the token shows it again (nothing was cached against the token)
    library.api("PATCH", f"{V2}/images/{alice['id']}", headers={"X-User-Id": "alice"}, json={"isPrivate": False})
    assert not is_fallback(library, get(library, alice["id"], token=token))
    assert listed(library, f"{V2}/images", "bob", albumId=aid, token=token) == {alice["id"], own["id"]}
    assert album_api(library, "GET", f"/{aid}", user="bob", params={"token": token}).json()["imageCount"] == 2


def test_an_album_token_lists_the_same_images_on_both_routes(library):
    aid = album_api(library, "POST", user="mallory", json={"name": "shared"}).json()["id"]
    mine = created(library, user="mallory", isPrivate=True)
    pub = created(library, user="carol")
    album_api(library, "POST", f"/{aid}/images", user="mallory", json={"imageIds": [mine["id"], pub["id"]]})
    token = album_api(library, "POST", f"/{aid}/tokens", user="mallory", json={}).json()["token"]
    on_album = listed(library, f"{V2}/albums/{aid}/images", "bob", token=token)
    assert on_album == {mine["id"], pub["id"]}
    for user in (None, "bob"):  # the album's route needs a user; this one does not
        assert listed(library, f"{V2}/images", user, albumId=aid, token=token) == on_album, user
    r = library.api("GET", f"{V2}/images", headers={"X-User-Id": "bob"}, params={"albumId": aid, "token": token})
    assert r.json()["total"] == 2
    # without the token: the album is another user's private one, 404 on both routes
    assert album_api(library, "GET", f"/{aid}/images", user="bob").status_code == 404
    assert library.api("GET", f"{V2}/images", headers={"X-User-Id": "bob"},
                       params={"albumId": aid}).status_code == 404


def test_privacy_belongs_to_the_record_not_to_a_shared_object(library):
    """A presigned /media upload of the same bytes is pointed at the /api/v1 upload's object; each record
    keeps its own public URL, and making one private closes its URLs, not the other's."""
    data = media.jpeg(150, 100)
    r = library.upload(data, "first.jpg", generateVariants=True)
    assert r.status_code == 201, r.text
    v1 = r.json()
    assert v1["url"].endswith(f"/library/{v1['objectKey']}") and v1["variants"]
    c = media_create(library, "second.jpg", "image/jpeg", user="user-9").json()
    assert media_put(c, data, "image/jpeg").status_code == 200
    m = wait_placeholders(library, c["media"]["id"], user="user-9")
    assert library.stored_keys(f"acme/{m['id']}/") == []  # stored once
    assert m["canonicalUri"] == v1["canonicalUri"]
    assert m["publicDownloadUrl"] != v1["url"] and f"/library/acme/{m['id']}/" in m["publicDownloadUrl"]
    for url in (v1["url"], m["publicDownloadUrl"], m["canonicalUri"], *(x["url"] for x in v1["variants"])):
        assert requests.get(url, timeout=30).status_code == 200, url

    def private(media_id: str, value: bool) -> None:
        r = library.api("PATCH", f"/api/v1/media/{media_id}", json={"isPrivate": value})
        assert r.status_code == 200 and r.json()["isPrivate"] is value, r.text

    # the /api/v1 record private: none of its public URLs answers, with or without parameters
    private(v1["id"], True)
    for url in (v1["url"], *(x["url"] for x in v1["variants"])):
        for params in ({}, {"w": "40"}, {"fm": "png"}):
            r = requests.get(url, params=params, timeout=30)
            assert r.status_code == 404 and r.headers["Cache-Control"] == "no-store", (url, params)
    # the download with the key says private, whichever record it looked at
    r = library.api("GET", f"/api/v1/media/download/library/{v1['objectKey']}")
    assert r.status_code == 200 and r.headers["Cache-Control"].startswith("private")
    # the /media record is public: its URL and the content address (which names the bytes that
    # record publishes) still answer
    seen = get_media(library, m["id"])
    assert seen["publicDownloadUrl"] == m["publicDownloadUrl"]
    r = requests.get(m["publicDownloadUrl"], timeout=30)
    assert r.status_code == 200 and r.content == data
    assert media.decode(requests.get(m["publicDownloadUrl"], params={"w": "40"}, timeout=30).content).width == 40
    assert requests.get(m["canonicalUri"], timeout=30).content == data
    # both private: nothing public is left
    private(m["id"], True)
    for url in (m["publicDownloadUrl"], m["canonicalUri"], v1["url"]):
        assert requests.get(url, timeout=30).status_code == 404, url
    assert get_media(library, m["id"])["publicDownloadUrl"] is None
    # the other way round: the /media record private, the /api/v1 one public
    private(v1["id"], False)
    assert requests.get(v1["url"], timeout=30).content == data
    assert requests.get(m["publicDownloadUrl"], timeout=30).status_code == 404
    assert requests.get(m["publicDownloadUrl"], params={"w": "40"}, timeout=30).status_code == 404
    # a spelling that names no record: another organization's slug, a made-up version
    _, media_id, version_id, name = v1["objectKey"].split("/")
    for key in (f"other-org/{media_id}/{version_id}/{name}", f"acme/{media_id}/{'0' * 32}/{name}",
                f"acme/{media_id}/{version_id}/other.jpg", f"acme/{m['id']}/{version_id}/{name}"):
        assert library.api("GET", f"/library/{key}", key=None).status_code == 404, key


def get_media(library, media_id: str, user: str = "user-9") -> dict:
    r = library.api("GET", f"/media/{media_id}", headers={"X-User-Id": user})
    assert r.status_code == 200, r.text
    return r.json()

"""The library's schemas (library/api/schemas.py) are the wire's, over real HTTP: every answer carries
exactly the fields its Struct declares, with the declared types (msgspec.convert, strict), and the bodies
declared closed refuse an unknown field with the API's own message, storing nothing."""

from __future__ import annotations

import msgspec
import pytest

from mediaproxy.library.api import schemas as S

from .conftest import start_library
from .test_library_v2 import V2, album_api, created, img, put_avatar
from .test_library_v2_admin import bearer, login, make_admin


@pytest.fixture(scope="module")
def stack(request, make_server, tmp_path_factory):
    s = start_library(request, make_server, tmp_path_factory, "local")
    yield s
    s.stop()


def exactly(body: dict, schema: type[msgspec.Struct]) -> None:
    """``body`` has the schema's fields, no other, each of its declared type."""
    assert set(body) <= set(S.fields(schema)), sorted(set(body) - set(S.fields(schema)))
    msgspec.convert(body, schema)  # types and constraints; a missing required field fails here too


def test_answers_are_their_schemas(stack):
    r = stack.upload(img(), filename="p.png", alt="a")
    assert r.status_code == 201, r.text
    media = r.json()
    exactly(media, S.Media)
    assert set(media) == set(S.fields(S.Media))
    exactly(stack.api("GET", f"/api/v1/media/{media['id']}").json(), S.Media)
    exactly(stack.api("GET", "/api/v1/media/list").json(), S.MediaList)
    exactly(stack.api("POST", "/api/v1/media/batch", json={"ids": [media["id"], "nope"]}).json(), S.Batch)
    exactly(stack.api("GET", f"/api/v1/media/{media['id']}/variants").json(), S.MediaVariants)
    exactly(stack.api("POST", "/api/v1/media/upload/presigned", json={"filename": "x.png"}).json(),
            S.PresignedUpload)
    exactly(stack.api("GET", "/healthz", key=None).json(), S.Health)
    created_media = stack.api("POST", "/media", headers={"X-User-Id": "u1"},
                              json={"filename": "x.png", "contentType": "image/png"}).json()
    exactly(created_media, S.CreatedMedia)
    exactly(stack.api("GET", f"/media/{created_media['media']['id']}", headers={"X-User-Id": "u1"}).json(),
            S.MediaObject)

    image = created(stack, tags=("sea",))
    assert set(image) == set(S.fields(S.Image))
    exactly(image, S.Image)
    exactly(stack.api("GET", f"{V2}/images").json(), S.ImageList)
    share = stack.api("POST", f"{V2}/images/{image['id']}/share", headers={"X-User-Id": "alice"}, json={})
    exactly(share.json(), S.Share)
    avatar = put_avatar(stack, "bob", img())
    exactly(avatar.json(), S.Avatar)
    album = album_api(stack, "POST", json={"name": "trip", "isPublic": True}).json()
    assert set(album) == set(S.fields(S.Album))
    exactly(album, S.Album)
    exactly(album_api(stack, "POST", f"/{album['id']}/images", json={"imageIds": [image["id"]]}).json(),
            S.AlbumAdded)
    exactly(album_api(stack, "POST", f"/{album['id']}/tokens", json={}).json(), S.AlbumShare)
    exactly(stack.api("GET", f"{V2}/status").json(), S.Status)
    exactly(stack.api("GET", f"{V2}/client/stats").json(), S.ClientStats)

    tokens = login(stack, make_admin(stack)).json()
    exactly(tokens, S.LoginTokens)
    admin = bearer(tokens["accessToken"])
    for path, schema in (("/auth/me", S.Admin), ("/stats", S.AdminStats), ("/clients", S.ClientList),
                         ("/images", S.AdminImageList), ("/images/tags", S.TagCounts),
                         ("/avatars", S.AdminAvatarList), ("/albums", S.AdminAlbumList),
                         ("/stats/uploads", S.UploadsPerDay), (f"/images/{image['id']}/share", S.TokenList)):
        r = stack.api("GET", f"{V2}/admin{path}", key=None, headers=admin)
        assert r.status_code == 200, (path, r.text)
        exactly(r.json(), schema)


@pytest.mark.parametrize(("method", "path", "body", "message"), [
    ("PATCH", "/api/v1/media/{media}", {"alt": "x", "size": 1, "bucket": "b"},
     "cannot change bucket, size (only alt, caption, description, isPrivate)"),
    ("PATCH", f"{V2}/images/{{image}}", {"tags": ["a"], "owner": "x"}, "unknown field(s): owner"),
    ("POST", f"{V2}/albums", {"name": "n", "secret": 1, "albums": 2}, "unknown field(s): albums, secret"),
    ("PATCH", f"{V2}/albums/{{album}}", {"isPublic": True, "imageCount": 3}, "unknown field(s): imageCount"),
])
def test_closed_bodies_refuse_unknown_fields(stack, method, path, body, message):
    media = stack.upload(img(), filename="p.png").json()
    image = created(stack)
    album = album_api(stack, "POST", json={"name": "kept"}).json()
    before = album_api(stack, "GET").json()["total"]
    r = stack.api(method, path.format(media=media["id"], image=image["id"], album=album["id"]),
                  headers={"X-User-Id": "alice"}, json=body)
    assert r.status_code == 400 and r.json() == {"error": message}
    assert album_api(stack, "GET").json()["total"] == before  # nothing stored
    assert stack.api("GET", f"/api/v1/media/{media['id']}").json()["alt"] is None


def test_admin_closed_bodies_refuse_unknown_fields(stack):
    admin = bearer(login(stack, make_admin(stack)).json()["accessToken"])
    r = stack.api("PATCH", f"{V2}/admin/auth/me", key=None, headers=admin, json={"name": "n", "role": "root"})
    assert r.status_code == 400 and r.json() == {"error": "unknown field(s): role"}
    client = stack.api("GET", f"{V2}/admin/clients", key=None, headers=admin).json()["items"][0]
    r = stack.api("PATCH", f"{V2}/admin/clients/{client['id']}", key=None, headers=admin,
                  json={"name": "n", "slug": "s"})
    assert r.status_code == 400 and r.json() == {"error": "unknown field(s): slug (a client's slug never changes)"}

"""The /v2 image service (under ``MEDIAPROXY_API_PREFIX``, ``/v2`` by default): images with tags,
privacy and share links, avatars, albums with access tokens, the client's status and statistics.
HTTP ↔ the services' calls (``services.Library``), nothing more.

A client is an organization of the core (``X-API-Key``: the same keys as the /api/v1 and /media APIs); the end
user is ``X-User-Id``. Who sees what:

- ``GET /images/{id}`` (the bytes) needs no key for a public image (ids are global and random), so
  it can sit in an ``<img>``. A private image is served to its owner (the client's key and the
  owner's ``X-User-Id``) or with a valid ``token`` (a share link of the image, or an access token
  of an album holding it). Anyone else — and any id that does not exist, was deleted, or belongs
  to another client — gets the same precomputed fallback WebP with ``200`` and
  ``Cache-Control: private, no-store``: one answer for all, so it tells nothing.
- Everything else needs the key; another client's images, albums and avatars are ``404``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import falcon
from msgspec import UNSET

from ...errors import BadRequest, NotFound
from ...media.hashes import fallback_webp
from ...media.spec import FORMATS, TransformSpec
from ...routes.common import serve_transform
from ..models import Album, Media, Organization
from ..repositories import media as media_repo
from ..repositories import ping
from ..services import Served
from ..services.base import iso
from ..services.catalog import clean_tags
from . import presenters
from . import schemas as S
from .common import KEY, KEY_USER, PUBLIC, TOKEN, Resource, form, json_body, query, receive_upload, send_json

log = logging.getLogger("mediaproxy.library")
USER_MAX = 255
THUMB_SIDE = 256
IMAGE_FIELDS = tuple(f for f in S.fields(S.ImageForm) if f not in ("file", "tags[]"))  # tags[]: a list
PUBLIC_CACHE = "public, no-cache"  # always revalidated (ETag → 304): making it private takes effect at once
OWNER_CACHE = "private, no-cache"
FALLBACK_CACHE = "private, no-store"
AVATAR_CACHE = "private, max-age=60, must-revalidate"


# -- request helpers -------------------------------------------------------------------------------

def _user(req: falcon.Request, required: bool) -> str | None:
    user = req.get_header("X-User-Id")
    if user is None or not user.strip():
        if required:
            raise BadRequest("X-User-Id is required")
        return None
    user = user.strip()
    if len(user) > USER_MAX or not user.isprintable():
        raise BadRequest(f"X-User-Id must be printable and at most {USER_MAX} characters")
    return user


def when(raw, name: str) -> datetime | None:
    """A ``from``/``to`` filter's time (ISO 8601, a date alone too) as a naive UTC datetime; None when not given."""
    if not raw:
        return None
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} must be an ISO 8601 date or time") from None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


def _tags(value) -> list[str]:
    """``tags`` as a JSON list, repeated form fields, or one comma-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        raise BadRequest("tags must be a list of strings")
    out: list[str] = []
    for v in value:
        if not isinstance(v, str):
            raise BadRequest("tags must be a list of strings")
        out.extend(v.split(","))
    return clean_tags(out)


def image_spec(q: S.ServeQuery) -> TransformSpec:
    """``w``, ``h``, ``q``, ``format`` (default WebP), ``thumb`` (a 256-pixel square crop unless
    ``w``/``h`` say otherwise); ``t`` and ``token`` are not part of the result."""
    width, height = q.w or None, q.h or None
    thumb = q.thumb
    fmt = FORMATS[q.format.lower()] if q.format else "webp"
    quality = q.q or None
    fit = "inside"
    if thumb:
        if width is None and height is None:
            width = height = THUMB_SIDE
        fit = "cover" if width and height else "inside"
    return TransformSpec(width=width, height=height, fit=fit, position="attention" if thumb else "center",
                         format=fmt, quality=quality, lossless=False, animated=None)


class V2Resource(Resource):
    """The /v2 image service takes its key from ``X-API-Key`` only (``Authorization`` is the admin's JWT)."""

    def __init__(self, lib, api: V2):
        super().__init__(lib)
        self.api = api

    bearer_keys = False

    def end_user(self, req: falcon.Request) -> str:
        return _user(req, True)

    def optional_user(self, req: falcon.Request) -> None:
        _user(req, False)

    def image_json(self, req: falcon.Request, media: Media, tags: list[str] | None = None,
                   albums: list[str] | None = None) -> dict:
        s = req.context.db
        base = self.base(req)
        if tags is None:
            tags = self.library.catalog.tags_of(s, [media.id])[media.id]
        if albums is None:
            albums = self.library.catalog.albums_of(s, [media.id])[media.id]
        return presenters.image_json(self.library, media, base, self.api.prefix, tags, albums)

    def images_json(self, req: falcon.Request, items: list[Media]) -> list[dict]:
        ids = [m.id for m in items]
        tags = self.library.catalog.tags_of(req.context.db, ids)
        albums = self.library.catalog.albums_of(req.context.db, ids)
        return [self.image_json(req, m, tags[m.id], albums[m.id]) for m in items]

    def album_json(self, req: falcon.Request, album: Album, count: int | None = None) -> dict:
        if count is None:
            count = self.library.albums.image_counts(req.context.db, [album.id]).get(album.id, 0)
        return presenters.album_json(album, count)

    # -- serving ---------------------------------------------------------------------------------

    def serve(self, req: falcon.Request, resp: falcon.Response, img: Served, spec: TransformSpec,
              cache_control: str) -> None:
        ctx = self.library.ctx
        # the entry records (bucket, key): purged with the object when it is replaced or deleted
        serve_transform(req, resp, ctx, img.bucket, img.key, spec)
        resp.set_header("Cache-Control", cache_control)

    def receive_image(self, req: falcon.Request, org, schema: type[S.ImageForm | S.AdminImageForm], owner_of,
                      owner_name: str, album_of=None) -> Media:
        """An image upload (the client's and the admin's): the form's fields (``schema``) checked
        before the bytes are committed, then the record, its tags (and album), and the placeholders
        queued. ``owner_of(form)`` names the owner; ``album_of(form)`` the album to add it to, if any."""
        lib, s = self.library, req.context.db

        def validate(fields: dict):
            f = form(fields, schema)
            owner = owner_of(f)
            private = f.is_private
            if private and not owner:
                raise BadRequest(f"a private image needs {owner_name}: its owner")
            tags = _tags((f.tags_list or []) + ([f.tags] if f.tags is not UNSET else []))
            description = None if f.description is UNSET else f.description
            album = album_of(f) if album_of is not None else None
            return owner, private, tags, description, album

        up, obj, (owner, private, tags, description, album) = receive_upload(
            req, lib, org, IMAGE_FIELDS, validate, lists=("tags[]",))
        def tags_and_album(media: Media) -> None:  # in the record's transaction: all of it or none
            self.library.catalog.set_tags(s, media.id, tags)
            if album is not None:
                self.library.albums.add(s, album, [media.id])

        # the placeholders are the worker's (the finalize job)
        return lib.ingest.create_media(s, up, obj, owner=owner, dialect="v2", job="finalize",
                                       fields={"description": description, "is_private": private},
                                       with_record=tags_and_album)

    def fallback(self, resp: falcon.Response) -> None:
        resp.status = falcon.HTTP_200
        resp.content_type = "image/webp"
        resp.data = self.api.fallback
        resp.set_header("Cache-Control", FALLBACK_CACHE)


# -- images ---------------------------------------------------------------------------------------

class Images(V2Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        org = self.org(req)
        user = _user(req, False)
        s = req.context.db

        def album_of(f: S.ImageForm):
            # the form's externalUserId names the owner of an admin's upload only; here it is
            # ignored, but held to the same rules (the client's owner is X-User-Id)
            if not f.album_id:
                return None
            if user is None:
                raise BadRequest("albumId needs X-User-Id: the album's owner")
            return self.library.albums.get(s, org.id, f.album_id, user, write=True)

        media = self.receive_image(req, org, S.ImageForm, lambda f: user, "X-User-Id", album_of)
        send_json(resp, self.image_json(req, media), 201)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        org = self.org(req)
        user = _user(req, False)
        q = query(req, S.ImagesQuery)  # the token is checked even when no album needs it
        limit, offset = q.limit, q.skip
        album_id, token = q.album_id or None, q.token or None
        also_sees = None
        if album_id:  # the same images as GET /albums/{id}/images answers this user
            album = self.library.albums.get(req.context.db, org.id, album_id, user, token)
            if self.library.sharing.sees_as_owner(req.context.db, album, user, token):
                also_sees = album.owner
        items, total = self.library.catalog.list_images(
            req.context.db, org.id, user=user, limit=limit, offset=offset, tag=q.tag or None,
            album_id=album_id, private=None if q.is_private is UNSET else q.is_private, owner=q.user_id or None,
            since=when(q.from_, "from"), until=when(q.to, "to"), also_sees=also_sees)
        send_json(resp, {"items": self.images_json(req, items), "total": total, "limit": limit, "offset": offset})


class Image(V2Resource):
    # the bytes are public for a public image (a key, a user or a token may show a private one);
    # ?info needs the key, checked by the responder
    auth = {"GET": PUBLIC, "PATCH": KEY, "DELETE": KEY}

    def on_get(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        q = query(req, S.ImageQuery)  # a malformed request is 400 whatever the image
        token = q.token or None
        if q.info:
            org = self.org(req)
            media = self._visible(req, org, image_id, token)
            send_json(resp, self.image_json(req, media))
            return
        spec = image_spec(q)
        s = req.context.db
        key = req.get_header("X-API-Key")
        org = self.org(req) if key is not None else None
        img = self.library.sharing.served(s, image_id)
        if img is None or (org is not None and org.id != img.org_id) or not self.library.sharing.may_view(
                s, img, org, _user(req, False), token):
            self.fallback(resp)
            return
        self.serve(req, resp, img, spec, OWNER_CACHE if img.is_private else PUBLIC_CACHE)

    on_head = on_get

    def _visible(self, req: falcon.Request, org: Organization, image_id: str, token: str | None) -> Media:
        s = req.context.db
        media = self.library.catalog.image(s, org, image_id)
        if media.is_private:
            img = self.library.sharing.served(s, media.id)
            if img is None or not self.library.sharing.may_view(s, img, org, _user(req, False), token):
                raise NotFound("no such image")
        return media

    def on_patch(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        org = self.org(req)
        media = owned_image(self, req, org, image_id)
        patch_image(self, req, media)
        send_json(resp, self.image_json(req, media))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        org = self.org(req)
        media = owned_image(self, req, org, image_id)
        self.library.sharing.delete_image(req.context.db, media)
        resp.status = falcon.HTTP_204


def patch_image(r: V2Resource, req: falcon.Request, media: Media) -> None:
    """PATCH's fields (``tags``, ``description``, ``isPrivate``): the client's and the admin's."""
    p = json_body(req, S.ImagePatch)
    changes: dict = {}
    if p.description is not UNSET:
        changes["description"] = p.description  # a string or null
    if p.is_private is not UNSET:
        if p.is_private and media.owner is None:
            raise BadRequest("an image without an owner (X-User-Id at upload) cannot be private")
        changes["is_private"] = p.is_private
    tags = _tags(p.tags) if p.tags not in (UNSET, None) else None
    s = req.context.db
    if tags is not None:
        r.library.catalog.set_tags(s, media.id, tags)
    r.library.catalog.patch(s, media, changes)


def owned_image(r: V2Resource, req: falcon.Request, org: Organization, image_id: str) -> Media:
    """The client's image that this user may change: its owner's (an image uploaded without
    X-User-Id is the client's own, changed with the key alone)."""
    media = r.library.catalog.image(req.context.db, org, image_id)
    if media.owner is not None and media.owner != _user(req, False):
        raise NotFound("no such image")
    return media


class Share(V2Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        org = self.org(req)
        media = owned_image(self, req, org, image_id)
        expires = json_body(req, S.ShareRequest, strings=True).expires_in
        token, row = self.library.sharing.create_token(req.context.db, org, "image", media.id, media.owner, expires)
        base = self.base(req)
        send_json(resp, {"token": token, "imageId": media.id, "expiresAt": iso(row.expires_at),
                         "url": f"{base}{self.api.prefix}/images/share/{token}",
                         "imageUrl": f"{base}{self.api.prefix}/images/{media.id}?token={token}"}, 201)


class ShareRevoke(V2Resource):
    def on_delete(self, req: falcon.Request, resp: falcon.Response, image_id: str, token: str) -> None:
        org = self.org(req)
        media = owned_image(self, req, org, image_id)
        self.library.sharing.revoke_token(req.context.db, org, "image", media.id, token)
        resp.status = falcon.HTTP_204


class Shared(V2Resource):
    """A share link: no key, the token is the credential. Invalid, expired or revoked: the fallback."""

    auth = TOKEN

    def on_get(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        spec = image_spec(query(req, S.ServeQuery))
        s = req.context.db
        row = self.library.sharing.valid_token(s, token, "image")
        img = self.library.sharing.served(s, row.target_id) if row is not None else None
        if img is None or img.org_id != row.org_id:
            self.fallback(resp)
            return
        self.serve(req, resp, img, spec, FALLBACK_CACHE if img.is_private else PUBLIC_CACHE)

    on_head = on_get


# -- avatars --------------------------------------------------------------------------------------

class Avatars(V2Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        org = self.org(req)
        lib, s = self.library, req.context.db

        def validate(fields: dict) -> str:
            user = form(fields, S.AvatarForm).external_user_id or _user(req, False)
            if not user or not user.isprintable():
                raise BadRequest("externalUserId is required")
            return user

        up, obj, user = receive_upload(req, lib, org, IMAGE_FIELDS, validate)
        media = lib.ingest.create_media(s, up, obj, owner=user, dialect="avatar")
        answer = self.avatar_json(req, user, media)
        lib.avatars.replace(s, org, user, media)  # the replaced record goes in the same transaction
        send_json(resp, answer, 201)

    def avatar_json(self, req: falcon.Request, user: str, media: Media) -> dict:
        return presenters.avatar_json(self.library, media, self.base(req), self.api.prefix, user)


class AvatarOne(V2Resource):
    def _find(self, req: falcon.Request, user: str) -> tuple[Organization, object, Media]:
        org = self.org(req)
        s = req.context.db
        row = self.library.avatars.of_user(s, org.id, user)
        media = media_repo.load(s, row.media_id) if row else None
        if row is None or media is None:
            raise NotFound("no avatar for this user")
        return org, row, media

    def on_get(self, req: falcon.Request, resp: falcon.Response, user: str) -> None:
        q = query(req, S.AvatarQuery)
        if q.info:
            _, _, media = self._find(req, user)
            send_json(resp, Avatars.avatar_json(self, req, user, media))
            return
        spec = image_spec(q)
        _, _, media = self._find(req, user)
        obj = media.current.object
        img = Served(media.id, media.org_id, media.owner, False, obj.bucket, obj.key, obj.mime_type,
                     media.updated_at)
        self.serve(req, resp, img, spec, AVATAR_CACHE)
        resp.set_header("Content-Location", presenters.public_url(self.library, self.base(req), obj.key))

    on_head = on_get

    def on_delete(self, req: falcon.Request, resp: falcon.Response, user: str) -> None:
        _, row, _ = self._find(req, user)
        self.library.avatars.delete(req.context.db, row)
        resp.status = falcon.HTTP_204


# -- albums ---------------------------------------------------------------------------------------

def album_fields(a: S.AlbumInput, creating: bool) -> dict:
    """An album's fields as the record takes them (``name`` is required to create one)."""
    if creating and a.name is UNSET:
        raise BadRequest("name is required: a non-empty string")
    given = {"name": a.name.strip() if a.name else a.name, "description": a.description, "is_public": a.is_public,
             "external_id": a.album_id}
    return {k: v for k, v in given.items() if v is not UNSET}


class Albums(V2Resource):
    auth = KEY_USER

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        org = self.org(req)
        user = req.context.user
        album = self.library.albums.create(req.context.db, org, user, album_fields(json_body(req, S.AlbumInput), True))
        send_json(resp, self.album_json(req, album, 0), 201)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        org = self.org(req)
        user = req.context.user
        q = query(req, S.PageQuery)
        limit, offset = q.limit, q.skip
        items, total = self.library.albums.page(req.context.db, org.id, user, limit, offset)
        counts = self.library.albums.image_counts(req.context.db, [a.id for a in items])
        send_json(resp, {"items": [self.album_json(req, a, counts.get(a.id, 0)) for a in items], "total": total,
                         "limit": limit, "offset": offset})


class AlbumBase(V2Resource):
    auth = KEY_USER

    def _album(self, req: falcon.Request, album_id: str, write: bool = False) -> Album:
        org = self.org(req)
        user = req.context.user
        token = query(req, S.TokenQuery).token or None
        return self.library.albums.get(req.context.db, org.id, album_id, user, token, write=write)


class AlbumOne(AlbumBase):
    def on_get(self, req: falcon.Request, resp: falcon.Response, album_id: str) -> None:
        send_json(resp, self.album_json(req, self._album(req, album_id)))

    def on_patch(self, req: falcon.Request, resp: falcon.Response, album_id: str) -> None:
        album = self._album(req, album_id, write=True)
        self.library.albums.update(req.context.db, album, album_fields(json_body(req, S.AlbumInput), False))
        send_json(resp, self.album_json(req, album))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, album_id: str) -> None:
        self.library.albums.delete(req.context.db, self._album(req, album_id, write=True))
        resp.status = falcon.HTTP_204


class AlbumImages(AlbumBase):
    def on_get(self, req: falcon.Request, resp: falcon.Response, album_id: str) -> None:
        album = self._album(req, album_id)
        user = req.context.user
        q = query(req, S.AlbumImagesQuery)
        limit, offset = q.limit, q.skip
        # the owner, or a token holder, sees what the owner may see (public images and the owner's
        # private ones), never another user's private image that was added while it was public
        token = q.token or None
        owners_view = self.library.sharing.sees_as_owner(req.context.db, album, user, token)
        items, total = self.library.catalog.list_images(req.context.db, album.org_id, user=user, limit=limit,
                                                offset=offset, album_id=album.id,
                                                also_sees=album.owner if owners_view else None)
        send_json(resp, {"items": self.images_json(req, items), "total": total, "limit": limit, "offset": offset})

    def on_post(self, req: falcon.Request, resp: falcon.Response, album_id: str) -> None:
        album = self._album(req, album_id, write=True)
        ids = json_body(req, S.ImageIds).image_ids
        s = req.context.db
        self.library.albums.check_addable(s, album, ids)
        added = self.library.albums.add(s, album, ids)
        send_json(resp, {"added": added, "album": self.album_json(req, album)})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, album_id: str) -> None:
        album = self._album(req, album_id, write=True)
        removed = self.library.albums.remove(req.context.db, album, json_body(req, S.ImageIds).image_ids)
        send_json(resp, {"removed": removed, "album": self.album_json(req, album)})


class AlbumTokens(AlbumBase):
    def on_post(self, req: falcon.Request, resp: falcon.Response, album_id: str) -> None:
        album = self._album(req, album_id, write=True)
        org = self.org(req)
        expires = json_body(req, S.ShareRequest, strings=True).expires_in
        token, row = self.library.sharing.create_token(req.context.db, org, "album", album.id, album.owner, expires)
        base = self.base(req)
        send_json(resp, {"token": token, "albumId": album.id, "expiresAt": iso(row.expires_at),
                         "url": f"{base}{self.api.prefix}/albums/{album.id}?token={token}"}, 201)


class AlbumToken(AlbumBase):
    def on_delete(self, req: falcon.Request, resp: falcon.Response, album_id: str, token: str) -> None:
        album = self._album(req, album_id, write=True)
        self.library.sharing.revoke_token(req.context.db, self.org(req), "album", album.id, token)
        resp.status = falcon.HTTP_204


# -- client ---------------------------------------------------------------------------------------

class Status(V2Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        org = self.org(req)
        ping(req.context.db)
        send_json(resp, {"status": "ok", "timestamp": presenters.now_iso(),
                         "client": {"id": org.id, "slug": org.slug, "name": org.name}})


class ClientStats(V2Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        org = self.org(req)
        stats = self.library.admin.stats(req.context.db, org.id)
        send_json(resp, {"client": {"id": org.id, "slug": org.slug}, **stats})


class V2:
    """The /v2 image service's routes of one app, sharing one Gallery and one precomputed fallback image."""

    def __init__(self, lib):
        self.lib = lib
        self.prefix = lib.settings.api_prefix
        self.fallback = fallback_webp()

    def add_routes(self, app: falcon.App) -> None:
        for template, resource in ROUTES:
            app.add_route(self.prefix + template, resource(self.lib, self))


# The route table, under the prefix (the OpenAPI document is generated from it: library/api/openapi.py)
ROUTES = (
    ("/images", Images),
    ("/images/share/{token}", Shared),
    ("/images/{image_id}", Image),
    ("/images/{image_id}/share", Share),
    ("/images/{image_id}/share/{token}", ShareRevoke),
    ("/avatars", Avatars),
    ("/avatars/{user}", AvatarOne),
    ("/albums", Albums),
    ("/albums/{album_id}", AlbumOne),
    ("/albums/{album_id}/images", AlbumImages),
    ("/albums/{album_id}/tokens", AlbumTokens),
    ("/albums/{album_id}/tokens/{token}", AlbumToken),
    ("/status", Status),
    ("/client/stats", ClientStats),
)


def add_routes(app: falcon.App, lib) -> V2:
    """The /v2 image service's routes; the V2 it built (the admin API is added beside it)."""
    api = V2(lib)
    api.add_routes(app)
    return api


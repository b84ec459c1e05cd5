"""What the admin API lacked for an operator's console, under ``{prefix}/admin``: an image's share
links and an album's access tokens (list, create, revoke), an album's images, uploads per day, a
client's keys (never a secret), and signed image URLs for ``<img>`` (``signed.py``). Each goes
through the services and auth functions the client API uses; tokens are shown once, at creation,
and revoked by their id afterwards (only their SHA-256 is stored)."""

from __future__ import annotations

import logging
from concurrent import futures
from datetime import timedelta

import falcon
from sqlalchemy import func, select
from urllib3 import encode_multipart_formdata

from ..errors import BadRequest, NotFound, ProcessingError, TooLarge, UnsupportedType
from ..hotpath import decimal, result_key
from ..library import auth
from ..library.api import schemas as S
from ..library.api.admin import AdminResource
from ..library.api.common import json_body, query, send_json
from ..library.models import Media, Organization, ShareToken, now
from ..library.services.base import iso
from ..media import pipeline
from ..media.spec import TransformSpec
from ..routes.common import transformed
from . import signed

log = logging.getLogger(__name__)
THUMBNAIL_CACHE = "private, max-age=600"
# the sizes were checked first: any of these while rendering is the picture's fault, not the request's
UNRENDERABLE = (BadRequest, ProcessingError, UnsupportedType, TooLarge, NotFound)
MISS_THREADS = 4  # misses of one batch rendered side by side (each holds a miss slot, as a request would)


def token_json(row: ShareToken) -> dict:
    t = now()
    state = ("revoked" if row.revoked_at is not None
             else "expired" if row.expires_at is not None and row.expires_at <= t else "active")
    return {"id": row.id, "createdAt": iso(row.created_at), "expiresAt": iso(row.expires_at),
            "revokedAt": iso(row.revoked_at), "createdBy": row.created_by, "state": state}


class _Tokens(AdminResource):
    kind = field = ""

    def target(self, req: falcon.Request, target_id: str):
        raise NotImplementedError

    def owner(self, target) -> str | None:
        return target.owner

    def answer(self, req: falcon.Request, target, token: str, row: ShareToken) -> dict:
        raise NotImplementedError

    def on_get(self, req: falcon.Request, resp: falcon.Response, **params: str) -> None:
        self.admin(req)
        target = self.target(req, params[self.field])
        rows = self.library.sharing.tokens(req.context.db, self.kind, target.id)
        send_json(resp, {"items": [token_json(r) for r in reversed(rows)]})

    def on_post(self, req: falcon.Request, resp: falcon.Response, **params: str) -> None:
        self.admin(req)
        target = self.target(req, params[self.field])
        org = req.context.db.get(Organization, target.org_id)
        expires = json_body(req, S.ShareRequest, strings=True).expires_in
        token, row = self.library.sharing.create_token(req.context.db, org, self.kind, target.id, self.owner(target),
                                                       expires)
        send_json(resp, {**token_json(row), **self.answer(req, target, token, row)}, 201)


class _TokenOne(AdminResource):
    kind = field = ""

    def on_delete(self, req: falcon.Request, resp: falcon.Response, token_id: str, **params: str) -> None:
        self.admin(req)
        target_id = params[self.field]
        s = req.context.db
        row = s.get(ShareToken, int(token_id)) if decimal(token_id) and len(token_id) < 12 else None
        if row is None or row.kind != self.kind or row.target_id != target_id:
            raise NotFound("no such token")
        if row.revoked_at is None:
            row.revoked_at = now()
        s.flush()
        resp.status = falcon.HTTP_204


class ImageShares(_Tokens):
    kind, field = "image", "image_id"

    def target(self, req, target_id):
        return self.any_image(req, target_id)

    def answer(self, req, target, token, row):
        base, P = self.base(req), self.api.prefix
        return {"token": token, "imageId": target.id, "url": f"{base}{P}/images/share/{token}",
                "imageUrl": f"{base}{P}/images/{target.id}?token={token}"}


class ImageShare(_TokenOne):
    kind, field = "image", "image_id"


class AlbumTokens(_Tokens):
    kind, field = "album", "album_id"

    def target(self, req, target_id):
        return self.library.albums.get(req.context.db, None, target_id)

    def answer(self, req, target, token, row):
        return {"token": token, "albumId": target.id,
                "url": f"{self.base(req)}{self.api.prefix}/albums/{target.id}?token={token}"}


class AlbumToken(_TokenOne):
    kind, field = "album", "album_id"


class AlbumImages(AdminResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, album_id: str) -> None:
        self.admin(req)
        s = req.context.db
        album = self.library.albums.get(s, None, album_id)
        q = query(req, S.PageQuery)
        limit, offset = q.limit, q.skip
        items, total = self.library.catalog.list_images(s, album.org_id, user=None, limit=limit, offset=offset,
                                                album_id=album.id, all_private=True)
        send_json(resp, {"items": [{**j, "clientId": m.org_id} for j, m in
                                   zip(self.images_json(req, items), items, strict=True)],
                         "total": total, "limit": limit, "offset": offset})


class Uploads(AdminResource):
    """Uploads per day (UTC) of the last ``days`` days: every uploaded record but avatars, as the
    statistics count them."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.admin(req)
        q = query(req, S.UploadsQuery)
        days, client = q.days, q.client_id or None
        start = (now() - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
        day = func.date(Media.created_at)
        q = (select(day, func.count(), func.coalesce(func.sum(Media.size), 0))
             .where(Media.created_at >= start, Media.state == "ready", Media.dialect != "avatar")
             .group_by(day))
        if client is not None:
            q = q.where(Media.org_id == client)
        found = {str(d)[:10]: (n, b) for d, n, b in req.context.db.execute(q)}
        series = []
        for i in range(days):
            d = (start + timedelta(days=i)).date().isoformat()
            n, b = found.get(d, (0, 0))
            series.append({"date": d, "images": int(n), "bytes": int(b)})
        send_json(resp, {"days": days, "clientId": client, "items": series})


class ClientKeys(AdminResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, client_id: str) -> None:
        self.admin(req)
        org = self.client(req, client_id)
        rows = auth.list_keys(req.context.db, org.slug)
        send_json(resp, {"items": [{"prefix": k.prefix, "name": k.name, "createdAt": iso(k.created_at),
                                    "revokedAt": iso(k.revoked_at), "state": "revoked" if k.revoked_at else "active"}
                                   for k, _ in rows]})


class SignedUrls(AdminResource):
    """``ids`` (comma-separated, at most 100), ``w``, ``h``, ``fit`` (``cover``: the box filled and
    cropped; ``inside``: within it) → ``{urls: {id: url}, expiresAt}``: URLs of ``{portal}/media``
    that serve each image at that size through the origin's pipeline until they expire."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.admin(req)
        q = query(req, S.SignedUrlsQuery)
        ids, w, h, fit = q.ids, q.w, q.h, q.fit
        e = signed.expiry()
        secret, portal = self.library.ctx.settings.secret_key, self.library.settings.portal_path
        base = self.base(req)
        send_json(resp, {"urls": {i: base + signed.sign(portal, secret, i, w, h, fit, e) for i in ids},
                         "expiresAt": e})


class Thumbnails(AdminResource):
    """``ids`` (comma-separated, at most 100), ``w``, ``h`` (at most 400), ``fit`` → the images (and
    avatars) at that size as WebP, in one ``multipart/form-data`` answer: one part per id that is a
    ready image, named by its id (``Response.formData()`` reads it in a page). A grid of 100 thumbnails
    is one request instead of 100: one query, the result cache read 100 times (a miss rendered
    through the origin's pipeline, as ``/v2/images/{id}`` would), none of the per-request costs of
    100 requests in the server and in the browser. Ids that are not ready images are left out."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.admin(req)
        q = query(req, S.ThumbnailsQuery)
        ids, w, h, fit = q.ids, q.w, q.h, q.fit
        found = self.library.sharing.served_many(req.context.db, ids, ("v2", "avatar"))
        spec = TransformSpec(width=w, height=h, fit=fit, position="center", format="webp", quality=None,
                             lossless=False, animated=None)
        ctx = self.library.ctx
        order = [i for i in dict.fromkeys(ids) if i in found]
        parts: dict[str, tuple[str, bytes, str] | None] = {}
        canonical = spec.canonical()
        for i in order:  # the hits, in this thread
            entry = ctx.cache.get(result_key(found[i].bucket, found[i].key, canonical, pipeline.PIPELINE_VERSION))
            if entry is not None:
                parts[i] = (f"{i}.webp", entry.read_all(), entry.content_type)

        def render(i: str) -> tuple[str, tuple[str, bytes, str] | None]:
            try:
                entry, _ = transformed(ctx, found[i].bucket, found[i].key, spec)
            except UNRENDERABLE as exc:  # one picture that cannot be shown leaves its cell empty, not the grid
                log.warning("no thumbnail of %s: %s: %s", i, type(exc).__name__, exc)
                return i, None
            return i, (f"{i}.webp", entry.read_all(), entry.content_type)

        misses = [i for i in order if i not in parts]
        if misses:
            with futures.ThreadPoolExecutor(min(MISS_THREADS, len(misses))) as pool:
                parts.update(pool.map(render, misses))
        body, ctype = encode_multipart_formdata([(i, parts[i]) for i in order if parts[i] is not None])
        resp.content_type = ctype
        resp.data = body
        resp.set_header("Cache-Control", THUMBNAIL_CACHE)


# The route table, under {prefix}/admin (the OpenAPI document is generated from it: library/api/openapi.py)
ROUTES = (
    ("/stats/uploads", Uploads),
    ("/clients/{client_id}/keys", ClientKeys),
    ("/images/signed", SignedUrls),
    ("/images/thumbnails", Thumbnails),
    ("/images/{image_id}/share", ImageShares),
    ("/images/{image_id}/share/{token_id}", ImageShare),
    ("/albums/{album_id}/images", AlbumImages),
    ("/albums/{album_id}/tokens", AlbumTokens),
    ("/albums/{album_id}/tokens/{token_id}", AlbumToken),
)


def add_routes(app: falcon.App, api) -> None:
    for template, resource in ROUTES:
        app.add_route(f"{api.prefix}/admin{template}", resource(api.lib, api))

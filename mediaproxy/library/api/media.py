"""The presigned /media API: ``POST /media`` (a record and a presigned upload URL) and ``GET /media/{id}``
(only for the uploader). The uploader is the ``X-User-Id`` header, within the API key's
organization; anyone else gets 404, as for an id that does not exist."""

from __future__ import annotations

from urllib.parse import quote

import falcon

from ...errors import BadRequest, NotFound, UnsupportedType
from . import presenters
from . import schemas as S
from .common import KEY_USER, Resource, json_body, send_json

USER_MAX = 255


def user_id(req: falcon.Request) -> str:
    user = (req.get_header("X-User-Id") or "").strip()
    if not user:
        raise BadRequest("X-User-Id is required: the end user the media belongs to")
    if len(user) > USER_MAX or not user.isprintable():
        raise BadRequest(f"X-User-Id must be printable and at most {USER_MAX} characters")
    return user


# RFC 5987's attr-char: what filename*= may carry unencoded (letters, digits and "_.-~" are never quoted)
_ATTR_CHARS = "!#$&+^`|"


def disposition(filename: str) -> str:
    """``inline`` with the filename (RFC 6266): a quoted ASCII fallback in which anything outside
    printable ASCII, quotes, backslashes and percent signs become ``_``, and — when that changed
    the name — the exact name UTF-8 percent-encoded in ``filename*`` (RFC 5987). A header value
    never carries a control character, whatever the name holds."""
    ascii_name = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in filename)
    value = f'inline; filename="{ascii_name}"'
    if ascii_name != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe=_ATTR_CHARS)}"
    return value


class MediaResource(Resource):
    auth = KEY_USER

    def end_user(self, req: falcon.Request) -> str:
        return user_id(req)


class MediaCollection(MediaResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        org = self.org(req)
        user = req.context.user
        p = json_body(req, S.CreateMediaRequest, strings=True)
        lib = self.library
        filename = p.filename
        ctype = p.content_type.lower()
        if ctype not in lib.settings.media_api_types:
            raise UnsupportedType(f"{ctype} is not allowed; allowed: {', '.join(sorted(lib.settings.media_api_types))}")
        # optional (beyond the API's first description): the file's size, signed into the upload URL so that the store
        # itself refuses any other length (S3: Content-Length; the local backend: its own URL)
        size = p.size or None
        media, signed = lib.ingest.presign_upload(req.context.db, org, self.base(req), filename, ctype, size,
                                                  owner=user, dialect="media", max_bytes=lib.settings.media_max_bytes)
        send_json(resp, {
            "uploadUrl": signed["uploadUrl"],
            "contentDispositionHeader": disposition(filename),
            "headers": signed["headers"],
            "expiresAt": signed["expiresAt"],
            "maxBytes": lib.settings.media_max_bytes,
            "media": {"id": media.id, "filename": filename, "contentType": ctype},
        }, 201)


class MediaItem(MediaResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, media_id: str) -> None:
        org = self.org(req)
        user = req.context.user
        lib = self.library
        media = lib.catalog.get(req.context.db, org, media_id)
        if media.owner != user:
            raise NotFound("no such media")
        # a read writes nothing: a PUT straight to the store is completed by the workers' sweep
        # (the local backend's PUT reaches the server and is completed at once)
        send_json(resp, presenters.media_api_json(lib, media, self.base(req)))


ROUTES = (("/media", MediaCollection), ("/media/{media_id}", MediaItem))  # the OpenAPI document's too


def add_routes(app: falcon.App, lib) -> None:
    for template, resource in ROUTES:
        app.add_route(template, resource(lib))

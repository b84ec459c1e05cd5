"""The library's public URLs, served by the origin: ``/library/{objectKey}`` (an original or a
variant, by its immutable per-version key) and ``/sha256/{hex}`` (the content address).

The one thing the origin asks the library is whether a key may be shown to anyone: the record
the key names (its media and version) must be public and uploaded. Anything else — private,
still uploading, deleted, or never existed — is the same 404, so a guessed key tells nothing.
Query parameters are imgix's (mediaproxy/media/imgix.py); without any, the stored bytes are
streamed with Range. The key of a version never changes, so the answers carry the origin's
one-year immutable caching.
"""

from __future__ import annotations

import re

import falcon

from ..errors import NotFound
from ..media import imgix
from .common import serve_stored, serve_transform

_SHA = re.compile(r"[0-9a-f]{64}")
_FORMAT_OF = {"image/jpeg": "jpeg", "image/png": "png", "image/gif": "gif", "image/webp": "webp",
              "image/avif": "avif"}


class _Public:
    json_errors = False  # the origin's plain-text errors
    auth = "public"  # library/api/common.PUBLIC: the record's privacy decides, not a credential

    def __init__(self, lib):
        self.library = lib

    def serve(self, req: falcon.Request, resp: falcon.Response, bucket: str, key: str, mime: str,
              disposition: str | None = None) -> None:
        ctx = self.library.ctx
        source_format = _FORMAT_OF.get(mime)
        spec = imgix.parse(req.params, req.get_header("Accept"), source_format or "jpeg") if source_format else None
        if spec is None:
            serve_stored(req, resp, ctx, bucket, key, mime)
            # the stored bytes as they were uploaded, with the Content-Disposition the record's PUT
            # set (a /media upload's PUT: S3 would send it back); a transformed result is another file
            if disposition:
                resp.set_header("Content-Disposition", disposition)
            return
        if imgix.wants_negotiation(req.params) and not req.params.get("fm"):
            resp.set_header("Vary", "Accept")
        serve_transform(req, resp, ctx, bucket, key, spec)  # records (bucket, key) for ResultCache.purge


class PublicObject(_Public):
    def on_get(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        found = self.library.catalog.public_object(req.context.db, key)
        if found is None:
            raise NotFound("no such object")
        self.serve(req, resp, *found)

    on_head = on_get


class ContentAddressed(_Public):
    def on_get(self, req: falcon.Request, resp: falcon.Response, sha: str) -> None:
        if not _SHA.fullmatch(sha):
            raise NotFound("no such object")
        obj = self.library.catalog.public_sha256(req.context.db, sha)
        if obj is None:
            raise NotFound("no such object")
        # no Content-Disposition: the address names bytes, not a record (nor any record's file name)
        self.serve(req, resp, obj.bucket, obj.key, obj.mime_type)

    on_head = on_get


ROUTES = (("/library/{key:path}", PublicObject), ("/sha256/{sha}", ContentAddressed))  # the OpenAPI document's too


def add_routes(app: falcon.App, lib) -> None:
    for template, resource in ROUTES:
        app.add_route(template, resource(lib))

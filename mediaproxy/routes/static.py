"""``GET/HEAD /{key}`` in ``MEDIAPROXY_MODE=static``: the static-assets host.

The platform's static-assets host (the six default avatars ``/avatars/{0..5}.png``
and the platform's other static files) is a second host served by the same
program: every path is an object key in the static bucket
(``MEDIAPROXY_STATIC_BUCKET``), served by the attachment rules
(``attachments.StoredFileResource``): streamed unchanged with ``Range`` and
conditional requests, types a browser would run only as sandboxed downloads,
and PNG/JPEG/WebP/GIF objects also take the image parameters (``size``,
``width``, ``height``, ``format``, ``quality``) through the same pipeline and
result cache.

A key is any path under the bucket, but never a ``.`` or ``..`` segment, an
empty segment (``a//b``, a trailing ``/``), a control character, bytes that
are not UTF-8, or more than 1024 bytes (S3's limit): all ``400`` before any
storage lookup. The local backend also refuses (``400``) a key whose real
path leaves the bucket directory through a symbolic link.
"""

from __future__ import annotations

import unicodedata

import falcon

from ..context import Context
from ..errors import BadRequest
from .attachments import StoredFileResource

MAX_KEY_BYTES = 1024
STATIC_IMAGES = frozenset(("image/png", "image/jpeg", "image/webp", "image/gif"))


def parse_key(req: falcon.Request) -> str:
    """The object key named by the raw path, validated (see the module docstring)."""
    raw = req.env.get("PATH_INFO", "")
    try:
        key = raw.encode("latin-1").decode("utf-8").removeprefix("/")
    except UnicodeError:
        raise BadRequest("invalid key: not UTF-8") from None
    if not key:
        raise BadRequest("invalid key: empty")
    if any(segment in ("", ".", "..") for segment in key.split("/")):
        raise BadRequest("invalid key: empty, '.' or '..' segment")
    if any(unicodedata.category(c) == "Cc" for c in key):
        raise BadRequest("invalid key: control character")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise BadRequest(f"invalid key: longer than {MAX_KEY_BYTES} bytes")
    return key


class StaticResource(StoredFileResource):
    transformable = STATIC_IMAGES
    posters = False

    def __init__(self, ctx: Context):
        super().__init__(ctx, ctx.settings.static_bucket)

    def on_get(self, req: falcon.Request, resp: falcon.Response, key: str = "") -> None:
        key = parse_key(req)
        self.serve(req, resp, key, key.rpartition("/")[2])

    on_head = on_get


def add_routes(app: falcon.App, ctx: Context) -> None:
    app.add_route("/{key:path}", StaticResource(ctx))

"""``GET/HEAD /external/{signature}/{encoded_url}``: signed external media.

1. The signature (lowercase hex HMAC-SHA256 of the ``encoded_url`` text under
   ``MEDIAPROXY_SECRET_KEY``) is checked in constant time: ``403`` otherwise.
2. ``encoded_url`` is base64url (padding optional): ``400`` when it is not, or
   when it does not decode to UTF-8.
3. The image parameters are parsed (``400`` before any fetch).
4. The original is fetched through ``netguard`` (public addresses only, every
   redirect re-checked, timeouts, byte cap, media types only) and kept in the
   content-addressed cache under the URL, so a revalidation or another
   variant of the same URL does not fetch it again.
5. Without parameters, web images (JPEG/PNG/GIF/WebP/AVIF), video and audio
   are served as fetched; other images go through the pipeline (to JPEG or
   PNG). With parameters: the pipeline (images), a poster frame (``format`` on
   a video), and the result is cached like every transform.
"""

from __future__ import annotations

import io
import re
import time

import falcon

from .. import metrics
from ..cache import Entry
from ..context import Context
from ..errors import BadRequest, Forbidden
from ..hotpath import etag, result_key
from ..http import respond_entry
from ..media import pipeline
from ..media.poster import poster
from ..media.spec import EXTERNAL, SOURCE, TransformSpec, parse_spec
from ..netguard import Fetcher
from ..signing import decode_url, verify
from .common import output_entry, serve_transform

# The "bucket" of external sources in cache keys: no storage bucket can be named so.
EXTERNAL_BUCKET = ":external"
PASSTHROUGH_IMAGES = frozenset(("image/jpeg", "image/png", "image/gif", "image/webp", "image/avif"))
_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


def decode_target(encoded: str) -> str:
    if not _B64URL.fullmatch(encoded) or len(encoded.rstrip("=")) % 4 == 1:
        raise BadRequest("encoded url is not base64url")
    try:
        url = decode_url(encoded)
    except (ValueError, UnicodeError):
        raise BadRequest("encoded url is not base64url UTF-8") from None
    if not url:
        raise BadRequest("encoded url is empty")
    return url


def asks_nothing(spec: TransformSpec) -> bool:
    return (
        spec.width is None
        and spec.height is None
        and spec.format == SOURCE
        and spec.quality is None
        and spec.auto is None
        and not spec.lossless
        and not spec.animated  # animated=false is the default: it asks for nothing
    )


def passes_through(content_type: str) -> bool:
    return content_type in PASSTHROUGH_IMAGES or content_type.startswith(("video/", "audio/"))


class ExternalResource:
    def __init__(self, ctx: Context, fetcher: Fetcher | None = None):
        self.ctx = ctx
        self.fetcher = fetcher or Fetcher.from_settings(ctx.settings)

    def on_get(self, req: falcon.Request, resp: falcon.Response, signature: str, encoded: str) -> None:
        if not _SIGNATURE.fullmatch(signature) or not verify(signature, encoded, self.ctx.settings.secret_key):
            raise Forbidden("invalid signature")
        url = decode_target(encoded)
        spec = parse_spec(EXTERNAL, req.params)
        if asks_nothing(spec):
            original, hit = self._original(url)
            if passes_through(original.content_type):
                req.context.cache = "hit" if hit else "miss"
                resp.set_header("X-Cache", "HIT" if hit else "MISS")
                respond_entry(req, resp, original)
                return
            original.close()
        serve_transform(req, resp, self.ctx, EXTERNAL_BUCKET, url, spec, compute=lambda: self._render(url, spec))

    on_head = on_get

    def _original(self, url: str) -> tuple[Entry, bool]:
        """The fetched original, from the cache or fetched once (coalesced across workers)."""
        okey = result_key(EXTERNAL_BUCKET, url, "original", "")
        entry = self.ctx.cache.get(okey)
        if entry is not None:
            return entry, True
        with self.ctx.miss_slot():  # a fetch: in the worker's bounded share of threads
            wait = self.ctx.settings.fetch_timeout + 1.0
            return self.ctx.cache.get_or_compute(okey, lambda: self._fetch(url), wait, (EXTERNAL_BUCKET, url))

    def _fetch(self, url: str) -> Entry:
        fetched = self.fetcher.fetch(url)
        return Entry(
            fetched.content_type,
            etag(fetched.body),
            fetched.last_modified if fetched.last_modified is not None else float(int(time.time())),
            len(fetched.body),
            body=fetched.body,
            extra={"url": fetched.url},
        )

    def _render(self, url: str, spec: TransformSpec) -> Entry:
        original, _ = self._original(url)
        ctype = original.content_type
        data = original.read_all()
        if ctype.startswith(("video/", "audio/")):
            if spec.format == SOURCE:
                return Entry(ctype, original.etag, original.last_modified, len(data), body=data)
            with self.ctx.transform_slot():
                out = poster(io.BytesIO(data), spec, self.ctx.limits)
        else:
            with self.ctx.transform_slot():
                t0 = time.perf_counter()
                out = pipeline.transform(data, spec, self.ctx.limits)
                metrics.transform_done(out.content_type, time.perf_counter() - t0)
        return output_entry(out, original.last_modified)


def add_routes(app: falcon.App, ctx: Context) -> None:
    app.add_route("/external/{signature}/{encoded:path}", ExternalResource(ctx))

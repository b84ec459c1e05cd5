"""``GET/HEAD /attachments/{channel_id}/{attachment_id}/{filename}``.

- No transform asked for (and always for audio/video unless ``format`` asks
  for a poster): the stored bytes are streamed from storage in chunks, with
  ``Range`` answered by a ranged read (S3 ``Range`` GET), never whole in memory.
- An image with ``width``/``height``/``size``/``format``/``quality``/``animated``:
  the image pipeline, cached like every other transform.
- A video with ``format``: a poster frame (PyAV), sized by ``width``/``height``.
- ``download=true``: ``Content-Disposition: attachment`` (RFC 6266, RFC 5987
  ``filename*``), else ``inline``.

The Content-Type is the one stored with the object unless the first bytes say
otherwise (binary magic numbers win); it is never taken on trust for a type a
browser would run: anything that is not plain media, text or PDF is sent as
a download under ``Content-Security-Policy: default-src 'none'; sandbox``.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

import falcon

from ..cache import Entry
from ..context import Context
from ..errors import BadRequest
from ..http import respond
from ..media.poster import poster
from ..media.sniff import is_media_type, is_passive, normalize_type, reconcile, sniff
from ..media.spec import ATTACHMENT, SOURCE, TransformSpec, parse_bool, parse_spec
from ..storage import ObjectInfo
from ..storage.reader import ObjectReader
from .common import HeadSniffer, output_entry, serve_transform, snowflake

SANDBOX = "default-src 'none'; sandbox"
GENERIC_TYPES = frozenset(("", "application/octet-stream", "binary/octet-stream", "application/unknown"))
MAX_FILENAME_BYTES = 255
_ATTR_CHARS = "!#$&+-.^_`|~"  # RFC 5987 attr-char besides ALPHA / DIGIT
_HEADER_VALUE = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,200}")
_EXT = {"jpeg": "jpg"}


def filename_segment(filename: str) -> str:
    """One path segment per the contract, else 400."""
    if not filename or filename in (".", ".."):
        raise BadRequest("invalid filename")
    if "/" in filename:  # one segment: `..` inside a name (`Screenshot...png`) cannot climb anywhere
        raise BadRequest("invalid filename")
    if any(unicodedata.category(c) == "Cc" for c in filename):
        raise BadRequest("invalid filename: control character")
    if len(filename.encode("utf-8", "surrogatepass")) > MAX_FILENAME_BYTES:
        raise BadRequest(f"invalid filename: longer than {MAX_FILENAME_BYTES} bytes")
    return filename


def parse_path(req: falcon.Request) -> tuple[str, str, str]:
    """(channel_id, attachment_id, filename) from the raw path, decoded as strict UTF-8."""
    raw = req.env.get("PATH_INFO", "")
    try:
        path = raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise BadRequest("invalid filename: not UTF-8") from None
    parts = path.removeprefix("/attachments/").split("/")
    if len(parts) != 3:
        raise BadRequest("expected /attachments/{channel_id}/{attachment_id}/{filename}")
    channel, attachment, filename = parts
    return snowflake(channel, "channel id"), snowflake(attachment, "attachment id"), filename_segment(filename)


def content_disposition(kind: str, filename: str) -> str:
    """``inline``/``attachment`` with an ASCII ``filename=`` and the exact name in ``filename*``."""
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F else "_" for c in filename)
    fallback = fallback.replace("\\", "\\\\").replace('"', '\\"')
    exact = quote(filename, safe=_ATTR_CHARS, encoding="utf-8", errors="surrogatepass")
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


def resolve_type(declared_raw: str | None, head: bytes) -> str:
    """The Content-Type to send: magic bytes of a binary format win, then what was stored, then
    what the bytes look like, then ``application/octet-stream``."""
    declared = normalize_type(declared_raw)
    sniffed = sniff(head)
    if sniffed is not None and (is_media_type(sniffed) or sniffed == "application/pdf"):
        return reconcile(declared, sniffed)
    if declared not in GENERIC_TYPES:
        if declared_raw and _HEADER_VALUE.fullmatch(declared_raw.strip()):
            return declared_raw.strip()
        return declared
    return sniffed or "application/octet-stream"


def renamed(filename: str, fmt: str) -> str:
    """The filename with the extension of a transformed output's format."""
    stem, dot, _ = filename.rpartition(".")
    return f"{stem if dot and stem else filename}.{_EXT.get(fmt, fmt)}"


class StoredFileResource:
    """A stored file served by the attachment rules (the module docstring): streamed unchanged with
    Range and conditional requests, or transformed when an image is asked for a transform.

    Subclasses say where files live (``bucket``), how a URL names one
    (``on_get``), and which stored types take transforms.
    """

    # Stored types that take the image parameters; None: every image type.
    transformable: frozenset[str] | None = None
    posters = True  # `format` on a video or audio file gives a poster frame

    def __init__(self, ctx: Context, bucket: str):
        self.ctx = ctx
        self.bucket = bucket
        self._content_type = HeadSniffer(ctx, lambda info, head: resolve_type(info.content_type, head))

    def _transforms(self, ctype: str) -> bool:
        if self.transformable is not None:
            return ctype in self.transformable
        return is_media_type(ctype) and ctype.startswith("image/")

    def serve(self, req: falcon.Request, resp: falcon.Response, key: str, filename: str) -> None:
        """Answer one request for the stored file ``key`` (named ``filename`` in Content-Disposition)."""
        spec = parse_spec(ATTACHMENT, req.params)
        download = parse_bool("download", _last(req.params.get("download"))) or False
        with self.ctx.miss_slot():  # every stored-file answer asks storage first
            self._get(req, resp, key, filename, spec, download)

    def _get(self, req: falcon.Request, resp: falcon.Response, key: str, filename: str,
             spec: TransformSpec, download: bool) -> None:
        bucket = self.bucket
        info = self.ctx.storage.head(bucket, key)
        ctype = normalize_type(self._content_type(bucket, key, info)) if spec.transform else ""

        if spec.transform and self._transforms(ctype):
            serve_transform(req, resp, self.ctx, bucket, key, spec)
        elif self.posters and spec.transform and spec.format != SOURCE and ctype.startswith(("video/", "audio/")):
            serve_transform(req, resp, self.ctx, bucket, key, spec, compute=self._poster(bucket, key, info, spec))
        else:
            self._stream(req, resp, bucket, key, info, filename, download)
            return
        fmt = spec.format if spec.format != SOURCE else (resp.content_type or "").removeprefix("image/")
        name = renamed(filename, fmt) if fmt else filename
        resp.set_header("Content-Disposition", content_disposition("attachment" if download else "inline", name))

    def _poster(self, bucket: str, key: str, info: ObjectInfo, spec: TransformSpec):
        def compute() -> Entry:
            reader = ObjectReader(self.ctx.storage, bucket, key, info)
            with self.ctx.transform_slot():
                out = poster(reader, spec, self.ctx.limits)  # type: ignore[arg-type]
            return output_entry(out, info.last_modified, poster=1)

        return compute

    def _stream(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        bucket: str,
        key: str,
        info: ObjectInfo,
        filename: str,
        download: bool,
    ) -> None:
        """The stored bytes, unchanged, streamed with Range; active types only as sandboxed downloads."""
        ctype = self._content_type(bucket, key, info)
        base = normalize_type(ctype)
        tag = '"' + (info.etag or f"{info.size:x}-{int(info.last_modified):x}") + '"'
        req.context.cache = "stream"

        def opener(start: int, end: int):
            return self.ctx.open_stream(bucket, key, start, end)

        respond(req, resp, ctype, tag, info.last_modified, info.size, opener=opener)
        passive = is_passive(base)
        kind = "attachment" if download or not passive else "inline"
        resp.set_header("Content-Disposition", content_disposition(kind, filename))
        if not (is_media_type(base) or base == "application/pdf"):
            resp.set_header("Content-Security-Policy", SANDBOX)


def _last(value: object) -> str | None:
    if isinstance(value, (list, tuple)):
        return str(value[-1]) if value else ""
    return None if value is None else str(value)


class AttachmentResource(StoredFileResource):
    def __init__(self, ctx: Context):
        super().__init__(ctx, ctx.settings.cdn_bucket)

    def on_get(self, req: falcon.Request, resp: falcon.Response, rest: str = "") -> None:
        channel, attachment, filename = parse_path(req)
        self.serve(req, resp, f"attachments/{channel}/{attachment}/{filename}", filename)

    on_head = on_get


def add_routes(app: falcon.App, ctx: Context) -> None:
    resource = AttachmentResource(ctx)
    app.add_route("/attachments/{rest:path}", resource)

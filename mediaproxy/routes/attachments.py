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
import threading
import unicodedata
from collections import OrderedDict
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
from .common import output_entry, serve_transform, snowflake

SNIFF_BYTES = 512
SANDBOX = "default-src 'none'; sandbox"
GENERIC_TYPES = frozenset(("", "application/octet-stream", "binary/octet-stream", "application/unknown"))
MAX_FILENAME_BYTES = 255
_ATTR_CHARS = "!#$&+-.^_`|~"  # RFC 5987 attr-char besides ALPHA / DIGIT
_HEADER_VALUE = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,200}")
_EXT = {"jpeg": "jpg"}
_TYPES_KEPT = 4096


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


class AttachmentResource:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._types: OrderedDict[tuple, str] = OrderedDict()
        self._lock = threading.Lock()

    def _content_type(self, bucket: str, key: str, info: ObjectInfo) -> str:
        memo = (bucket, key, info.etag, info.size, info.last_modified, info.content_type)
        with self._lock:
            found = self._types.get(memo)
        if found is not None:
            return found
        head = b""
        if info.size:
            _, body = self.ctx.storage.open(bucket, key, 0, min(info.size, SNIFF_BYTES) - 1)
            try:
                head = body.read(SNIFF_BYTES)
            finally:
                body.close()
        ctype = resolve_type(info.content_type, head)
        with self._lock:
            self._types[memo] = ctype
            while len(self._types) > _TYPES_KEPT:
                self._types.popitem(last=False)
        return ctype

    def on_get(self, req: falcon.Request, resp: falcon.Response, rest: str = "") -> None:
        channel, attachment, filename = parse_path(req)
        spec = parse_spec(ATTACHMENT, req.params)
        download = parse_bool("download", _last(req.params.get("download"))) or False
        with self.ctx.miss_slot():  # every attachment answer asks storage first
            self._get(req, resp, channel, attachment, filename, spec, download)

    def _get(self, req: falcon.Request, resp: falcon.Response, channel: str, attachment: str, filename: str,
             spec: TransformSpec, download: bool) -> None:
        bucket, key = self.ctx.settings.cdn_bucket, f"attachments/{channel}/{attachment}/{filename}"
        info = self.ctx.storage.head(bucket, key)
        ctype = normalize_type(self._content_type(bucket, key, info)) if spec.transform else ""

        if spec.transform and is_media_type(ctype) and ctype.startswith("image/"):
            serve_transform(req, resp, self.ctx, bucket, key, spec)
        elif spec.transform and spec.format != SOURCE and ctype.startswith(("video/", "audio/")):
            serve_transform(req, resp, self.ctx, bucket, key, spec, compute=self._poster(bucket, key, info, spec))
        else:
            self._stream(req, resp, bucket, key, info, filename, download)
            return
        fmt = spec.format if spec.format != SOURCE else (resp.content_type or "").removeprefix("image/")
        name = renamed(filename, fmt) if fmt else filename
        resp.set_header("Content-Disposition", content_disposition("attachment" if download else "inline", name))

    on_head = on_get

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


def add_routes(app: falcon.App, ctx: Context) -> None:
    resource = AttachmentResource(ctx)
    app.add_route("/attachments/{rest:path}", resource)

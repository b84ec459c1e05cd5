"""What the media resources share: validation of path segments, serving a
cached transform, and streaming a stored object."""

from __future__ import annotations

import re
from collections.abc import Callable

import falcon

from ..cache import Entry
from ..context import Context
from ..errors import BadRequest
from ..hotpath import etag, result_key
from ..http import respond, respond_entry
from ..media import pipeline
from ..media.spec import TransformSpec

_SNOWFLAKE = re.compile(r"[0-9]{1,20}")
_HASH = re.compile(r"[A-Za-z0-9_]{1,100}")


def snowflake(value: str, what: str = "id") -> str:
    if not _SNOWFLAKE.fullmatch(value):
        raise BadRequest(f"invalid {what}")
    return value


def hash_segment(value: str) -> str:
    if not _HASH.fullmatch(value):
        raise BadRequest("invalid hash")
    return value


def split_ext(filename: str) -> tuple[str, str]:
    stem, dot, ext = filename.rpartition(".")
    if not dot or not stem:
        raise BadRequest("missing file extension")
    return stem, ext.lower()


def load_original(ctx: Context, bucket: str, key: str) -> tuple[float, bytes]:
    """The source bytes (from the originals cache, else storage) and their Last-Modified."""
    okey = result_key(bucket, key, "original", "")
    entry = ctx.cache.get(okey)
    if entry is not None:
        return entry.last_modified, entry.read_all()
    info, data = ctx.storage.get(bucket, key, ctx.settings.max_source_bytes)
    ctx.cache.put(okey, Entry(info.content_type or "", "", info.last_modified, len(data), body=data))
    return info.last_modified, data


def output_entry(out: pipeline.Output, last_modified: float, **extra: int) -> Entry:
    """The cache entry for one encoded result: its bytes, a strong ETag from them, the source's date."""
    return Entry(
        out.content_type,
        etag(out.body),
        last_modified,
        len(out.body),
        body=out.body,
        extra={"w": out.width, "h": out.height, "f": out.frames, **extra},
    )


def render(ctx: Context, bucket: str, key: str, spec: TransformSpec) -> Entry:
    last_modified, data = load_original(ctx, bucket, key)
    with ctx.transform_slot():
        out = pipeline.transform(data, spec, ctx.limits)
    return output_entry(out, last_modified)


def serve_transform(
    req: falcon.Request,
    resp: falcon.Response,
    ctx: Context,
    bucket: str,
    key: str,
    spec: TransformSpec,
    compute: Callable[[], Entry] | None = None,
) -> None:
    """Serve one transformed result, from the cache or computed once."""
    rkey = result_key(bucket, key, spec.canonical(), pipeline.PIPELINE_VERSION)
    entry, hit = ctx.cache.get(rkey), True
    if entry is None:  # a miss: storage and a transform, in a bounded share of the threads
        with ctx.miss_slot():
            entry, hit = ctx.cache.get_or_compute(
                rkey, compute or (lambda: render(ctx, bucket, key, spec)), ctx.settings.transform_wait
            )
    req.context.cache = "hit" if hit else "miss"
    resp.set_header("X-Cache", "HIT" if hit else "MISS")
    respond_entry(req, resp, entry)


def serve_stored(
    req: falcon.Request,
    resp: falcon.Response,
    ctx: Context,
    bucket: str,
    key: str,
    content_type: str | None = None,
) -> None:
    """Stream a stored object unchanged, with Range, never holding it whole."""
    with ctx.miss_slot():
        _serve_stored(req, resp, ctx, bucket, key, content_type)


def _serve_stored(
    req: falcon.Request, resp: falcon.Response, ctx: Context, bucket: str, key: str, content_type: str | None
) -> None:
    info = ctx.storage.head(bucket, key)
    tag = '"' + (info.etag or f"{info.size:x}-{int(info.last_modified):x}") + '"'
    req.context.cache = "stream"

    def opener(start: int, end: int):
        return ctx.open_stream(bucket, key, start, end)

    respond(
        req,
        resp,
        content_type or info.content_type or "application/octet-stream",
        tag,
        info.last_modified,
        info.size,
        opener=opener,
    )

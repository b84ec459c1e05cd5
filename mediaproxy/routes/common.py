"""What the media resources share: validation of path segments, serving a
cached transform, and streaming a stored object."""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

import falcon

from .. import metrics
from ..cache import Entry
from ..context import Context
from ..errors import BadRequest
from ..hotpath import etag, result_key
from ..http import respond, respond_entry
from ..media import pipeline
from ..media.spec import TransformSpec
from ..storage import ObjectInfo

T = TypeVar("T")
SNIFF_BYTES = 512
_VERDICTS_KEPT = 4096

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
    ctx.cache.put(okey, Entry(info.content_type or "", "", info.last_modified, len(data), body=data), (bucket, key))
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
        t0 = time.perf_counter()
        out = pipeline.transform(data, spec, ctx.limits)
        metrics.transform_done(out.content_type, time.perf_counter() - t0)
    return output_entry(out, last_modified)


def transformed(ctx: Context, bucket: str, key: str, spec: TransformSpec,
                compute: Callable[[], Entry] | None = None) -> tuple[Entry, bool]:
    """One transformed result and whether the cache had it: from the cache, or computed once."""
    rkey = result_key(bucket, key, spec.canonical(), pipeline.PIPELINE_VERSION)
    entry = ctx.cache.get(rkey)
    if entry is not None:
        return entry, True
    return computed(ctx, bucket, key, spec, rkey, compute)


def computed(ctx: Context, bucket: str, key: str, spec: TransformSpec, rkey: str,
             compute: Callable[[], Entry] | None = None) -> tuple[Entry, bool]:
    """A miss of result ``rkey``: storage and a transform, in a bounded share of the threads, computed
    once; (entry, True) when another request computed it meanwhile (the cache is asked again, once)."""
    with ctx.miss_slot():
        return ctx.cache.get_or_compute(
            rkey, compute or (lambda: render(ctx, bucket, key, spec)), ctx.settings.transform_wait, (bucket, key)
        )


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
    entry, hit = transformed(ctx, bucket, key, spec, compute)
    req.context.cache = "hit" if hit else "miss"
    metrics.cache_outcome(hit, entry.length)
    resp.set_header("X-Cache", "HIT" if hit else "MISS")
    respond_entry(req, resp, entry)


class HeadSniffer(Generic[T]):
    """A verdict on the first bytes of a stored object, read once per object version.

    One ranged read of at most ``SNIFF_BYTES``; the verdict is remembered
    (bounded, least recently added dropped first) by bucket, key and the
    object's tag, size and date, so a replaced object is judged again.
    """

    def __init__(self, ctx: Context, judge: Callable[[ObjectInfo, bytes], T]):
        self.ctx = ctx
        self.judge = judge
        self._memo: OrderedDict[tuple, T] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, bucket: str, key: str, info: ObjectInfo) -> T:
        memo = (bucket, key, info.etag, info.size, info.last_modified, info.content_type)
        with self._lock:
            if memo in self._memo:
                return self._memo[memo]
        head = b""
        if info.size:
            _, body = self.ctx.storage.open(bucket, key, 0, min(info.size, SNIFF_BYTES) - 1)
            try:
                head = body.read(SNIFF_BYTES)
            finally:
                body.close()
        verdict = self.judge(info, head)
        with self._lock:
            self._memo[memo] = verdict
            while len(self._memo) > _VERDICTS_KEPT:
                self._memo.popitem(last=False)
        return verdict


def serve_stored(
    req: falcon.Request,
    resp: falcon.Response,
    ctx: Context,
    bucket: str,
    key: str,
    content_type: str | None = None,
    info: ObjectInfo | None = None,
) -> None:
    """Stream a stored object unchanged, with Range, never holding it whole."""
    with ctx.miss_slot():
        _serve_stored(req, resp, ctx, bucket, key, content_type, info)


def _serve_stored(
    req: falcon.Request,
    resp: falcon.Response,
    ctx: Context,
    bucket: str,
    key: str,
    content_type: str | None,
    info: ObjectInfo | None,
) -> None:
    info = info or ctx.storage.head(bucket, key)
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

"""The image routes' fast path: a WSGI layer that answers the image families (avatars, icons,
emojis…) without entering Falcon: result-cache hits, and misses too.

A hit is the common case of a CDN origin (the same avatar asked for again by
another edge), and on a sync WSGI stack Falcon's per-request machinery
(Request/Response objects, middleware, routing, header handling) costs more
than the hit itself. A miss is a transform, but on the small outputs that are
most of a chat CDN's misses (a 64 px emoji costs ~10 ms) the same machinery, a
second parse and the cache asked three times instead of twice were several
percent of it. This layer does only what an image answer needs:

  route the path with the image families' own table (``cdn.FAMILIES``) →
  parse and validate with the resource's own ``target()`` (the same code
  Falcon's responder runs, so the same canonical spec and the same key) →
  one cache read → on a miss, the same compute Falcon's responder calls
  (``routes.common.computed``: storage, the transform, the cache) → headers
  from the entry → body (bytes, or the cached file through
  ``wsgi.file_wrapper``/sendfile).

Parsing is memoised per (path, query): a URL always parses to the same key.
A failed miss (a missing source, an undecodable one, a full worker) is answered
here as app.py's error handlers and FaultLog answer and log it. Anything else —
another route or method, a bad parameter (the 400 comes from Falcon), a Lottie
sticker, a non-ASCII path — falls through to Falcon untouched. The responses
are byte-identical to Falcon's for the same request (tests/test_fastpath.py
compares both over HTTP, hits and misses).

It sits *inside* every guard layer of ``app.wsgi_layers`` (the client IP
allow-list is outermost), so it can never bypass one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from falcon import code_to_http_status
from falcon.routing import CompiledRouter
from falcon.uri import parse_query_string

from . import metrics
from .cache import Entry
from .context import Context
from .errors import MediaError, unexpected_answer
from .hotpath import result_key
from .http import CLOSE, IMMUTABLE, NO_STORE, http_date, not_modified, pick_range
from .logs import error_answered
from .media.pipeline import PIPELINE_VERSION
from .media.spec import TransformSpec
from .routes.cdn import FAMILIES, ImageResource
from .routes.common import computed
from .storage import BoundedFile

_MEMO_MAX = 8192  # parsed URLs kept per worker (a few hundred bytes each)
_MEMO_URL_MAX = 512  # characters of path and query a kept URL has at most
_DATES_MAX = 4096
_L1_BYTES = 16 * 1024 * 1024  # memory tier per worker (cleared when full)
_L1_ITEM_MAX = 64 * 1024  # entries up to this size (larger ones are files: sendfile)
_L1_TTL = 5.0  # seconds an entry is served from memory before the disk cache is asked again
# An entry promised to the worker's event loop (``answers_from_memory``) has at least this long
# left in memory, so the answer that follows microseconds later cannot turn into a disk read.
_L1_PROMISE = 0.5
_STATUS = {200: "200 OK", 206: "206 Partial Content", 304: "304 Not Modified", 416: "416 Range Not Satisfiable"}
_TAIL = [("x-content-type-options", "nosniff"), ("access-control-allow-origin", "*")]
_ERROR_TYPE = ("content-type", "text/plain; charset=utf-8")

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]
# An image URL that parses: (result key, route template, object key, spec)
Resolved = tuple[str, str, str, TransformSpec]


class FastPath:
    """WSGI layer: answer the image routes (hits and misses), pass everything else to ``app``."""

    def __init__(self, app: WSGIApp, ctx: Context):
        self.app = app
        self.ctx = ctx
        self.cache = ctx.cache
        self.bucket = ctx.settings.cdn_bucket
        self.router = CompiledRouter()
        for family in FAMILIES:
            self.router.add_route(family.route, ImageResource(ctx, family))
        self._memo: dict[tuple[str, str], Resolved | None] = {}
        self._dates: dict[float, str] = {}
        self._l1: dict[str, tuple[float, Entry]] = {}
        self._l1_bytes = 0
        self._l1_lock = threading.Lock()  # taken to fill the tier (a disk hit), never to read it
        # the entry ``answers_from_memory`` promised, kept for the answer that follows on the same
        # thread (the event loop's): another thread clearing the full memory tier in between must not
        # turn that answer into a disk read or a transform on the loop
        self._promised = threading.local()

    def _resolve(self, path: str, qs: str) -> Resolved | None:
        """(result key, route template, object key, spec) of an image-route URL that parses, else None."""
        memo = self._memo
        found = memo.get((path, qs), False)
        if found is not False:
            return found  # type: ignore[return-value]
        resolved = None
        match = self.router.find(path) if path.isascii() else None
        if match is not None:
            resource, _, params, template = match
            try:
                key, spec = resource.target(params, parse_query_string(qs, keep_blank=True, csv=False))
            except MediaError:
                spec = None  # a bad request: Falcon answers it (and the memo remembers to pass it on)
            if spec is not None:
                resolved = (result_key(self.bucket, key, spec.canonical(), PIPELINE_VERSION), template, key, spec)
        if len(path) + len(qs) <= _MEMO_URL_MAX:  # a URL padded with unknown parameters is parsed, not kept
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            memo[(path, qs)] = resolved
        return resolved

    def _lookup(self, rkey: str) -> Entry | None:
        """The cached entry: from this worker's small memory tier, else from the disk cache.

        Small entries (the avatars and emojis that make up most hits) are kept
        in memory for a few seconds: the SQLite read releases and retakes the
        GIL, and with several threads per worker that hand-off, not the read,
        is what a disk hit costs. Entries are content-addressed and never
        change under one key, so the only staleness is a purge of the disk
        cache showing up at most ``_L1_TTL`` seconds late.
        """
        now = time.monotonic()
        held = self._l1.get(rkey)
        if held is not None and held[0] > now:
            return held[1]
        entry = self.cache.get(rkey)
        if entry is not None and entry.body is not None and entry.length <= _L1_ITEM_MAX:
            with self._l1_lock:  # threads filling the tier at once must not lose count of its bytes
                held = self._l1.get(rkey)
                if held is not None:  # a copy (expired, or another thread's) is replaced: count its bytes once
                    self._l1_bytes -= held[1].length
                if self._l1_bytes + entry.length > _L1_BYTES:
                    self._l1.clear()
                    self._l1_bytes = 0
                self._l1[rkey] = (now + _L1_TTL, entry)
                self._l1_bytes += entry.length
        return entry

    def answers_from_memory(self, method: str, path: str, qs: str) -> bool:
        """Whether this request (its PATH_INFO and QUERY_STRING) is a hit this layer answers from
        the memory tier: no disk read, no other layer, nothing that waits. The worker then answers
        it on its event loop instead of a thread (mediaproxy/worker/answers.py); the answer itself
        still comes from ``__call__``, through every layer around this one, with the entry seen here."""
        if (method != "GET" and method != "HEAD") or not self.cache.enabled:
            return False
        self._promised.entry = None
        resolved = self._resolve(path, qs)
        if resolved is None:
            return False
        held = self._l1.get(resolved[0])
        if held is None or held[0] <= time.monotonic() + _L1_PROMISE:
            return False
        self._promised.entry = (resolved[0], held[1])
        return True

    def _date(self, ts: float) -> str:
        s = self._dates.get(ts)
        if s is None:
            if len(self._dates) >= _DATES_MAX:
                self._dates.clear()
            s = self._dates[ts] = http_date(ts)
        return s

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if method != "GET" and method != "HEAD":
            return self.app(environ, start_response)
        path = environ.get("PATH_INFO") or "/"
        resolved = self._resolve(path, environ.get("QUERY_STRING", ""))
        if resolved is None:
            return self.app(environ, start_response)
        entry = None
        if self.cache.enabled:
            promised = getattr(self._promised, "entry", None)
            if promised is not None and promised[0] == resolved[0]:
                self._promised.entry = None
                entry = promised[1]
            else:
                entry = self._lookup(resolved[0])
        route = resolved[1]
        hit = True
        try:
            if entry is None:
                rkey, route, key, spec = resolved
                entry, hit = computed(self.ctx, self.bucket, key, spec, rkey)
                if not hit:
                    metrics.cache_outcome(False)  # a hit is counted with the request (``_mark``)
            return self._answer(environ, start_response, method, route, entry, hit)
        except MediaError as exc:
            return self._error(environ, start_response, method, path, route, exc.status, exc.reason, exc.headers)
        except Exception as exc:  # as app.py's handler answers it (a bug, or a TimeoutError)
            if entry is not None:
                entry.close()
            status, reason, close = unexpected_answer(method, path, exc)
            if close:
                environ[CLOSE] = True
            return self._error(environ, start_response, method, path, route, status, reason, None, logged=True)

    def _answer(self, environ: dict, start_response: Callable, method: str, route: str, entry: Entry,
                hit: bool) -> Iterable[bytes]:
        """The entry's answer, as app.py's route gives it (``http.respond``): 200, 206, 304 or 416."""
        etag, lm, size = entry.etag, entry.last_modified, entry.length
        headers = [
            ("x-cache", "HIT" if hit else "MISS"),
            ("content-type", entry.content_type),
            ("etag", etag),
            ("last-modified", self._date(lm)),
            ("cache-control", IMMUTABLE),
            ("accept-ranges", "bytes"),
        ]
        body: Iterable[bytes] = ()
        length: int | str | None = None
        get = environ.get
        if not_modified(get("HTTP_IF_NONE_MATCH"), get("HTTP_IF_MODIFIED_SINCE"), etag, lm):
            status = 304
            del headers[1]  # a 304 has no Content-Type (as Falcon sends it)
            entry.close()
        else:
            try:
                rng = pick_range(get("HTTP_RANGE"), get("HTTP_IF_RANGE"), etag, lm, size)
            except MediaError as exc:  # 416: the error body, as app.py's handler writes it
                entry.close()
                status, data = exc.status, (exc.reason + "\n").encode()
                headers[1] = _ERROR_TYPE
                headers[4] = ("cache-control", NO_STORE)
                headers.extend((k.lower(), v) for k, v in exc.headers.items())
                length = str(len(data))
                headers.extend(_TAIL)  # Falcon adds an error body's Content-Length last
                headers.append(("content-length", length))
                body = [data] if method == "GET" else ()
                start_response(_STATUS[status], headers)
                _mark(environ, route, hit, 0)
                return body
            else:
                start, end = (0, size - 1) if rng is None else rng
                length = max(0, end - start + 1)
                status = 200
                if rng is not None:
                    status = 206
                    headers.append(("content-range", f"bytes {start}-{end}/{size}"))
                headers.append(("content-length", str(length)))
                if method == "HEAD" or length == 0:
                    entry.close()
                elif entry.file is not None:
                    f = BoundedFile(entry.file, start, length)
                    wrapper = environ.get("wsgi.file_wrapper")
                    body = wrapper(f, 64 * 1024) if wrapper else _chunks(f)
                else:
                    data = entry.body or b""
                    body = [data if rng is None else data[start : end + 1]]
        headers.extend(_TAIL)
        start_response(_STATUS[status], headers)
        _mark(environ, route, hit, length if isinstance(length, int) and method == "GET" else 0)
        return body

    @staticmethod
    def _error(environ: dict, start_response: Callable, method: str, path: str, route: str, status: int,
               reason: str, extra: dict[str, str] | None, logged: bool = False) -> Iterable[bytes]:
        """A failed miss, answered as app.py's error handlers and ``logs.FaultLog`` answer and log it."""
        data = (reason.rstrip("\n") + "\n").encode()
        headers = [_ERROR_TYPE, ("cache-control", NO_STORE)]
        if extra:
            headers.extend((k.lower(), v) for k, v in extra.items())
        headers.extend(_TAIL)
        headers.append(("content-length", str(len(data))))
        if not logged:
            error_answered(method, path, status, reason)
        start_response(code_to_http_status(status), headers)  # as Falcon writes the status line
        environ["mediaproxy.route"] = route
        environ["mediaproxy.cache"] = "-"
        environ["mediaproxy.fast"] = True
        return [data] if method == "GET" else []


def _mark(environ: dict, route: str, hit: bool, length: int) -> None:
    """What the access log and the metrics need: observe.RequestLayer writes them, and counts
    a cache hit (``mediaproxy.hit_bytes``) with the request, under one lock."""
    environ["mediaproxy.route"] = route
    environ["mediaproxy.fast"] = True
    if hit:
        environ["mediaproxy.cache"] = "hit"
        environ["mediaproxy.hit_bytes"] = length
    else:
        environ["mediaproxy.cache"] = "miss"


def _chunks(f) -> Iterable[bytes]:
    try:
        while data := f.read(64 * 1024):
            yield data
    finally:
        f.close()

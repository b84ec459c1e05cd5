"""HTTP semantics shared by every media route: headers, conditional requests,
ranges, streaming. Routes hand an Entry (or a storage stream) to these."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email.utils import formatdate, parsedate_to_datetime
from typing import BinaryIO

import falcon

from . import logs
from .cache import Entry
from .errors import MediaError, RangeNotSatisfiable
from .hotpath import etag_matches, parse_range
from .storage import CHUNK, BoundedFile
from .worker import BODY_IN_MEMORY, SMALL_BODY_MAX

IMMUTABLE = "public, max-age=31536000, immutable"
NO_STORE = "no-store"
CLOSE = "mediaproxy.close_connection"  # WSGI environ key: end the connection after this response


def http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


def not_modified(inm: str | None, ims: str | None, etag: str, last_modified: float) -> bool:
    """If-None-Match (wins when present), else If-Modified-Since: answer 304?"""
    if inm is not None:
        return etag_matches(inm, etag)
    if ims:
        try:
            since = parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
        return int(last_modified) <= since
    return False


def pick_range(
    header: str | None, if_range: str | None, etag: str, last_modified: float, size: int
) -> tuple[int, int] | None:
    """The byte range to send (inclusive), None for the whole body; raises 416 when unsatisfiable."""
    if header is None:
        return None
    if if_range is not None:
        if if_range.startswith('"') or if_range.startswith("W/"):
            if if_range != etag:  # If-Range needs a strong match
                return None
        elif if_range.strip() != http_date(last_modified):
            return None
    rng = parse_range(header, size)
    if rng is not None and rng[0] < 0:
        raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return rng


def _not_modified(req: falcon.Request, etag: str, last_modified: float) -> bool:
    return not_modified(req.get_header("If-None-Match"), req.get_header("If-Modified-Since"), etag, last_modified)


def _range(req: falcon.Request, etag: str, last_modified: float, size: int) -> tuple[int, int] | None:
    return pick_range(req.get_header("Range"), req.get_header("If-Range"), etag, last_modified, size)


def media_headers(resp: falcon.Response, content_type: str, etag: str, last_modified: float) -> None:
    resp.content_type = content_type
    resp.set_header("ETag", etag)
    resp.set_header("Last-Modified", http_date(last_modified))
    resp.set_header("Cache-Control", IMMUTABLE)
    resp.set_header("Accept-Ranges", "bytes")


def respond(
    req: falcon.Request,
    resp: falcon.Response,
    content_type: str,
    etag: str,
    last_modified: float,
    size: int,
    body: bytes | None = None,
    opener=None,
) -> None:
    """Answer one media request: 304, 206, 416 or 200, GET or HEAD.

    Either ``body`` (bytes in memory) or ``opener`` (opens a stream of a byte
    range, called only when bytes are to be sent) gives the content.
    """
    media_headers(resp, content_type, etag, last_modified)
    if _not_modified(req, etag, last_modified):
        resp.status = falcon.HTTP_304
        resp.content_type = None
        return
    rng = _range(req, etag, last_modified, size)
    start, end = (0, size - 1) if rng is None else rng
    length = max(0, end - start + 1)
    if rng is not None:
        resp.status = falcon.HTTP_206
        resp.set_header("Content-Range", f"bytes {start}-{end}/{size}")
    resp.content_length = length
    if req.method == "HEAD" or length == 0:
        return
    if body is not None:
        resp.data = body if rng is None else body[start : end + 1]
    else:
        stream = opener(start, end)
        # A file goes to sendfile as it is; a storage stream is read through a guard.
        resp.stream = stream if hasattr(stream, "fileno") else GuardedStream(stream, req, length)


class GuardedStream:
    """A storage stream sent as the body: if storage fails mid-body (S3 cut, a timeout),
    the status line is long gone, so the connection is closed at once (the client sees
    fewer bytes than Content-Length, never a wrong body) and the fault is one WARNING
    line, not the stack trace gunicorn writes for an exception out of the body."""

    def __init__(self, body: BinaryIO, req: falcon.Request, length: int):
        self._body = body
        self._req = req
        self._length = length

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        try:
            while data := self._body.read(CHUNK):
                sent += len(data)
                yield data
        except MediaError as exc:
            req = self._req
            logs.fault(req.method, req.path, f"{exc.reason} after {sent} of {self._length} bytes; connection closed")
            sock = req.env.get("gunicorn.socket")
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        finally:
            self.close()

    def close(self) -> None:
        self._body.close()


def respond_entry(req: falcon.Request, resp: falcon.Response, entry: Entry) -> None:
    if entry.file is not None:
        f: BinaryIO = entry.file

        def opener(start: int, end: int) -> BinaryIO:
            return BoundedFile(f, start, end - start + 1)  # type: ignore[return-value]

        try:
            respond(req, resp, entry.content_type, entry.etag, entry.last_modified, entry.length, opener=opener)
        finally:
            if resp.stream is None:
                entry.close()
        return
    respond(req, resp, entry.content_type, entry.etag, entry.last_modified, entry.length, body=entry.body)


def body_in_memory(req: falcon.Request) -> bool | None:
    """Whether the request's body was read whole before the request took a thread (True), or is
    still on the network (False: larger than ``MEDIAPROXY_SMALL_BODY_MAX``); None on a server
    that does not say (stock gthread, in-process tests)."""
    return req.env.get(BODY_IN_MEMORY)


def small_body_max(req: falcon.Request) -> int | None:
    return req.env.get(SMALL_BODY_MAX)


def close_connection(req: falcon.Request) -> None:
    """Answer this request with ``Connection: close`` and end the connection after it.

    For a response sent before the request body was read (a body over the cap,
    a wrong secret): the unread bytes would otherwise be taken for the next
    request, or the server would drop a connection it had announced as
    kept alive, and the client's next request on it would meet a reset.
    ``ClosingLayer`` carries this to the server.
    """
    req.env[CLOSE] = True


class ClosingLayer:
    """WSGI layer: honour ``close_connection`` on servers that can be told.

    WSGI gives an application no say over the connection (``Connection`` is a
    hop-by-hop header, which servers drop), so this asks the server itself:
    gunicorn's ``start_response`` is a method of its response object, whose
    ``force_close()`` makes it send ``Connection: close`` and close gracefully
    (half-close, then drain what the client still sends, so it sees no reset).
    On a server without that method nothing changes.

    ``answers_from_memory(method, path, query)``, when given, says which requests the layers
    inside answer from memory without waiting on anything (mediaproxy's worker answers those
    on its event loop); None: no such request.
    """

    def __init__(self, app, answers_from_memory=None):
        self.app = app
        self.answers_from_memory = answers_from_memory

    def __call__(self, environ: dict, start_response):
        def start(status, headers, exc_info=None):
            if environ.get(CLOSE):
                force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
                if callable(force_close):
                    force_close()
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


def error_json(resp: falcon.Response, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
    import orjson

    resp.status = falcon.code_to_http_status(status)
    resp.content_type = "application/json"
    resp.data = orjson.dumps({"error": reason})
    resp.set_header("Cache-Control", NO_STORE)
    for name, value in (headers or {}).items():
        resp.set_header(name, value)


def error_body(resp: falcon.Response, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
    resp.status = falcon.code_to_http_status(status)
    resp.content_type = "text/plain; charset=utf-8"
    resp.data = (reason.rstrip("\n") + "\n").encode()
    resp.set_header("Cache-Control", NO_STORE)
    for name, value in (headers or {}).items():
        resp.set_header(name, value)

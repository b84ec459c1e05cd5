"""The outermost WSGI layer: request ids, the access log and the request metrics.

It never answers a request itself; it only annotates every response, so the
fast path, Falcon and the client IP guard all give the same ``X-Request-Id``
header, the same access-log line and the same metrics.

Request id: an ``X-Request-Id`` header is believed only from a trusted edge
(the socket peer is in ``MEDIAPROXY_TRUSTED_PROXY_CIDRS``) and only when it
is 1..128 characters of ``A-Z a-z 0-9 . _ ~ : + / = -``; otherwise (absent,
untrusted, too long, hostile characters) a new one is made (16 hex digits).
It is set in a context variable for the request (``logs.REQUEST_ID``), so
every log line written while serving it carries it.

Access log: one JSON object per line (logger ``mediaproxy.access``), the same
keys from every path::

  {"ts": "2026-01-31T12:34:56.789Z", "request_id": "…", "client": "203.0.113.9",
   "method": "GET", "path": "/avatars/1/abc.webp", "query": "size=64",
   "route": "/avatars/{user_id}/{filename}", "status": 200, "bytes": 1234,
   "cache": "hit", "ms": 0.41, "fast": true}

``client`` is the resolved address (``X-Forwarded-For`` from trusted proxies,
as the allow-list reads it; the peer otherwise, or the raw peer text when it
cannot be parsed). ``bytes`` is always an integer: the body length declared
(0 for HEAD, 304 and bodies of unknown length). ``ms`` and the latency metric
run until the response starts (headers and body ready); streaming a large
body to a slow client is not included. ``cache`` is ``hit``/``miss`` for
transformed results, ``stream`` for stored bytes sent as they are, ``-`` else.
Inner layers report route and cache outcome through ``environ`` keys
(``mediaproxy.route``, ``mediaproxy.cache``, ``mediaproxy.fast``).
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Callable, Iterable

from . import metrics
from .clientip import NetworkSet, client_address
from .hotpath import decimal
from .logs import REQUEST_ID, access_line, utc_timestamp

_VALID_ID = re.compile(r"[A-Za-z0-9._~:+/=-]{1,128}")
_NO_BODY = (204, 304)

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


class _Ids:
    prefix = os.urandom(4).hex()
    count = itertools.count()

    @classmethod
    def reset(cls) -> None:  # in a forked child: its own prefix
        cls.prefix, cls.count = os.urandom(4).hex(), itertools.count()


os.register_at_fork(after_in_child=_Ids.reset)


def new_request_id() -> str:
    """16 hex digits: 8 random per process (drawn again after a fork), then a counter.
    Unique, not secret; a syscall per request (os.urandom, even os.getpid) costs more than the rest."""
    return f"{_Ids.prefix}{next(_Ids.count) & 0xFFFFFFFF:08x}"


class RequestLayer:
    def __init__(self, app: WSGIApp, settings):
        self.app = app
        self.proxies = NetworkSet(settings.trusted_proxy_cidrs)
        self.access_log = settings.access_log

    def request_id(self, environ: dict) -> str:
        incoming = environ.get("HTTP_X_REQUEST_ID")
        if incoming is not None and self.proxies and _VALID_ID.fullmatch(incoming):
            from .clientip import parse_addr

            peer = parse_addr(environ.get("REMOTE_ADDR") or "")
            if peer is not None and peer in self.proxies:
                return incoming
        return new_request_id()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        t0 = time.perf_counter()
        rid = self.request_id(environ)
        environ["mediaproxy.request_id"] = rid
        started: list = []

        def start(status: str, headers: list, exc_info=None):
            headers.append(("X-Request-Id", rid))
            started[:] = (status, headers)
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        token = REQUEST_ID.set(rid)
        try:
            body = self.app(environ, start)
        finally:
            REQUEST_ID.reset(token)
        if started:
            self.finish(environ, rid, started[0], started[1], time.perf_counter() - t0)
        return body

    def finish(self, environ: dict, rid: str, status_line: str, headers: list, seconds: float) -> None:
        status = int(status_line[:3])
        method = environ["REQUEST_METHOD"]
        length = 0
        if method != "HEAD" and status not in _NO_BODY:
            for name, value in reversed(headers):  # set last by the fast path and by Falcon
                if len(name) == 14 and name.lower() == "content-length":
                    length = int(value) if decimal(value) else 0
                    break
        get = environ.get
        route = get("mediaproxy.route")
        metrics.observe_request(route, method, status, seconds, length, get("mediaproxy.hit_bytes"))
        if not self.access_log:
            return
        if self.proxies:
            ip = client_address(environ, self.proxies)
            client = str(ip) if ip is not None else get("REMOTE_ADDR", "")
        else:  # the peer, as the server wrote it (no address parsing per request)
            client = get("REMOTE_ADDR", "")
        access_line({
            "ts": utc_timestamp(time.time()),
            "request_id": rid,
            "client": client,
            "method": method,
            "path": get("PATH_INFO") or "/",
            "query": get("QUERY_STRING", ""),
            "route": route,
            "status": status,
            "bytes": length,
            "cache": get("mediaproxy.cache", "-"),
            "ms": round(seconds * 1000, 2),
            "fast": get("mediaproxy.fast", False),
        })


def install(app: WSGIApp, settings) -> WSGIApp:
    return RequestLayer(app, settings)

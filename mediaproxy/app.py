"""create_app(settings) → falcon.App: the one route table, middleware, and
the one place where exceptions become status codes."""

from __future__ import annotations

import logging
import time

import falcon
import orjson
import pyvips

from .context import Context
from .errors import MediaError
from .http import error_body, error_json
from .routes import attachments, cdn, external, internal, ops
from .settings import Settings
from .storage import Storage

log = logging.getLogger("mediaproxy")
access = logging.getLogger("mediaproxy.access")


class CommonHeaders:
    """nosniff and CORS on every response; one structured log line per request."""

    def __init__(self, access_log: bool):
        self.access_log = access_log

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.t0 = time.perf_counter()
        req.context.cache = "-"

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Access-Control-Allow-Origin", "*")
        if self.access_log:
            t0 = req.context.get("t0")
            ms = (time.perf_counter() - t0) * 1000 if t0 else 0.0
            access.info(
                orjson.dumps(
                    {
                        "method": req.method,
                        "path": req.path,
                        "route": req.uri_template,
                        "status": int(resp.status_code),
                        "bytes": resp.content_length if resp.content_length is not None else len(resp.data or b""),
                        "cache": req.context.get("cache", "-"),
                        "ms": round(ms, 2),
                    }
                ).decode()
            )


def _error(req: falcon.Request, resp: falcon.Response, status: int, reason: str,
           headers: dict[str, str] | None = None) -> None:
    # The library's APIs answer {"error": reason}; the origin's routes keep plain text.
    if req.context.get("json_errors"):
        error_json(resp, status, reason, headers)
    else:
        error_body(resp, status, reason, headers)


def _media_error(req: falcon.Request, resp: falcon.Response, exc: MediaError, params: dict) -> None:
    _error(req, resp, exc.status, exc.reason, exc.headers)


def _http_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError, params: dict) -> None:
    headers = dict(exc.headers or {})
    reason = exc.title if exc.description is None else exc.description
    _error(req, resp, exc.status_code, str(reason).lower(), headers)


def _unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict) -> None:
    log.exception("unhandled error on %s %s", req.method, req.path)
    _error(req, resp, 500, "internal error")


def configure_vips(settings: Settings) -> None:
    # A server transforms each source once per spec and caches the result
    # itself: libvips' operation cache only holds memory.
    pyvips.cache_set_max(0)
    pyvips.cache_set_max_mem(0)
    # libvips' own chatter ("thumbnailing ...", one line per operation) reaches
    # Python logging through pyvips at INFO: keep the log to one line per request.
    logging.getLogger("pyvips").setLevel(logging.WARNING)


def create_app(settings: Settings, storage: Storage | None = None) -> falcon.App:
    """The route groups of ``settings.mode``: ``media`` the origin, ``library`` the library's
    APIs and public URLs, ``all`` both."""
    configure_vips(settings)
    ctx = Context.build(settings, storage)
    origin = settings.mode in ("media", "all")
    middleware: list[object] = [CommonHeaders(settings.access_log)]
    lib = None
    if settings.mode in ("library", "all"):
        from .library.api.common import LibraryMiddleware
        from .library.build import build_library

        lib = build_library(settings, ctx)
        middleware.append(LibraryMiddleware(lib))
    app = falcon.App(middleware=middleware, cors_enable=False)
    app.req_options.keep_blank_qs_values = True
    app.req_options.strip_url_path_trailing_slash = False
    app.resp_options.secure_cookies_by_default = False
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(MediaError, _media_error)
    ops.add_routes(app, ctx)
    if origin:
        cdn.add_routes(app, ctx)
        attachments.add_routes(app, ctx)
        external.add_routes(app, ctx)
        internal.add_routes(app, ctx)
    if lib is not None:
        from .library.api import media, v1
        from .routes import library

        v1.add_routes(app, lib)
        media.add_routes(app, lib)
        library.add_routes(app, lib)
        from .library.api import v2  # seed 004 (issue 14)

        v2.add_routes(app, lib)
    return wsgi_layers(settings, ctx, app, fast_path=origin)


def wsgi_layers(settings: Settings, ctx: Context, app: falcon.App, fast_path: bool = True):
    """The WSGI layers around Falcon, built inside out; the last one added is outermost.

    Anything that must hold for every request (the client IP allow-list) is
    outermost, so that no faster path inside it can bypass it.
    """
    wsgi = app
    if settings.fast_path and fast_path:
        from .fastpath import install

        wsgi = install(wsgi, ctx, settings.access_log)  # inside every guard added after it
    from . import clientip

    wsgi = clientip.install(wsgi, settings)  # the client IP allow-list: outermost, keep it last
    return wsgi

"""create_app(settings) → falcon.App: the one route table, middleware, and
the one place where exceptions become status codes."""

from __future__ import annotations

import falcon

from . import logs
from .context import Context
from .errors import MediaError, unexpected_answer
from .http import close_connection, error_body, error_json
from .media.runtime import configure_vips
from .routes import attachments, cdn, external, internal, ops, static
from .settings import Settings
from .storage import Storage


class _LibraryGroup:
    """The library's route group (mediaproxy/library/build.py), imported only by the modes
    that serve it: SQLAlchemy, Alembic and huey stay out of a media-only worker."""

    @staticmethod
    def add_routes(app: falcon.App, ctx: Context) -> None:
        from .library.build import add_routes

        add_routes(app, ctx)


library = _LibraryGroup()

# The route groups each MEDIAPROXY_MODE serves, besides /_health and telemetry
# (every mode). One line per mode; settings.MODES names the accepted values.
MODES = {
    "media": (cdn, attachments, external, internal),
    "static": (static,),
    "library": (library,),
    "all": (cdn, attachments, external, internal, library),
}


class CommonHeaders:
    """nosniff and CORS on every response; the route and cache outcome for the access log
    (written by the outermost layer, ``mediaproxy/observe.py``)."""

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Access-Control-Allow-Origin", "*")
        env = req.env
        env["mediaproxy.route"] = req.uri_template
        env["mediaproxy.cache"] = req.context.get("cache", "-")


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
    status, reason, close = unexpected_answer(req.method, req.path, exc)
    req.context.logged = True  # logs.FaultLog: the line is written
    if close:
        close_connection(req)  # what is left of the body must not be read as the next request
    _error(req, resp, status, reason)


def create_app(settings: Settings, storage: Storage | None = None):
    """The WSGI application: Falcon's routes inside the WSGI layers (``wsgi_layers``)."""
    configure_vips(settings)
    ctx = Context.build(settings, storage)
    return wsgi_layers(settings, ctx, create_falcon_app(settings, ctx))


def create_falcon_app(settings: Settings, ctx: Context) -> falcon.App:
    """The route table of the running mode (``settings.mode``) and the error mapping."""
    app = falcon.App(middleware=[CommonHeaders(), logs.FaultLog()], cors_enable=False)
    app.req_options.keep_blank_qs_values = True
    app.req_options.strip_url_path_trailing_slash = False
    app.resp_options.secure_cookies_by_default = False
    app.add_error_handler(Exception, _unexpected)  # a TimeoutError too: unexpected_answer tells them apart
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(MediaError, _media_error)
    ops.add_routes(app, ctx)
    for group in MODES[settings.mode]:
        group.add_routes(app, ctx)
    return app


def wsgi_layers(settings: Settings, ctx: Context, app: falcon.App):
    """The WSGI layers around Falcon, built inside out; the last one added is outermost.

    Anything that must hold for every request (the client IP allow-list) is
    outside every path that answers, so that no faster path can bypass it;
    only the observing layer (``observe.py``) and the connection-closing hook wrap it.
    """
    wsgi = app
    from_memory = None
    if settings.fast_path and cdn in MODES[settings.mode]:  # it answers the image families only
        from .fastpath import FastPath

        wsgi = FastPath(wsgi, ctx)  # inside every guard added after it
        if ctx.cache.enabled:
            from_memory = wsgi.answers_from_memory
    from . import clientip

    wsgi = clientip.install(wsgi, settings)  # the client IP allow-list: outermost guard
    from . import observe

    # Request ids, the access log and request metrics: around everything (it
    # answers nothing itself), so a refusal by the guard is logged and counted too.
    wsgi = observe.install(wsgi, settings)
    from .http import ClosingLayer

    # Lets a responder end the connection (http.close_connection): it must see the
    # server's own start_response, so it is the outermost layer. It tells mediaproxy's worker
    # which requests the fast path answers from memory: the worker answers those on its event
    # loop, through all of these layers still (mediaproxy/worker/answers.py).
    return ClosingLayer(wsgi, answers_from_memory=from_memory)

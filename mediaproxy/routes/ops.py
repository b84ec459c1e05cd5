"""Health, readiness, telemetry and metrics."""

from __future__ import annotations

import importlib.util
import logging
from datetime import UTC, datetime
from pathlib import Path

import falcon
import orjson

from .. import metrics
from ..context import Context
from ..errors import Degraded, MediaError, NotFound
from ..storage import check_ready

log = logging.getLogger("mediaproxy.ops")

class HealthResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/plain; charset=utf-8"
        resp.set_header("Cache-Control", "no-store")
        resp.data = b"OK"
        req.context.cache = "-"

    on_head = on_get


class ReadyResource:
    """Readiness: ``200 ready`` when storage answers for the buckets of the mode (a directory that
    exists, or S3's HeadBucket) and every other part the mode needs does (the library's
    database), else ``503`` with the reason. ``/_health`` stays liveness only."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/plain; charset=utf-8"
        resp.set_header("Cache-Control", "no-store")
        try:
            check_ready(self.ctx.storage, self.ctx.settings)
        except MediaError as exc:
            resp.status = falcon.HTTP_503
            resp.data = f"not ready: storage: {exc.reason}\n".encode()
            return
        degraded = []
        for name, check in self.ctx.ready_checks:
            try:
                check()
            except Degraded as exc:  # still ready; the body says what is reduced
                degraded.append(f"{name}: {exc}")
            except Exception as exc:  # any failure of that part: its kind answered, the detail logged
                # (a driver's message names hosts and users: not for an unauthenticated route)
                log.warning("not ready: %s: %s", name, " ".join(str(exc).split())[:500])
                resp.status = falcon.HTTP_503
                resp.data = f"not ready: {name}: {type(exc).__name__}\n".encode()
                return
        resp.data = ("ready, degraded: " + "; ".join(degraded) + "\n").encode() if degraded else b"ready\n"

    on_head = on_get


class MetricsResource:
    """``GET /metrics`` in Prometheus' text format, for ``X-Internal-Secret`` holders only.

    Under gunicorn it sums every worker (multiprocess mode). The listener on
    ``MEDIAPROXY_METRICS_BIND`` serves the same from the master, which answers
    even while every worker thread is busy: prefer it where a port can be kept private."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        from .internal import check_secret

        check_secret(req, self.ctx.settings.internal_secret)
        metrics.flush()  # this worker's tally is current; the others' are at most a second old
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8"
        resp.set_header("Cache-Control", "no-store")
        resp.data = metrics.exposition(metrics.sibling_workers, self.ctx.settings.cache_dir)


class OpenAPIResource:
    """``/openapi.json``: built once at start-up for the running mode (``mediaproxy/openapi``)."""

    def __init__(self, ctx: Context):
        from ..openapi import build

        lib = ctx.settings.library
        self.body = orjson.dumps(build(ctx.settings.mode, api_prefix=lib.api_prefix, portal_path=lib.portal_path))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "application/json"
        resp.set_header("Cache-Control", "no-cache")
        resp.data = self.body


_DOCS_PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mediaproxy API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"><link rel="icon" href="/docs/favicon-32x32.png"></head>
<body><div id="swagger-ui"></div><script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script></body></html>
"""
_DOCS_INIT = b"""window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
"""
_DOCS_TYPES = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "application/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


class DocsResource:
    """Swagger UI at ``/docs``, its files from the ``swagger-ui-py`` package (no CDN).

    (``swagger-ui-bundle`` ships Swagger UI 4.15, which cannot read OpenAPI 3.1.)"""

    def __init__(self) -> None:
        # located, not imported: the package imports Jinja2 and PyYAML for the frameworks it
        # integrates with, which a worker would carry for nothing (only its files are served)
        spec = importlib.util.find_spec("swagger_ui")
        if spec is None or spec.origin is None:
            raise ImportError("the swagger-ui-py package is not installed")
        self.static = Path(spec.origin).resolve().parent / "static"
        self.files: dict[str, bytes] = {}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/html; charset=utf-8"
        resp.set_header("Cache-Control", "no-cache")
        resp.data = _DOCS_PAGE

    def on_get_asset(self, req: falcon.Request, resp: falcon.Response, asset: str) -> None:
        if asset == "init.js":
            data, ctype = _DOCS_INIT, "application/javascript; charset=utf-8"
        elif asset in _DOCS_TYPES:
            data = self.files.get(asset)
            if data is None:
                data = self.files.setdefault(asset, (self.static / asset).read_bytes())
            ctype = _DOCS_TYPES[asset]
        else:
            raise NotFound("no such file")
        resp.content_type = ctype
        resp.set_header("Cache-Control", "public, max-age=3600")
        resp.data = data


class TelemetryResource:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        resp.content_type = "application/json"
        resp.set_header("Cache-Control", "no-store")
        resp.data = orjson.dumps(
            {
                "telemetry_enabled": self.ctx.settings.telemetry_enabled,
                "service": self.ctx.settings.service_name,
                "timestamp": now,
            }
        )
        req.context.cache = "-"

    on_head = on_get


def add_routes(app: falcon.App, ctx: Context) -> None:
    app.add_route("/_health", HealthResource())
    app.add_route("/_ready", ReadyResource(ctx))
    app.add_route("/metrics", MetricsResource(ctx))
    app.add_route("/openapi.json", OpenAPIResource(ctx))
    docs = DocsResource()
    app.add_route("/docs", docs)
    app.add_route("/docs/{asset}", docs, suffix="asset")
    app.add_route("/internal/telemetry", TelemetryResource(ctx))

"""Health and telemetry."""

from __future__ import annotations

from datetime import UTC, datetime

import falcon
import orjson

from ..context import Context


class HealthResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/plain; charset=utf-8"
        resp.set_header("Cache-Control", "no-store")
        resp.data = b"OK"
        req.context.cache = "-"

    on_head = on_get


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
    app.add_route("/internal/telemetry", TelemetryResource(ctx))

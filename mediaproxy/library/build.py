"""Wiring: one Library per process, from Settings (the web app and the worker build it alike)."""

from __future__ import annotations

from ..context import Context
from ..settings import Settings
from .db import Database, upgrade_locked
from .jobs import Queue
from .service import Library


def build_library(settings: Settings, ctx: Context) -> Library:
    db = Database(settings.library.database_url, pool_size=settings.server.threads)
    if settings.library.migrate_on_start:
        upgrade_locked(db)
    queue = Queue(settings)
    return Library(ctx, db, queue.enqueue)


def add_routes(app, ctx: Context) -> None:
    """The library's route group (``MEDIAPROXY_MODE=library|all``): its APIs, its public URLs,
    and the middleware that opens one database session per library request."""
    from ..routes import library as public
    from .api import media, v1, v2
    from .api.common import LibraryMiddleware

    lib = build_library(ctx.settings, ctx)
    ctx.ready_checks.append(("database", lib.db.ping))
    app.add_middleware(LibraryMiddleware(lib))
    v1.add_routes(app, lib)
    media.add_routes(app, lib)
    v2.add_routes(app, lib)  # seed 004, under MEDIAPROXY_API_PREFIX
    public.add_routes(app, lib)

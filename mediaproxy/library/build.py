"""Wiring: one Library per process, from Settings (the web app and the job worker build it alike).

The one module that knows every layer: the dialects under ``api/``, the public URLs of
``routes/library.py``, the job queue and the service. Nothing below imports it back."""

from __future__ import annotations

import falcon
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from .. import portal
from ..context import Context
from ..errors import Degraded
from ..http import error_body, error_json
from ..media.runtime import configure_vips
from ..routes import library as public
from ..settings import Settings
from .api import admin, media, v1, v2
from .api.common import LibraryMiddleware
from .db import Database, upgrade_locked
from .jobs import Keeper, Queue, runner
from .services import Library

DATABASE_RETRY_AFTER = 5  # seconds: a database restart, or a failover, is usually over by then


def build_library(settings: Settings, ctx: Context) -> Library:
    db = Database(settings.library.database_url, pool_size=settings.server.threads)
    if settings.library.migrate_on_start:
        upgrade_locked(db)
    queue = Queue(settings)
    lib = Library(ctx, db, queue.enqueue)
    lib.queue = queue
    return lib


def database_unavailable(req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict) -> None:
    """The database unreachable (refused, gone mid-query, no connection in time, a file it cannot
    open): ``503`` with ``Retry-After``, as storage's outages answer; logged once by logs.FaultLog."""
    headers = {"Retry-After": str(DATABASE_RETRY_AFTER)}
    (error_json if req.context.get("json_errors") else error_body)(resp, 503, "database unavailable", headers)


def queue_reachable(queue: Queue):
    """Readiness of the write path's queue: unreachable is *degraded*, not down: uploads are still
    stored and their jobs wait in the outbox until the queue is back."""

    def check() -> None:
        try:
            queue.ping()
        except Exception as exc:
            raise Degraded(f"queue unreachable ({type(exc).__name__}): jobs wait in the outbox") from exc

    return check


def add_routes(app, ctx: Context) -> None:
    """The library's route group (``MEDIAPROXY_MODE=library|all``): its APIs, its public URLs,
    and the middleware that opens one database session per library request."""
    lib = build_library(ctx.settings, ctx)
    ctx.ready_checks.append(("database", lib.db.ping))
    ctx.ready_checks.append(("queue", queue_reachable(lib.queue)))
    app.add_error_handler((OperationalError, InterfaceError, PoolTimeout), database_unavailable)
    app.add_middleware(LibraryMiddleware(lib))
    v1.add_routes(app, lib)
    media.add_routes(app, lib)
    image_service = v2.add_routes(app, lib)  # the /v2 image service, under MEDIAPROXY_API_PREFIX
    admin.add_routes(app, image_service)  # its admin API, under {prefix}/admin
    portal.add_routes(app, image_service)  # the admin portal's pages and the admin API's verbs it adds
    public.add_routes(app, lib)


def run_worker(settings: Settings) -> None:
    """``mediaproxy worker``: the huey consumer, in threads, until SIGINT/SIGTERM; beside it the
    keeper's heartbeat (leases, expired jobs, the outbox) and its sweep of arrived uploads, each on
    a thread of its own."""
    configure_vips(settings)
    ctx = Context.build(settings)
    # a connection per consumer thread and one more, and one each for the keeper's two threads
    db = Database(settings.library.database_url, pool_size=settings.library.worker_threads + 3)
    if settings.library.migrate_on_start:
        upgrade_locked(db)
    queue = Queue(settings)
    lib = Library(ctx, db, queue.enqueue)
    keeper = Keeper(db, queue, settings.library, lib.ingest)
    queue.runner = runner(settings, lib, queue, keeper)
    keeper.start()
    consumer = queue.huey.create_consumer(workers=settings.library.worker_threads, worker_type="thread",
                                          periodic=False, initial_delay=0.05, backoff=1.5, max_delay=0.5,
                                          check_worker_health=True, graceful_signal="INT")
    try:
        consumer.run()
    finally:
        keeper.stop()


"""Wiring: one Library per process, from Settings (the web app and the worker build it alike)."""

from __future__ import annotations

from ..context import Context
from ..settings import Settings
from .db import Database, upgrade_locked
from .jobs import Queue
from .service import Library


def build_library(settings: Settings, ctx: Context) -> Library:
    db = Database(settings.library.database_url)
    if settings.library.migrate_on_start:
        upgrade_locked(db)
    queue = Queue(settings)
    return Library(ctx, db, queue.enqueue)

"""The library's verbs, one service per domain, over the repositories' SQL:

- ``ingest``: uploads through the server and presigned ones, their completion, content addressing;
- ``versions``: variants, placeholders, crop (a new version, the pointer moved), delete;
- ``catalog``: reading records (by id, key, folder; the list; a batch; public URLs), their
  descriptive fields and tags; presigned downloads;
- ``sharing``: who may see a /v2 image, share links and album tokens;
- ``albums``, ``avatars``, ``admin`` (statistics, tag counts), ``jobs`` (the outbox, running one).

They take and return domain objects (records, ``Upload``, ``Served``), never Falcon objects or
JSON, work in their caller's transaction and never commit: the request's unit of work
(``api/common.LibraryMiddleware``) or the job's (``library/jobs.py``) commits, in ``unit.py``.
``Library`` is the set of them one process builds."""

from __future__ import annotations

from collections.abc import Callable

from ...context import Context
from ..db import Database
from .admin import Admin
from .albums import Albums
from .avatars import Avatars
from .base import Core
from .catalog import Catalog
from .ingest import Ingest, Upload
from .jobs import Jobs
from .sharing import Served, Sharing
from .versions import Versions

__all__ = ["Library", "Served", "Upload"]


class Library(Core):
    def __init__(self, ctx: Context, db: Database, enqueue: Callable[[str], None] | None = None):
        super().__init__(ctx, db, enqueue)
        self.jobs = Jobs(self)
        self.versions = Versions(self, self.jobs)
        self.ingest = Ingest(self, self.jobs)
        self.jobs.ingest, self.jobs.versions = self.ingest, self.versions
        self.catalog = Catalog(self)
        self.sharing = Sharing(self, self.versions)
        self.albums = Albums(self, self.sharing)
        self.avatars = Avatars(self, self.versions)
        self.admin = Admin(self)

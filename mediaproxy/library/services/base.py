"""What every service shares: the process's context, database, settings and bucket, and the
steps that keep bytes and records consistent around a transaction.

Ordering rules that keep records and bytes consistent when a process dies at any point:
- bytes are written (and committed in storage) before a record points at them;
- a pointer moves (crop, replace) in one transaction, after the new objects exist;
- objects are deleted only after the records that pointed at them are gone (``after_commit``);
- bytes stored for a record that is never committed are deleted once the database says no row
  points at them (``after_rollback``).
A crash therefore leaves at worst an orphaned object, never a record that points at nothing."""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import cached_property

from sqlalchemy.orm import Session

from ...bulkhead import PerHolder
from ...context import Context
from ...settings import LibrarySettings
from .. import unit
from ..db import Database
from ..models import Media, StoredObject
from ..repositories import objects
from ..repositories import versions as versions_repo
from ..repositories.search import for_database as search_strategy

log = logging.getLogger("mediaproxy.library")
INCOMING = "incoming/"
DISPOSITION_MAX = 1024
_DISPOSITION = re.compile(r"(?i)(inline|attachment)( *;[\x20-\x7e]*)?")


def own_key(folder: str, stored_key: str, filename: str) -> str:
    """A version's original under its own folder: the stored key itself, unless the bytes are
    another record's (a deduplicated /media upload), then the record's own file name under this
    folder (never the other record's: that name is its uploader's, and may be private)."""
    if stored_key.startswith(folder + "/"):
        return stored_key
    return f"{folder}/{safe_filename(filename)}"


def incoming_key(key: str) -> str:
    """Where a presigned upload URL straight to the store puts the bytes of the object ``key``.
    Only the server writes ``key`` itself (it moves the bytes there when it checks the upload),
    so a URL that is still valid can never change what a record points at."""
    return INCOMING + key


def safe_filename(name: str | None, fallback: str = "file") -> str:
    """A filename fit for an object key: no folders, no control characters, at most 100 characters."""
    name = unicodedata.normalize("NFC", (name or "").replace("\\", "/").rsplit("/", 1)[-1])
    name = re.sub(r"[^\w.\-]+", "_", name, flags=re.UNICODE).strip("._")[:100]
    return name or fallback


def clean_disposition(value: str | None) -> str | None:
    """A Content-Disposition fit to be stored and sent again: ``inline`` or ``attachment`` and its
    parameters, printable ASCII only (no CR/LF: nothing can be smuggled into the answer's
    headers), at most DISPOSITION_MAX characters; None for anything else."""
    value = (value or "").strip()
    if not value or len(value) > DISPOSITION_MAX or not _DISPOSITION.fullmatch(value):
        return None
    return value


def iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def public_key(media: Media) -> str:
    """The key of the media's own public URL (``/library/{key}``) for its current original:
    ``{org}/{mediaId}/{versionId}/{name}``. It is the stored object's key, except for a /media
    upload pointed at identical bytes stored before (content addressing): that record's URL
    keeps its own folder and its own file name, so each record's privacy governs its own URL
    and no record's URL tells another's file name."""
    return own_key(media.current.folder, media.current.object.key, media.filename)


def keys_of(media: Media) -> list[tuple[str, str]]:
    """The stored keys of the media's current version: its original and its variants."""
    v = media.current
    if v is None:
        return []
    return [(v.object.bucket, v.object.key), *((x.bucket, x.key) for x in v.variants)]


class Core:
    """The process's context, database and settings, as every service sees them."""

    def __init__(self, ctx: Context, db: Database, enqueue: Callable[[str], None] | None = None):
        self.ctx = ctx
        self.db = db
        self.settings: LibrarySettings = ctx.settings.library
        self.bucket = self.settings.bucket
        self.enqueue_id = enqueue  # hands a committed job's id to the queue (None: the sweep relays)
        self.search = search_strategy(db)  # the list's strategy for this kind of database
        self.queue = None  # the web processes' Queue (readiness), set by build_library

    @cached_property
    def upload_places(self) -> PerHolder:
        """Uploads whose bodies are arriving, per client, in this process (MEDIAPROXY_UPLOADS_PER_CLIENT)."""
        return PerHolder(self.settings.uploads_per_client)

    def original_name(self, fname: str) -> str:
        """The stored original's name in its version's folder: the file's own, unless a variant
        would be stored under it (``{variant}.webp`` beside it): an upload named ``small.webp``
        had its original overwritten by its ``small`` variant. The record keeps the file's name."""
        taken = {name.lower() for name in self.settings.variant_names}
        while fname.rsplit(".", 1)[0].lower() in taken:
            fname = "original-" + fname
        return fname

    def remove(self, keys: Iterable[tuple[str, str]]) -> None:
        """Delete objects no record points at any more. It runs after the commit that unlinked them,
        so it never changes the answer: the change has happened, and an object the store would not
        delete now is left to ``mediaproxy janitor`` (an orphan: nothing serves it)."""
        keys = list(keys)
        for bucket, key in keys:
            try:
                self.ctx.storage.delete(bucket, key)
            except Exception as exc:
                log.warning("left %s/%s for the janitor: %s: %s", bucket, key, type(exc).__name__, exc)
        self.ctx.cache.purge_keys(keys)  # an index lookup per object (its tag)

    def remove_after_commit(self, s: Session, keys: list[tuple[str, str]]) -> None:
        if keys:
            after_keys = list(keys)
            unit.after_commit(s, lambda: self.remove(after_keys))

    def forget_on_rollback(self, s: Session, keys: Callable[[], Iterable[tuple[str, str]]],
                           version_id: str | None = None) -> None:
        """Once the session's transaction rolls back, delete the objects ``keys()`` names that it
        was to record: only once the database says no row points at them (a commit that failed on
        a lost connection may have happened); a database or a store that fails then leaves them to
        the janitor, which checks the same. Keys of a ``version_id`` that exists once this has
        rolled back are left to the janitor too: any other rendering of that version (a job's retry
        whose lease this one outlived, a second regenerate) stores the same keys, and may commit
        rows naming them after this check."""
        unit.after_rollback(s, lambda: self.forget(list(keys()), version_id))

    def forget(self, keys: list[tuple[str, str]], version_id: str | None = None) -> None:
        if not keys:
            return
        with self.db.transaction() as t:
            if version_id is not None and versions_repo.exists(t, version_id):
                log.info("left %d stored keys of version %s for the janitor: another rendering may record them",
                         len(keys), version_id)
                return
            for bucket, key in keys:
                try:
                    if not objects.key_recorded(t, bucket, key):
                        self.ctx.storage.delete(bucket, key)
                except Exception as exc:
                    log.warning("left %s/%s for the janitor: %s: %s", bucket, key, type(exc).__name__, exc)

    def hash_stored(self, obj: StoredObject) -> str:
        h = hashlib.sha256()
        _, body = self.ctx.storage.open(obj.bucket, obj.key)
        try:
            while chunk := body.read(256 * 1024):
                h.update(chunk)
        finally:
            body.close()
        return h.hexdigest()

    def original(self, media: Media) -> bytes:
        obj = media.current.object
        return self.ctx.storage.get(obj.bucket, obj.key, self.ctx.settings.max_source_bytes)[1]

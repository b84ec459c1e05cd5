"""The verbs every API dialect shares: ingest, describe, list, patch, crop, variants, delete,
presign, jobs. Dialects translate HTTP to these calls; only this module touches records,
storage and the queue together.

Ordering rules that keep records and bytes consistent when a process dies at any point:
- bytes are written (and committed in storage) before a record points at them;
- a pointer moves (crop, replace) in one transaction, after the new objects exist;
- objects are deleted only after the records that pointed at them are gone.
A crash therefore leaves at worst an orphaned object, never a record that points at nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property

import orjson
import pyvips
from sqlalchemy import (
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from ..bulkhead import PerHolder
from ..context import Context
from ..errors import BadRequest, Conflict, Forbidden, MediaError, NotFound, TooLarge, UnsupportedType
from ..hotpath import decimal
from ..media import hashes, pipeline
from ..media.edit import Edit, edit_image
from ..media.sniff import sniff
from ..media.spec import TransformSpec
from ..settings import LibrarySettings
from ..storage import ObjectInfo, Writer
from .db import Database
from .ids import is_id, new_id
from .jobs import LeaseLost, NotYet, relay
from .models import Job, Media, Organization, StoredObject, Variant, Version, now
from .repositories.media import current_object, current_variants, media_query
from .repositories.search import for_database as search_strategy
from .unit import after_commit

log = logging.getLogger("mediaproxy.library")
SNIFF_BYTES = 4096
PROBE_BYTES = 512 * 1024  # the head kept in memory to read the dimensions from
def own_key(folder: str, stored_key: str, filename: str) -> str:
    """A version's original under its own folder: the stored key itself, unless the bytes are
    another record's (a deduplicated /media upload), then the record's own file name under this
    folder (never the other record's: that name is its uploader's, and may be private)."""
    if stored_key.startswith(folder + "/"):
        return stored_key
    return f"{folder}/{safe_filename(filename)}"


INCOMING = "incoming/"


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


_DISPOSITION = re.compile(r"(?i)(inline|attachment)( *;[\x20-\x7e]*)?")
DISPOSITION_MAX = 1024


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


@dataclass
class Upload:
    """One upload streaming into storage: type sniffed from the first bytes, size counted, hashed."""

    lib: Library
    org: Organization
    filename: str
    max_bytes: int
    allowed: frozenset[str]
    media_id: str
    version_id: str
    key: str
    writer: Writer | None = None
    mime: str | None = None
    job: Job | None = None  # the job create_media queued with the record, if any
    _head: bytearray | None = None
    _sha: object = None

    def write(self, chunk: bytes) -> None:
        if self._sha is None:
            self._sha = hashlib.sha256()
            self._head = bytearray()
        if self.writer is None:
            self._head += chunk
            if len(self._head) < SNIFF_BYTES:
                # the type is decided on the first bytes; count the limit meanwhile too
                if len(self._head) > self.max_bytes:
                    raise TooLarge(f"upload is over the {self.max_bytes} byte limit")
                return
            self._start(bytes(self._head))
            self._sha.update(self._head)
            self.writer.write(bytes(self._head))
            return
        self._sha.update(chunk)
        if len(self._head) < PROBE_BYTES:
            self._head += chunk[: PROBE_BYTES - len(self._head)]
        self.writer.write(chunk)

    def _start(self, head: bytes) -> None:
        mime = sniff(head)
        if mime is None or mime not in self.allowed:
            raise UnsupportedType(
                f"the bytes are {mime or 'of an unknown type'}; allowed: {', '.join(sorted(self.allowed))}"
            )
        self.mime = mime
        self.writer = self.lib.ctx.storage.writer(self.lib.bucket, self.key, mime, self.max_bytes)

    def finish(self) -> tuple[StoredObject, bool]:
        """Commit the bytes to storage; (the object row, whether it is new)."""
        if self.writer is None:
            if not self._head:
                raise BadRequest("the file is empty")
            self._start(bytes(self._head))
            self._sha.update(self._head)
            self.writer.write(bytes(self._head))
        self.writer.commit()
        return self.lib.object_for(self.org, self.key, self._sha.hexdigest(), self.writer.written, self.mime,
                                    bytes(self._head))

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


class Library:
    def __init__(self, ctx: Context, db: Database, enqueue: Callable[[str], None] | None = None):
        self.ctx = ctx
        self.db = db
        self.settings: LibrarySettings = ctx.settings.library
        self.bucket = self.settings.bucket
        self._enqueue = enqueue
        self.search = search_strategy(db)  # the list's strategy for this kind of database
        self.queue = None  # the web processes' Queue (readiness), set by build_library

    @cached_property
    def upload_places(self) -> PerHolder:
        """Uploads whose bodies are arriving, per client, in this process (MEDIAPROXY_UPLOADS_PER_CLIENT)."""
        return PerHolder(self.settings.uploads_per_client)

    # -- ingest ---------------------------------------------------------------------------

    def begin_upload(self, org: Organization, filename: str | None, max_bytes: int | None = None,
                     allowed: frozenset[str] | None = None) -> Upload:
        media_id, version_id = new_id(), new_id()
        fname = safe_filename(filename)
        return Upload(self, org, fname, max_bytes or self.settings.upload_max_bytes,
                      allowed or self.settings.allowed_types, media_id, version_id,
                      f"{org.slug}/{media_id}/{version_id}/{self.original_name(fname)}")

    def original_name(self, fname: str) -> str:
        """The stored original's name in its version's folder: the file's own, unless a variant
        would be stored under it (``{variant}.webp`` beside it): an upload named ``small.webp``
        had its original overwritten by its ``small`` variant. The record keeps the file's name."""
        taken = {name.lower() for name in self.settings.variant_names}
        while fname.rsplit(".", 1)[0].lower() in taken:
            fname = "original-" + fname
        return fname

    def object_for(self, org: Organization, key: str, sha: str, size: int, mime: str | None,
                    head: bytes) -> tuple[StoredObject, bool]:
        width, height = self._dimensions(head, key)
        return StoredObject(org_id=org.id, bucket=self.bucket, key=key, sha256=sha, size=size,
                            mime_type=mime or "application/octet-stream", width=width, height=height), True

    def _dimensions(self, head: bytes, key: str) -> tuple[int | None, int | None]:
        try:
            p = pipeline.probe(head)
            return p.width, p.height
        except MediaError:
            pass
        try:  # a header past the first bytes (a JPEG with a big EXIF block): read the object
            _, data = self.ctx.storage.get(self.bucket, key, self.ctx.settings.max_source_bytes)
            p = pipeline.probe(data)
            return p.width, p.height
        except MediaError:
            return None, None

    def create_media(self, s: Session, up: Upload, obj: StoredObject, *, owner: str | None = None,
                     dialect: str = "v1", fields: dict | None = None, job: str | None = None,
                     with_record: Callable[[Media], None] | None = None) -> Media:
        """Record an upload whose bytes are committed; with ``job``, that job (``up.job``) is
        written in the same transaction and relayed to the queue after it (the outbox);
        ``with_record(media)`` writes what goes with the record (a /v2 image's tags and album) in
        that transaction too, so a failure there leaves no half-made record.

        The presigned /media API's media are content-addressed: identical bytes of one organization are
        stored once (the new record points at the existing object). The /api/v1 API's uploads each keep their
        own folder (original + variants under one prefix, as its API deletes and redirects by
        folder), and share only the ``canonicalUri``."""
        uploaded = obj.key
        try:
            same = None
            if dialect == "media":
                same = s.scalar(select(StoredObject).where(StoredObject.org_id == obj.org_id,
                                                           StoredObject.sha256 == obj.sha256,
                                                           StoredObject.bucket == obj.bucket).limit(1))
            duplicate_key = None
            if same is not None:
                duplicate_key, obj = obj.key, same
            else:
                s.add(obj)
                s.flush()
            folder = f"{up.org.slug}/{up.media_id}/{up.version_id}"
            media = Media(id=up.media_id, org_id=up.org.id, owner=owner, dialect=dialect, state="ready",
                          filename=up.filename, mime_type=obj.mime_type, size=obj.size, width=obj.width,
                          height=obj.height, **(fields or {}))
            s.add(media)
            s.flush()
            version = Version(id=up.version_id, media_id=media.id, object_id=obj.id, folder=folder)
            s.add(version)
            s.flush()
            media.current_version_id = version.id
            media.current = version
            if job is not None:
                up.job = self._add_job(s, up.org, job, media, {})
            if with_record is not None:
                with_record(media)
            if up.job is not None:
                self._relay_after_commit(s, up.job)
            if duplicate_key is not None:  # the bytes already exist under obj.key
                after_commit(s, lambda: self._remove([(self.bucket, duplicate_key)]))
            s.commit()
        except BaseException:
            # no record points at the bytes just committed (e.g. the database is down): they go too
            self._forget(s, [(self.bucket, uploaded)])
            raise
        return media

    @contextmanager
    def all_or_nothing(self, s: Session, media: Media) -> Iterator[None]:
        """The steps that follow an upload's record (variants, tags, the queue): when one fails, the
        answer is a failure, so the upload is undone (``discard``) before the error goes on."""
        media_id = media.id
        try:
            yield
        except BaseException:
            self.discard(s, media_id)
            raise

    def discard(self, s: Session, media_id: str) -> None:
        """Undo an upload whose answer is a failure: its jobs, its record with every version and
        variant, and the objects no other record uses (bytes deduplicated onto an object another
        record points at stay). Best effort: what a failing store keeps is the janitor's."""
        try:
            s.rollback()
            s.execute(delete(Job).where(Job.media_id == media_id))
            media = s.scalar(media_query().where(Media.id == media_id))
            if media is not None:
                self.delete(s, media)
            s.commit()  # undone now: the request's own transaction will roll back
        except Exception as exc:
            s.rollback()
            log.warning("could not undo the failed upload of media %s: %s: %s", media_id, type(exc).__name__, exc)

    def _forget(self, s: Session, keys: list[tuple[str, str]]) -> None:
        """After a failed transaction, delete the objects it was to record. Only once the database
        says no row points at them (a commit that failed on a lost connection may have happened):
        a database or a store that fails now leaves them to the janitor, which checks the same."""
        s.rollback()
        for bucket, key in keys:
            try:
                if s.scalar(select(StoredObject.id).where(StoredObject.bucket == bucket, StoredObject.key == key)
                            .union_all(select(Variant.id).where(Variant.bucket == bucket, Variant.key == key))
                            .limit(1)) is None:
                    self.ctx.storage.delete(bucket, key)
            except Exception as exc:
                s.rollback()
                log.warning("left %s/%s for the janitor: %s: %s", bucket, key, type(exc).__name__, exc)

    # -- reading ----------------------------------------------------------------------------

    def get(self, s: Session, org: Organization, media_id: str) -> Media:
        media = None
        if is_id(media_id):
            media = s.scalar(media_query().where(Media.id == media_id, Media.org_id == org.id))
        if media is None:
            raise NotFound("no such media")
        return self.refresh(s, media)

    def by_key(self, s: Session, org: Organization, bucket: str | None, key: str) -> Media:
        """The organization's media whose current original is ``key`` (the newest, if several)."""
        if (bucket or self.bucket) != self.bucket or not key:
            raise NotFound("no such object")
        media = s.scalar(
            current_object(media_query())
            .where(Media.org_id == org.id, StoredObject.bucket == self.bucket, StoredObject.key == key)
            .order_by(Media.created_at.desc())
            .limit(1)
        )
        if media is None:
            raise NotFound("no such object")
        return media

    def by_key_any_state(self, s: Session, org: Organization, bucket: str | None, key: str) -> Media:
        return self.by_key(s, org, bucket, key)

    def _owner_of_key(self, s: Session, bucket: str, key: str) -> tuple[Media, bool] | None:
        """(a media whose current version has the stored ``key`` as original or variant — a private
        one if any is: identical /media uploads share one object —, is-variant)."""
        if bucket != self.bucket or not key:
            return None
        media = s.scalar(
            current_object(select(Media)).where(StoredObject.bucket == bucket, StoredObject.key == key)
            .order_by(Media.is_private.desc(), Media.created_at.desc()).limit(1))
        if media is not None:
            return media, False
        media = s.scalar(
            current_variants(select(Media)).where(Variant.bucket == bucket, Variant.key == key).limit(1))
        return (media, True) if media is not None else None

    def owned_key(self, s: Session, org: Organization, bucket: str | None, key: str) -> Media:
        """The organization's media that ``key`` (its original or a variant) belongs to; 404 otherwise."""
        bucket = bucket or self.bucket
        if bucket != self.bucket or not key:
            raise NotFound("no such object")
        media = s.scalar(
            current_object(select(Media))
            .where(Media.org_id == org.id, StoredObject.bucket == bucket, StoredObject.key == key).limit(1))
        if media is None:
            media = s.scalar(
                current_variants(select(Media))
                .where(Media.org_id == org.id, Variant.bucket == bucket, Variant.key == key).limit(1))
        if media is None or media.state != "ready":
            raise NotFound("no such object")
        return media

    def key_mime(self, s: Session, bucket: str, key: str) -> str:
        """The type recorded for a stored original or variant (judged from its bytes at ingest)."""
        mime = s.scalar(select(StoredObject.mime_type).where(StoredObject.bucket == bucket, StoredObject.key == key))
        if mime is None:
            mime = s.scalar(select(Variant.mime_type).where(Variant.bucket == bucket, Variant.key == key))
        return mime or "application/octet-stream"

    def key_is_private(self, s: Session, bucket: str, key: str) -> bool:
        found = self._owner_of_key(s, bucket, key)
        if found is None:
            raise NotFound("no such object")
        return found[0].is_private

    @staticmethod
    def public_key(media: Media) -> str:
        """The key of the media's own public URL (``/library/{key}``) for its current original:
        ``{org}/{mediaId}/{versionId}/{name}``. It is the stored object's key, except for a /media
        upload pointed at identical bytes stored before (content addressing): that record's URL
        keeps its own folder and its own file name, so each record's privacy governs its own URL
        and no record's URL tells another's file name."""
        return own_key(media.current.folder, media.current.object.key, media.filename)

    def public_object(self, s: Session, key: str) -> tuple[str, str, str, str | None] | None:
        """What the public URL ``/library/{key}`` serves — (bucket, stored key, type, the record's
        Content-Disposition for its original) — or None.

        The key names one record and one of its versions (``{org}/{mediaId}/{versionId}/{name}``):
        the record's current original (under its own spelling, ``public_key``) or one of its
        variants. It is served only while that record is ready and public, whatever other records
        share the stored bytes. One query for an original, two for a variant."""
        parts = key.split("/")
        if len(parts) != 4 or not is_id(parts[1]) or not is_id(parts[2]):
            return None
        org_slug, media_id, version_id, _ = parts
        row = s.execute(
            current_object(select(Media.mime_type, Media.filename, Version.folder, Version.content_disposition,
                                  StoredObject.bucket, StoredObject.key))
            .join(Organization, Organization.id == Media.org_id)
            .where(Media.id == media_id, Media.current_version_id == version_id, Organization.slug == org_slug,
                   Media.state == "ready", Media.is_private.is_(False))).first()
        if row is None:
            return None
        mime, filename, folder, disposition, bucket, stored = row
        if bucket == self.bucket and own_key(folder, stored, filename) == key:
            return bucket, stored, mime, disposition
        variant = s.execute(select(Variant.bucket, Variant.key, Variant.mime_type)
                            .where(Variant.version_id == version_id, Variant.key == key,
                                   Variant.bucket == self.bucket)).first()
        return (*variant, None) if variant is not None else None

    def own_disposition(self, s: Session, bucket: str, key: str) -> str | None:
        """The Content-Disposition of the record whose own upload the stored original ``key`` is
        (the version in whose folder it lies), if any: never another record's that shares it."""
        folder = key.rsplit("/", 1)[0]
        return s.scalar(select(Version.content_disposition).join(StoredObject, StoredObject.id == Version.object_id)
                        .where(StoredObject.bucket == bucket, StoredObject.key == key, Version.folder == folder)
                        .limit(1))

    def public_sha256(self, s: Session, sha: str) -> StoredObject | None:
        """The object of a public media with these bytes (the canonical, content-addressed URI).

        The address names the bytes, not a record: it is served while some ready, public record
        holds them (that record publishes them), and a private record holding the same bytes does
        not stop it — which also keeps it from telling anyone whether a private copy exists."""
        return s.scalar(
            select(StoredObject).join(Version, Version.object_id == StoredObject.id)
            .join(Media, Media.current_version_id == Version.id)
            .where(StoredObject.sha256 == sha, Media.is_private.is_(False), Media.state == "ready").limit(1))

    def variant_by_folder(self, s: Session, org: Organization, bucket: str, folder: str,
                          name: str) -> tuple[Media, Variant]:
        if bucket != self.bucket or name not in self.settings.variant_names:
            raise NotFound("no such variant")
        row = s.execute(
            current_variants(select(Media, Variant))
            .where(Media.org_id == org.id, Version.folder == folder, Variant.name == name).limit(1)).first()
        if row is None:
            raise NotFound("no such variant")
        return row[0], row[1]

    def receive_put(self, s: Session, bucket: str, key: str, stream, content_length: int | None,
                    disposition: str | None = None) -> Media:
        """The bytes of a presigned upload URL of the local backend: streamed, sniffed, bounded;
        a Content-Disposition the PUT carries is kept with the object, as S3 keeps it."""
        media = s.scalar(
            current_object(media_query()).where(StoredObject.bucket == bucket, StoredObject.key == key).limit(1))
        if media is None:
            raise NotFound("no such upload")
        if media.state == "ready":
            raise Forbidden("this upload URL has been used: objects never change under a key")
        limit = self.settings.media_max_bytes if media.dialect == "media" else self.settings.upload_max_bytes
        allowed = self.settings.media_api_types if media.dialect == "media" else self.settings.allowed_types
        if content_length is not None and content_length > limit:
            raise TooLarge(f"upload is over the {limit} byte limit")
        if disposition is not None and clean_disposition(disposition) is None:
            raise BadRequest("Content-Disposition must be inline or attachment with its parameters, "
                             f"printable ASCII, at most {DISPOSITION_MAX} characters")
        # the URL is this request's alone before any byte is read: a second PUT at the same time
        # would otherwise pass the check above too, and rewrite the object after this one answered
        if not self._claim_upload(s, media):
            if s.scalar(select(Media.state).where(Media.id == media.id)) == "ready":
                raise Forbidden("this upload URL has been used: objects never change under a key")
            raise Conflict("another request is uploading to this URL")
        try:
            self._receive(bucket, key, stream, content_length, limit, allowed)
        except BaseException:
            self._release_upload(s, media)
            raise
        if self._check_upload(s, media, disposition):
            self.enqueue(s, self.org_of(s, media), "finalize", media, {})
        return media

    def _receive(self, bucket: str, key: str, stream, content_length: int | None, limit: int,
                 allowed: frozenset[str]) -> None:
        head = b""
        while len(head) < SNIFF_BYTES:
            chunk = stream.read(SNIFF_BYTES - len(head))
            if not chunk:
                break
            head += chunk
        mime = sniff(head)
        if mime is None or mime not in allowed:
            raise UnsupportedType(
                f"the bytes are {mime or 'of an unknown type'}; allowed: {', '.join(sorted(allowed))}")
        w = self.ctx.storage.writer(bucket, key, mime, limit)
        try:
            w.write(head)
            while chunk := stream.read(256 * 1024):
                w.write(chunk)
            if content_length is not None and w.written != content_length:
                # the client went away: what arrived is not the object
                raise BadRequest(f"the body ended after {w.written} of {content_length} bytes")
            w.commit()
        except BaseException:
            w.abort()
            raise

    def _content_address(self, s: Session, media: Media, obj: StoredObject) -> tuple[str, str] | None:
        """The presigned /media API: hash the bytes; when the organization already has them, point at that object
        and drop the copy, before any URL of the copy has been handed out."""
        obj.sha256 = self._hash_stored(obj)
        same = s.scalar(select(StoredObject).where(StoredObject.org_id == obj.org_id,
                                                   StoredObject.sha256 == obj.sha256,
                                                   StoredObject.bucket == obj.bucket,
                                                   StoredObject.id != obj.id).limit(1))
        if same is None:
            return None
        media.current.object_id, media.current.object = same.id, same
        s.flush()
        s.delete(obj)
        s.flush()
        return obj.bucket, obj.key

    def org_of(self, s: Session, media: Media) -> Organization:
        return s.get(Organization, media.org_id)

    def refresh(self, s: Session, media: Media) -> Media:
        """A presigned upload straight to S3 is noticed when its record is next read."""
        if media.state == "uploading" and self.complete_upload(s, media):
            self.enqueue(s, self.org_of(s, media), "finalize", media, {})
        return media

    def batch(self, s: Session, org: Organization, ids: list[str]) -> list[Media]:
        wanted = [i for i in ids if is_id(i)]
        if not wanted:
            return []
        found = {m.id: m for m in s.scalars(media_query().where(Media.org_id == org.id,
                                                                      Media.id.in_(wanted)))}
        return [found[i] for i in ids if i in found]

    def list(self, s: Session, org: Organization, *, limit: int, offset: int, search: str | None,
             mime_prefix: str | None, sort: str, order: str) -> tuple[list[Media], int]:
        """One page of the organization's ready media, and the exact total (repositories/search.py)."""
        return self.search.page(s, org, limit=limit, offset=offset, search=search, mime_prefix=mime_prefix,
                                sort=sort, order=order)

    def patch(self, s: Session, media: Media, changes: dict) -> Media:
        for name, value in changes.items():
            setattr(media, name, value)
        media.updated_at = now()
        s.flush()
        if "is_private" in changes:  # its cached results, once the change has committed
            keys = self._keys_of(media)
            after_commit(s, lambda: self.ctx.cache.purge_keys(keys))
        return media

    # -- variants and placeholders ---------------------------------------------------------

    def _original(self, media: Media) -> bytes:
        obj = media.current.object
        return self.ctx.storage.get(obj.bucket, obj.key, self.ctx.settings.max_source_bytes)[1]

    def variant_spec(self, side: int, fit: str) -> TransformSpec:
        return TransformSpec(width=side or None, height=side or None, fit=fit, position="center",
                             format="webp", quality=None, lossless=False, animated=None)

    def render_variants(self, s: Session, media: Media) -> list[Variant]:
        """Render every configured variant of the current version through the origin's pipeline."""
        if self.over_pixel_limit(media):
            raise TooLarge(f"over the {self.ctx.limits.max_pixels} pixel limit of the image pipeline: no variants")
        if not self.renderable(media):
            raise TooLarge(f"over the {self.ctx.settings.max_source_bytes} byte limit of the image pipeline: "
                           "stored, but no variants")
        version = media.current
        data = self._original(media)
        existing = {x.name: x for x in version.variants}
        recorded = {x.key for x in existing.values()}
        made: dict[str, tuple[str, pipeline.Output]] = {}
        try:
            self._render_variants(data, version.folder, made)
            self._placeholders(media, data)
            for name, (key, out) in made.items():
                row = existing.get(name)
                if row is None:
                    row = Variant(name=name, bucket=self.bucket, key=key, width=0, height=0, size=0, mime_type="")
                    version.variants.append(row)
                row.key, row.width, row.height = key, out.width, out.height
                row.size, row.mime_type = len(out.body), out.content_type
            media.updated_at = now()
            s.commit()
        except BaseException:
            # the variants stored before the failure that no row records
            self._forget(s, [(self.bucket, key) for key, _ in made.values() if key not in recorded])
            raise
        return list(version.variants)

    def _render_variants(self, data: bytes, folder: str,
                         made: dict[str, tuple[str, pipeline.Output]] | None = None
                         ) -> dict[str, tuple[str, pipeline.Output]]:
        """Every configured variant of ``data``, stored under ``folder`` (keys named by variant: a
        second rendering overwrites the first). Each stored one is added to ``made`` as it is
        stored, so a caller that sees a failure knows what to delete."""
        made = {} if made is None else made
        for name, side, fit in self.settings.variants:
            with self.ctx.transform_slot():
                out = pipeline.transform(data, self.variant_spec(side, fit), self.ctx.limits)
            key = f"{folder}/{name}.{out.format}"
            self.ctx.storage.put(self.bucket, key, out.body, out.content_type)
            made[name] = (key, out)
        return made

    def renderable(self, media: Media) -> bool:
        """Images the origin's pipeline would take: larger ones (in bytes, or in pixels by their
        header) are stored and served, not rendered, as the origin answers 413 for them."""
        if not media.mime_type.startswith("image/") or media.size > self.ctx.settings.max_source_bytes:
            return False
        return not self.over_pixel_limit(media)

    def over_pixel_limit(self, media: Media) -> bool:
        """Does the image's header claim more pixels than the pipeline decodes (a decompression bomb)?"""
        return bool(media.width and media.height and media.width * media.height > self.ctx.limits.max_pixels)

    def _placeholders(self, media: Media, data: bytes) -> None:
        """BlurHash and ThumbHash from a ≤100-pixel copy, decoded as the origin's transforms are
        (``pipeline.decode_inside``: limits checked on the header first, shrink-on-load) and
        inside a transform place: a 552-byte JPEG claiming 65500x65500 costs nothing."""
        if not media.mime_type.startswith("image/"):
            return
        media.blur_hash, media.thumb_hash = self._placeholder_hashes(media.id, media.mime_type, data)

    def _placeholder_hashes(self, media_id: str, mime_type: str, data: bytes) -> tuple[str | None, str | None]:
        """(BlurHash, ThumbHash) of an image (``media.hashes``), inside a transform place;
        (None, None) for anything else, or an image it cannot decode."""
        if not mime_type.startswith("image/"):
            return None, None
        try:
            with self.ctx.transform_slot():
                return hashes.placeholders(data, self.ctx.limits)
        except (pyvips.Error, BadRequest, TooLarge) as exc:
            reason = exc.message if isinstance(exc, pyvips.Error) else exc.reason
            log.warning("no placeholders for media %s: %s", media_id, (reason or "").strip())
            return None, None

    def finalize(self, s: Session, media: Media) -> Media:
        """The placeholder job: BlurHash (and the canonical hash when the bytes came by presigned PUT)."""
        obj = media.current.object
        if not self.renderable(media):
            if obj.sha256 is None:
                obj.sha256 = self._hash_stored(obj)
            s.commit()
            return media
        data = self._original(media)
        if obj.sha256 is None:
            obj.sha256 = hashlib.sha256(data).hexdigest()
        self._placeholders(media, data)
        s.commit()
        return media

    def _hash_stored(self, obj: StoredObject) -> str:
        h = hashlib.sha256()
        _, body = self.ctx.storage.open(obj.bucket, obj.key)
        try:
            while chunk := body.read(256 * 1024):
                h.update(chunk)
        finally:
            body.close()
        return h.hexdigest()

    # -- crop: a new version, the pointer moved -------------------------------------------

    def crop(self, s: Session, media: Media, p: dict, job: Job | None = None, owner: str | None = None) -> Media:
        """Crop/rotate/scale/re-encode the current original into a new version; the old one is removed.

        Idempotent by construction. The new version is made from ``base`` (the current version;
        a job's recorded ``base_version_id``) and the media moves to it by compare-and-set
        (``… WHERE current_version_id = base``), in the transaction that completes the job while
        its runner holds the lease. A job's version is named after the job, so every attempt writes
        the same keys (a rerun overwrites what a killed attempt left); a crop that loses the race
        removes what it wrote. The old version's objects are removed after the commit."""
        base_id = job.base_version_id if job is not None else media.current_version_id
        version_id = job.id if job is not None else new_id()
        if media.current_version_id != base_id or media.current is None:
            raise Conflict("the media changed since this crop was asked for")
        data = self._original(media)
        out = edit_image(data, Edit.of(p), self.ctx.limits, self.ctx.transform_slot)
        base = media.current
        folder = f"{base.folder.rsplit('/', 1)[0]}/{version_id}"
        stem = media.filename.rsplit(".", 1)[0] if "." in media.filename else media.filename
        filename = f"{stem}.{'jpg' if out.format == 'jpeg' else out.format}"
        key = f"{folder}/{self.original_name(filename)}"
        committing = False
        try:
            self.ctx.storage.put(self.bucket, key, out.body, out.content_type)
            made = {}
            if p.get("regenerateVariants") and len(out.body) <= self.ctx.settings.max_source_bytes:
                made = self._render_variants(out.body, folder)
            blur, thumb = self._placeholder_hashes(media.id, out.content_type, out.body)
            if job is not None and self.settings.job_test_delay:
                time.sleep(self.settings.job_test_delay)  # tests: a crop that is long enough to be interrupted
            obj = StoredObject(org_id=media.org_id, bucket=self.bucket, key=key,
                               sha256=hashlib.sha256(out.body).hexdigest(), size=len(out.body),
                               mime_type=out.content_type, width=out.width, height=out.height)
            s.add(obj)
            s.flush()
            version = Version(id=version_id, media_id=media.id, object_id=obj.id, folder=folder)
            s.add(version)
            s.flush()
            for name, (vkey, vout) in made.items():
                s.add(Variant(version_id=version_id, name=name, bucket=self.bucket, key=vkey, width=vout.width,
                              height=vout.height, size=len(vout.body), mime_type=vout.content_type))
            moved = s.execute(
                update(Media).where(Media.id == media.id, Media.current_version_id == base_id)
                .values(current_version_id=version_id, filename=filename, mime_type=out.content_type,
                        size=len(out.body), width=out.width, height=out.height, updated_at=now(),
                        blur_hash=blur, thumb_hash=thumb)
                .execution_options(synchronize_session=False)).rowcount
            if moved != 1:
                raise Conflict("the media changed while the crop ran")
            if job is not None:
                result = {"media": media.id, "objectKey": key, "variants": list(made)}
                self._complete(s, job.id, owner, result, result_version_id=version_id)
            stale = self._unlink_versions(s, media, keep=version_id)
            committing = True
            s.commit()  # the pointer has moved: from here on the old version is garbage
        except LeaseLost:
            s.rollback()
            raise  # the attempt that holds the lease writes the same keys: nothing of them is removed
        except BaseException:
            s.rollback()
            if not committing:  # a commit that failed may have landed: then the record needs the objects
                self._drop_output(media, folder, job)
            raise
        self._remove(stale)
        media = s.scalar(media_query().where(Media.id == media.id).execution_options(populate_existing=True))
        return media

    def _drop_output(self, media: Media, folder: str, job: Job | None) -> None:
        """Remove what a crop that did not happen wrote (a job's: only once it has failed for good,
        a rerun would write the same keys)."""
        if job is not None:
            return
        try:
            self._remove((self.bucket, k) for k in list(self.ctx.storage.list(self.bucket, folder + "/")))
        except Exception as exc:
            log.warning("could not remove the output of a failed crop of %s: %s", media.id, type(exc).__name__)

    def drop_job_output(self, s: Session, job: Job) -> None:
        """A crop job that failed for good: remove the objects its attempts wrote, unless its media
        points at them (the version is named after the job)."""
        if job.kind != "crop" or job.media_id is None:
            return
        media = s.get(Media, job.media_id)
        if media is not None and media.current_version_id == job.id:
            return
        base = s.get(Version, job.base_version_id) if job.base_version_id else None
        org = s.get(Organization, job.org_id)
        folder = (f"{base.folder.rsplit('/', 1)[0]}/{job.id}" if base is not None
                  else f"{org.slug}/{job.media_id}/{job.id}" if org is not None else None)
        if folder is None:
            return
        self._remove((self.bucket, k) for k in list(self.ctx.storage.list(self.bucket, folder + "/")))

    # -- delete ---------------------------------------------------------------------------------

    def delete(self, s: Session, media: Media) -> int:
        """Remove the record with every version in the session's transaction; once it commits, the
        original and every variant (bytes shared with another record stay). Returns how many keys."""
        media.current_version_id, media.current = None, None
        s.flush()
        keys = self._unlink_versions(s, media, None, drop_media=True)
        after_commit(s, lambda: self._remove(keys))
        return len(keys)

    def _unlink_versions(self, s: Session, media: Media, keep: str | None,
                         drop_media: bool = False) -> list[tuple[str, str]]:
        """Delete the versions of ``media`` (all but ``keep``), and the record itself with
        ``drop_media``, and the stored objects no other version still uses, in the caller's
        transaction; the keys to remove once it has committed."""
        old = [v for v in s.scalars(select(Version).options(selectinload(Version.variants),
                                                            selectinload(Version.object))
                                    .where(Version.media_id == media.id)) if v.id != keep]
        keys = [(x.bucket, x.key) for v in old for x in v.variants]
        objects = {v.object_id: v.object for v in old}
        for v in old:
            s.delete(v)
        if drop_media:
            s.delete(media)
        s.flush()
        for oid, obj in objects.items():
            still = s.scalar(select(func.count()).select_from(Version).where(Version.object_id == oid))
            if not still:
                keys.append((obj.bucket, obj.key))
                s.delete(obj)
        return keys

    def _remove(self, keys: Iterable[tuple[str, str]]) -> None:
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

    @staticmethod
    def _keys_of(media: Media) -> list[tuple[str, str]]:
        """The stored keys of the media's current version: its original and its variants."""
        v = media.current
        if v is None:
            return []
        return [(v.object.bucket, v.object.key), *((x.bucket, x.key) for x in v.variants)]

    # -- presigning -------------------------------------------------------------------------------

    def expiry(self, raw: int | None) -> int:
        st = self.settings
        value = st.presign_default if raw is None else raw
        if not st.presign_min <= value <= st.presign_max:
            raise BadRequest(f"expiry must be {st.presign_min}..{st.presign_max} seconds")
        return value

    def presign_download(self, base: str, key: str, expires: int, mime: str | None = None,
                         disposition: str | None = None) -> str:
        """A download URL of ``key``; one the store answers itself is told to send the type recorded
        from the bytes (``mime``) and the record's Content-Disposition, never the ones the upload's
        client gave the store."""
        url = self.ctx.storage.presign_get(self.bucket, key, expires, mime, disposition)
        if url is not None:
            return url
        q = sign_query("GET", self.bucket, key, expires, self.ctx.settings.secret_key)
        return f"{base}/api/v1/media/signed/{self.bucket}/{key}?{q}"

    def presign_upload(self, s: Session, org: Organization, base: str, filename: str, mime: str | None,
                       size: int | None, *, owner: str | None = None, dialect: str = "v1",
                       max_bytes: int | None = None) -> tuple[Media, dict]:
        """A record waiting for its bytes, and where the client PUTs them. Without ``mime`` the URL
        takes any Content-Type (none is signed); the type is judged from the bytes either way."""
        limit = max_bytes or self.settings.upload_max_bytes
        if size is not None and size > limit:
            raise TooLarge(f"size {size} is over the {limit} byte limit")
        media_id, version_id = new_id(), new_id()
        fname = safe_filename(filename)
        folder = f"{org.slug}/{media_id}/{version_id}"
        key = f"{folder}/{self.original_name(fname)}"
        expires = self.settings.upload_url_expiry
        recorded = mime or "application/octet-stream"  # until the bytes say
        obj = StoredObject(org_id=org.id, bucket=self.bucket, key=key, sha256=None, size=0, mime_type=recorded)
        s.add(obj)
        shown = filename.strip()[:255] if dialect == "media" else fname  # the /media API echoes the name given
        media = Media(id=media_id, org_id=org.id, owner=owner, dialect=dialect, state="uploading",
                      filename=shown or fname, mime_type=recorded)
        s.add(media)
        s.flush()
        version = Version(id=version_id, media_id=media_id, object_id=obj.id, folder=folder)
        s.add(version)
        s.flush()
        media.current_version_id, media.current = version.id, version
        s.commit()
        # a URL straight to the store writes the incoming key; the bytes are moved to ``key`` when
        # the upload is checked (complete_upload)
        signed = self.ctx.storage.presign_put(self.bucket, incoming_key(key), mime, expires, size)
        if signed is not None:
            url, headers = signed
        else:
            q = sign_query("PUT", self.bucket, key, expires, self.ctx.settings.secret_key, size)
            url = f"{base}/api/v1/media/signed/{self.bucket}/{key}?{q}"
            headers = {"Content-Type": mime} if mime else {}
            if size is not None:
                headers["Content-Length"] = str(size)
        return media, {"uploadUrl": url, "objectKey": key, "method": "PUT", "headers": headers,
                       "expiresAt": iso(datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=expires))}

    def _claim_upload(self, s: Session, media: Media) -> bool:
        """Take a waiting upload (``uploading`` → ``receiving``, compare-and-set) for this request
        alone: one PUT, or one check of what a PUT straight to the store left. A claim older than
        the lease (``upload_claim_lease``: its process died) may be taken again."""
        t = now()
        stale = t - timedelta(seconds=self.upload_claim_lease)
        won = s.execute(
            update(Media).where(Media.id == media.id,
                                or_(Media.state == "uploading",
                                    (Media.state == "receiving") & (Media.updated_at < stale)))
            .values(state="receiving", updated_at=t)
            .execution_options(synchronize_session=False)).rowcount
        s.commit()
        if won:
            set_committed_value(media, "state", "receiving")
        return bool(won)

    @property
    def upload_claim_lease(self) -> float:
        """Seconds after which a claimed upload is taken for abandoned: longer than any body may
        take to arrive (MEDIAPROXY_BODY_TIMEOUT) and than a check of the stored bytes."""
        return max(self.ctx.settings.server.body_timeout, 60.0) + 60.0

    def _release_upload(self, s: Session, media: Media) -> None:
        """Give a claimed upload back (``receiving`` → ``uploading``): its URL may be used again."""
        try:
            s.rollback()
            s.execute(update(Media).where(Media.id == media.id, Media.state == "receiving")
                      .values(state="uploading").execution_options(synchronize_session=False))
            s.commit()
            set_committed_value(media, "state", "uploading")
        except Exception as exc:
            s.rollback()
            log.warning("could not give back the upload of media %s: %s: %s (taken again after the lease)",
                        media.id, type(exc).__name__, exc)

    def _take_upload(self, obj: StoredObject) -> ObjectInfo | None:
        """The stored bytes of a presigned upload, under the record's own key: what a PUT straight
        to the store left under the incoming key is moved there first (a server-side copy), so
        everything checked and recorded is read from a key the client cannot write."""
        try:
            self.ctx.storage.move(obj.bucket, incoming_key(obj.key), obj.key)
        except NotFound:
            pass  # not arrived; or the local backend, whose PUT the server writes under the key itself
        try:
            return self.ctx.storage.head(obj.bucket, obj.key)
        except NotFound:
            return None

    def complete_upload(self, s: Session, media: Media, disposition: str | None = None) -> bool:
        """An upload by presigned PUT: check the stored bytes (type by content, size) and mark it ready.
        The PUT's Content-Disposition (the local backend's ``disposition``, S3's object metadata)
        is kept with the record's version when it is a sane one. False while the bytes are not
        there (or are refused: the record waits for a new PUT) or another request holds the upload."""
        if media.state == "ready":
            return True
        if not self._arrived(media.current.object) or not self._claim_upload(s, media):
            return False
        return self._check_upload(s, media, disposition)

    def _arrived(self, obj: StoredObject) -> bool:
        """Whether a PUT has left bytes for the record (under the incoming key, or the key itself):
        a read of a record still waiting costs no write."""
        for key in (incoming_key(obj.key), obj.key):
            try:
                self.ctx.storage.head(obj.bucket, key)
                return True
            except NotFound:
                continue
        return False

    def _check_upload(self, s: Session, media: Media, disposition: str | None) -> bool:
        """complete_upload of an upload this request has claimed; gives it back unless it is ready."""
        try:
            ready = self._check_claimed(s, media, disposition)
        except BaseException:
            self._release_upload(s, media)
            raise
        if not ready:
            self._release_upload(s, media)
        return ready

    def _check_claimed(self, s: Session, media: Media, disposition: str | None) -> bool:
        obj = media.current.object
        info = self._take_upload(obj)
        if info is None:
            return False
        limit = self.settings.media_max_bytes if media.dialect == "media" else self.settings.upload_max_bytes
        allowed = self.settings.media_api_types if media.dialect == "media" else self.settings.allowed_types
        _, body = self.ctx.storage.open(obj.bucket, obj.key, 0, PROBE_BYTES - 1)
        try:
            head = body.read(PROBE_BYTES)
        finally:
            body.close()
        mime = sniff(head)
        if info.size > limit or mime not in allowed:
            self.ctx.storage.delete(obj.bucket, obj.key)  # refuse it: the record waits for a new PUT
            return False
        width, height = self._dimensions(head, obj.key)
        obj.size, obj.mime_type, obj.width, obj.height = info.size, mime, width, height
        media.current.content_disposition = clean_disposition(disposition or info.content_disposition)
        drop = self._content_address(s, media, obj) if media.dialect == "media" else None
        media.size, media.mime_type, media.width, media.height = info.size, mime, width, height
        media.state = "ready"
        media.updated_at = now()
        s.commit()
        if drop is not None:
            self._remove([drop])  # the copy: the record now points at the first upload
        return True

    # -- jobs ---------------------------------------------------------------------------------------

    def enqueue(self, s: Session, org: Organization, kind: str, media: Media | None, params: dict) -> Job:
        """Write the job in the session's transaction; it is handed to the queue once that commits
        (the worker must find the row before it can find the task)."""
        job = self._add_job(s, org, kind, media, params)
        self._relay_after_commit(s, job)
        return job

    def _relay_after_commit(self, s: Session, job: Job) -> None:
        if self._enqueue is not None:
            job_id = job.id
            after_commit(s, lambda: relay(self.db, self._enqueue, job_id))

    def _add_job(self, s: Session, org: Organization, kind: str, media: Media | None, params: dict) -> Job:
        """The job's row in the caller's transaction, marked relayed when this process relays it
        after the commit (an unmarked row is left to the workers' sweep)."""
        job = Job(id=new_id(), org_id=org.id, media_id=media.id if media else None, kind=kind,
                  params=orjson.dumps(params).decode(), state="pending",
                  relayed_at=now() if self._enqueue is not None else None)
        s.add(job)
        return job

    def job(self, s: Session, org: Organization, job_id: str) -> Job:
        job = s.get(Job, job_id) if is_id(job_id) else None
        if job is None or job.org_id != org.id:
            raise NotFound("no such job")
        return job

    def run_job(self, s: Session, job_id: str, owner: str | None = None) -> dict | None:
        """Run one job that ``owner`` has claimed (jobs.claim) to completion; raises to ask for a
        retry. Completes only while ``owner`` holds the lease (LeaseLost otherwise)."""
        job = s.get(Job, job_id)
        if job is None or job.state != "active" or job.lease_owner != owner:
            return None
        params = orjson.loads(job.params)
        media = s.scalar(media_query().where(Media.id == job.media_id)) if job.media_id else None
        if media is None:
            raise NotFound("the media was deleted")
        if job.kind == "crop":
            if job.base_version_id is None:  # the version it starts from, for every attempt
                job.base_version_id = media.current_version_id
                s.commit()
            media = self.crop(s, media, params, job=job, owner=owner)  # completes the job with the pointer
            return orjson.loads(s.scalar(select(Job.result).where(Job.id == job_id)) or "null")
        if job.kind == "variants":
            if not self.complete_upload(s, media):
                raise _not_yet()
            self.render_variants(s, media)
        elif job.kind == "finalize":
            if not self.complete_upload(s, media):
                raise _not_yet()
            self.finalize(s, media)
        else:
            raise BadRequest(f"unknown job kind {job.kind!r}")
        result = {"media": media.id, "objectKey": media.current.object.key,
                  "variants": [x.name for x in media.current.variants]}
        self._complete(s, job_id, owner, result)
        s.commit()
        return result

    def _complete(self, s: Session, job_id: str, owner: str | None, result: dict,
                  result_version_id: str | None = None) -> None:
        """Mark the job completed in the session's transaction, if ``owner`` still holds it."""
        done = s.execute(
            update(Job).where(Job.id == job_id, Job.state == "active", Job.lease_owner == owner)
            .values(state="completed", result=orjson.dumps(result).decode(), failed_reason=None,
                    result_version_id=result_version_id, lease_owner=None, lease_until=None,
                    failing_since=None, updated_at=now())
            .execution_options(synchronize_session=False)).rowcount
        if done != 1:
            raise LeaseLost(job_id)

    def job_failed(self, s: Session, job_id: str, reason: str, *, final: bool, transient: bool = False,
                   owner: str | None = None) -> str | None:
        """Record a failed attempt (if ``owner`` still holds the job): ``failed`` for good, or
        ``pending`` again with a backoff. Storage or the database unavailable (``transient``) is
        retried until ``job_retry_budget`` seconds after the first such failure; anything else
        ``job_retries`` times. Returns the state recorded (None when the job was not ours)."""
        st = self.settings
        job = s.get(Job, job_id, populate_existing=True)
        if job is None or job.state != "active" or job.lease_owner != owner:
            return None
        t = now()
        since = job.failing_since or t
        if not final:
            final = ((t - since).total_seconds() >= st.job_retry_budget if transient
                     else job.attempts > st.job_retries)
        delay = min(st.job_retry_delay * 2 ** max(job.attempts - 1, 0), st.job_retry_max_delay)
        state = "failed" if final else "pending"
        done = s.execute(
            update(Job).where(Job.id == job_id, Job.state == "active", Job.lease_owner == owner)
            .values(state=state, failed_reason=reason, failing_since=since, lease_owner=None, lease_until=None,
                    relayed_at=None, run_after=None if final else t + timedelta(seconds=delay), updated_at=t)
            .execution_options(synchronize_session=False)).rowcount
        s.commit()
        if done and final:
            try:
                self.drop_job_output(s, job)
            except Exception as exc:
                log.warning("could not remove the output of failed job %s: %s", job_id, type(exc).__name__)
        return state if done else None


def _not_yet() -> MediaError:
    return NotYet("the upload has not arrived")


# -- signed URLs of the local backend -------------------------------------------------------------

def _signature(method: str, bucket: str, key: str, expires_at: int, secret: str, size: str | None = None) -> str:
    msg = f"{method}\n{bucket}\n{key}\n{expires_at}" + (f"\n{size}" if size is not None else "")
    return hmac.new(secret.encode(), msg.encode(), hashlib.sha256).hexdigest()


def sign_query(method: str, bucket: str, key: str, expires: int, secret: str, size: int | None = None) -> str:
    """The query of a URL of the local backend; with ``size``, an upload URL for exactly that many
    bytes (the length is signed, as S3 signs Content-Length)."""
    at = int(time.time()) + expires
    sized = str(size) if size is not None else None
    return (f"expires={at}" + (f"&size={sized}" if sized else "")
            + f"&signature={_signature(method, bucket, key, at, secret, sized)}")


def check_signature(method: str, bucket: str, key: str, expires: str | None, signature: str | None,
                    secret: str, size: str | None = None) -> None:
    """403 for a tampered or expired URL (the signature is checked first, in constant time)."""
    if not expires or not decimal(expires) or not signature or (size is not None and not decimal(size)):
        raise Forbidden("missing or malformed signature")
    # as bytes: compare_digest raises TypeError on a str with a non-ASCII character
    if not hmac.compare_digest(_signature(method, bucket, key, int(expires), secret, size).encode(),
                               signature.encode()):
        raise Forbidden("invalid signature")
    if int(expires) < time.time():
        raise Forbidden("the URL has expired")

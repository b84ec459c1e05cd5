"""Ingest: uploads streamed through the server, presigned uploads (straight to the store, or to
the local backend's signed URL) and their completion, content addressing and deduplication.

Every verb works in its caller's transaction and never commits; bytes stored for a record that
is never committed are deleted when the transaction rolls back. One step is a unit of work of its
own: claiming a presigned upload (``uploading`` → ``receiving``, compare-and-set) must be seen by
every other request before this one reads a byte of the body or checks the stored bytes, and
giving it back when this request fails must happen whatever becomes of the request's own
transaction.

A presigned upload is completed where its bytes arrive: the local backend's upload URL is the
server's own (``receive_put``); a PUT straight to S3 tells the server nothing, so each worker's
heartbeat lists the store's incoming keys and queues one job per arrived upload
(``arrived_keys``, ``take_arrivals``), which checks the bytes and renders the placeholders before
it writes (``check_upload``, then ``record_upload``). Reads never complete an upload."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ...errors import BadRequest, Conflict, Forbidden, MediaError, NotFound, TooLarge, UnsupportedType
from ...media import pipeline
from ...media.sniff import sniff
from ...storage import ObjectInfo, Writer
from .. import unit
from ..ids import new_id
from ..models import Job, Media, Organization, StoredObject, Version, now
from ..repositories import objects
from .base import DISPOSITION_MAX, INCOMING, Core, clean_disposition, incoming_key, iso, safe_filename
from .signed import sign_query

log = logging.getLogger("mediaproxy.library")
SNIFF_BYTES = 4096
PROBE_BYTES = 512 * 1024  # the head kept in memory to read the dimensions from
ARRIVALS_BATCH = 1000  # incoming keys a sweep takes at a time (one listing page of S3)


@dataclass(frozen=True)
class DeadClaim:
    """A claimed upload whose request died holding it, as the workers' sweep read it
    (``Ingest.dead_claims``): the record's state and ``updated_at`` then, for the compare-and-set
    that gives it back, and where its bytes would be (its current object)."""

    media_id: str
    org_id: int
    state: str
    updated_at: datetime
    bucket: str
    key: str


@dataclass(frozen=True)
class Checked:
    """A presigned upload's stored bytes as ``Ingest.check_upload`` found them, before any row is
    written: what rendering needs to know of them (the fields of a stored object it reads) and
    what ``Ingest.record_upload`` writes."""

    bucket: str
    key: str
    size: int
    mime_type: str
    width: int | None
    height: int | None
    sha256: str | None  # content-addressed records' (the presigned /media API's); None: hashed later
    disposition: str | None


@dataclass
class Upload:
    """One upload streaming into storage: type sniffed from the first bytes, size counted, hashed."""

    ingest: Ingest
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
    undone_on_rollback: bool = False  # its bytes are deleted if the transaction does not commit
    _head: bytearray | None = None
    _sha: object = None

    @property
    def folder(self) -> str:
        """The folder of the version it becomes: the original and its variants."""
        return f"{self.org.slug}/{self.media_id}/{self.version_id}"

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
        core = self.ingest.core
        self.writer = core.ctx.storage.writer(core.bucket, self.key, mime, self.max_bytes)

    def finish(self) -> tuple[StoredObject, bool]:
        """Commit the bytes to storage; (the object row, whether it is new)."""
        if self.writer is None:
            if not self._head:
                raise BadRequest("the file is empty")
            self._start(bytes(self._head))
            self._sha.update(self._head)
            self.writer.write(bytes(self._head))
        self.writer.commit()
        return self.ingest.object_for(self.org, self.key, self._sha.hexdigest(), self.writer.written, self.mime,
                                      bytes(self._head))

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


class Ingest:
    def __init__(self, core: Core, jobs):
        self.core = core
        self.jobs = jobs  # services.jobs.Jobs: a completed presigned upload queues its placeholders
        self._arrivals_after = ""  # where the sweep's next batch of incoming keys starts

    # -- uploads through the server ------------------------------------------------------------

    def begin_upload(self, org: Organization, filename: str | None, max_bytes: int | None = None,
                     allowed: frozenset[str] | None = None) -> Upload:
        st = self.core.settings
        media_id, version_id = new_id(), new_id()
        fname = safe_filename(filename)
        return Upload(self, org, fname, max_bytes or st.upload_max_bytes, allowed or st.allowed_types,
                      media_id, version_id, f"{org.slug}/{media_id}/{version_id}/{self.core.original_name(fname)}")

    def object_for(self, org: Organization, key: str, sha: str, size: int, mime: str | None,
                   head: bytes) -> tuple[StoredObject, bool]:
        width, height = self.dimensions(head, key)
        return StoredObject(org_id=org.id, bucket=self.core.bucket, key=key, sha256=sha, size=size,
                            mime_type=mime or "application/octet-stream", width=width, height=height), True

    def dimensions(self, head: bytes, key: str) -> tuple[int | None, int | None]:
        try:
            p = pipeline.probe(head)
            return p.width, p.height
        except MediaError:
            pass
        core = self.core
        try:  # a header past the first bytes (a JPEG with a big EXIF block): read the object
            _, data = core.ctx.storage.get(core.bucket, key, core.ctx.settings.max_source_bytes)
            p = pipeline.probe(data)
            return p.width, p.height
        except MediaError:
            return None, None

    def create_media(self, s: Session, up: Upload, obj: StoredObject, *, owner: str | None = None,
                     dialect: str = "v1", fields: dict | None = None, job: str | None = None,
                     with_record: Callable[[Media], None] | None = None) -> Media:
        """Record an upload whose bytes are committed to storage, in the session's transaction;
        with ``job``, that job (``up.job``) is written with it and relayed to the queue after the
        commit (the outbox); ``with_record(media)`` writes what goes with the record (a /v2
        image's tags and album) in that transaction too. If the transaction does not commit, the
        bytes are deleted (no record points at them).

        The presigned /media API's media are content-addressed: identical bytes of one organization are
        stored once (the new record points at the existing object). The /api/v1 API's uploads each keep their
        own folder (original + variants under one prefix, as its API deletes and redirects by
        folder), and share only the ``canonicalUri``."""
        core = self.core
        self.forget_on_rollback(s, up, obj)
        same = objects.same_bytes(s, obj.org_id, obj.bucket, obj.sha256) if dialect == "media" else None
        duplicate_key = None
        if same is not None:
            duplicate_key, obj = obj.key, same
        else:
            s.add(obj)
            s.flush()
        folder = up.folder
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
            up.job = self.jobs.add(s, up.org, job, media, {})
        if with_record is not None:
            with_record(media)
        if up.job is not None:
            self.jobs.relay_after_commit(s, up.job)
        if duplicate_key is not None:  # the bytes already exist under obj.key
            core.remove_after_commit(s, [(core.bucket, duplicate_key)])
        s.flush()
        return media

    def forget_on_rollback(self, s: Session, up: Upload, obj: StoredObject) -> None:
        """Delete the upload's bytes (committed to storage as ``obj``) if the session's transaction
        does not commit: no record points at them. Once per upload (``create_media`` does it; a
        step before the record, its rendering, does it first)."""
        if up.undone_on_rollback:
            return
        up.undone_on_rollback = True
        uploaded = (self.core.bucket, obj.key)
        self.core.forget_on_rollback(s, lambda: [uploaded])

    # -- presigned uploads ------------------------------------------------------------------------

    def presign_upload(self, s: Session, org: Organization, base: str, filename: str, mime: str | None,
                       size: int | None, *, owner: str | None = None, dialect: str = "v1",
                       max_bytes: int | None = None) -> tuple[Media, dict]:
        """A record waiting for its bytes, and where the client PUTs them. Without ``mime`` the URL
        takes any Content-Type (none is signed); the type is judged from the bytes either way.
        The URL is handed out in the answer, after the record has committed."""
        core = self.core
        limit = max_bytes or core.settings.upload_max_bytes
        if size is not None and size > limit:
            raise TooLarge(f"size {size} is over the {limit} byte limit")
        media_id, version_id = new_id(), new_id()
        fname = safe_filename(filename)
        folder = f"{org.slug}/{media_id}/{version_id}"
        key = f"{folder}/{core.original_name(fname)}"
        expires = core.settings.upload_url_expiry
        recorded = mime or "application/octet-stream"  # until the bytes say
        obj = StoredObject(org_id=org.id, bucket=core.bucket, key=key, sha256=None, size=0, mime_type=recorded)
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
        # a URL straight to the store writes the incoming key; the bytes are moved to ``key`` when
        # the upload is checked (complete_upload)
        signed = core.ctx.storage.presign_put(core.bucket, incoming_key(key), mime, expires, size)
        if signed is not None:
            url, headers = signed
        else:
            q = sign_query("PUT", core.bucket, key, expires, core.ctx.settings.secret_key, size)
            url = f"{base}/api/v1/media/signed/{core.bucket}/{key}?{q}"
            headers = {"Content-Type": mime} if mime else {}
            if size is not None:
                headers["Content-Length"] = str(size)
        return media, {"uploadUrl": url, "objectKey": key, "method": "PUT", "headers": headers,
                       "expiresAt": iso(datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=expires))}

    @property
    def upload_claim_lease(self) -> float:
        """Seconds after which a claimed upload is taken for abandoned: longer than any body may
        take to arrive (MEDIAPROXY_BODY_TIMEOUT) and than a check of the stored bytes."""
        return max(self.core.ctx.settings.server.body_timeout, 60.0) + 60.0

    def claim_upload(self, s: Session, media: Media) -> bool:
        """Take a waiting upload (``uploading`` → ``receiving``, compare-and-set) for this request
        alone: one PUT, or one check of what a PUT straight to the store left. A claim older than
        the lease (its process died) may be taken again.

        The claim is a unit of work of its own, committed before this returns, so that a second
        request on the same upload sees it at once (409, or "not arrived yet"); if this request's
        transaction then rolls back, the upload is given back, so that a retry works."""
        t = now()
        stale = t - timedelta(seconds=self.upload_claim_lease)
        with self.core.db.transaction() as own:  # seen by every other request before the body is read
            won = objects.claim_upload(own, media.id, t, stale)
        if won:
            set_committed_value(media, "state", "receiving")
            set_committed_value(media, "updated_at", t)
            unit.after_rollback(s, lambda: self.release_upload(media.id, t))
        return won

    def release_upload(self, media_id: str, claimed_at: datetime) -> None:
        """Give a claimed upload back (``receiving`` → ``uploading``): its URL may be used again.
        A unit of work of its own: the request that claimed it is failing."""
        try:
            with self.core.db.transaction() as own:
                objects.release_upload(own, media_id, claimed_at)
        except Exception as exc:
            log.warning("could not give back the upload of media %s: %s: %s (taken again after the lease)",
                        media_id, type(exc).__name__, exc)

    def _take_upload(self, obj: StoredObject) -> ObjectInfo | None:
        """The stored bytes of a presigned upload, under the record's own key: what a PUT straight
        to the store left under the incoming key is moved there first (a server-side copy), so
        everything checked and recorded is read from a key the client cannot write."""
        storage = self.core.ctx.storage
        try:
            storage.move(obj.bucket, incoming_key(obj.key), obj.key)
        except NotFound:
            pass  # not arrived; or the local backend, whose PUT the server writes under the key itself
        try:
            return storage.head(obj.bucket, obj.key)
        except NotFound:
            return None

    def arrived(self, media: Media) -> bool:
        """Whether a PUT has left bytes for a record still waiting (under the incoming key, or the
        key itself): a check of such a record that finds nothing costs no write."""
        if media.state == "ready":
            return False
        obj = media.current.object
        return self.arrived_at(obj.bucket, obj.key)

    def arrived_at(self, bucket: str, key: str) -> bool:
        """Whether the store holds bytes for the object ``key``, under its incoming key or itself."""
        for stored in (incoming_key(key), key):
            try:
                self.core.ctx.storage.head(bucket, stored)
                return True
            except NotFound:
                continue
        return False

    def complete_upload(self, s: Session, media: Media, disposition: str | None = None) -> bool:
        """An upload by presigned PUT: check the stored bytes (type by content, size) and mark it
        ready, in the session's transaction (``check_upload``, then ``record_upload``). False while
        the bytes are not there (or are refused: the record waits for a new PUT) or another
        request holds the upload."""
        if media.state == "ready":
            return True
        checked = self.check_upload(s, media, disposition)
        if checked is None:
            return False
        self.record_upload(s, media, checked)
        return True

    def check_upload(self, s: Session, media: Media, disposition: str | None = None) -> Checked | None:
        """The stored bytes of a waiting presigned upload, checked (type by content, size,
        dimensions; the SHA-256 where the record is content-addressed) without writing a row of
        the session's transaction: a caller that renders from them (a job, a crop) does so before
        its first write, and ``record_upload`` writes the result. The upload is claimed by this
        request (a unit of its own) and given back if the bytes are refused or the transaction
        rolls back. The PUT's Content-Disposition (the local backend's ``disposition``, S3's object
        metadata) is kept when it is a sane one. None while the bytes are not there (or are
        refused: the record waits for a new PUT) or another request holds the upload."""
        if media.state == "ready" or not self.arrived(media) or not self.claim_upload(s, media):
            return None
        checked = self._check_claimed(media, disposition)
        if checked is not None:
            # the bytes are under the record's key now, where the workers' sweep does not look:
            # if this transaction rolls back (a crop refused, a failure), a job completes the upload
            media_id = media.id
            unit.after_rollback(s, lambda: self._complete_later(media_id))
        return checked

    def _complete_later(self, media_id: str) -> None:
        """Queue the completion of an upload whose bytes a transaction took and then rolled back
        (a unit of its own, after the claim was given back), unless a live job completes it."""
        try:
            with self.core.db.transaction() as own:
                org_id = objects.waiting_alone(own, media_id)
                if org_id is not None:
                    self.jobs.enqueue(own, own.get(Organization, org_id), "finalize", own.get(Media, media_id), {})
        except Exception as exc:
            log.warning("could not queue the completion of the upload of media %s: %s: %s", media_id,
                        type(exc).__name__, exc)

    def notice(self, s: Session, org: Organization, media: Media) -> bool:
        """Complete a presigned upload straight to the store for a request that needs its bytes
        (``POST /variants``, an asynchronous crop): a record still waiting whose bytes have
        arrived is checked and made ready, and its placeholders queued, in the session's
        transaction. Reads never call it: the workers' sweep (``take_arrivals``) completes what
        the store received. Whether the record is ready now."""
        if media.state == "ready":
            return True
        checked = self.check_upload(s, media)
        if checked is None:
            return False
        self.record_notice(s, org, media, checked)
        return True

    def check_notice(self, s: Session, org: Organization, media: Media) -> Callable[[], None] | None:
        """``notice`` in two steps, for a request that renders from the bytes (a synchronous crop):
        the check now, writing no row; the returned step records it and queues the placeholders,
        to be called before the request's first write. None when there is nothing to complete."""
        checked = self.check_upload(s, media)
        if checked is None:
            return None
        return lambda: self.record_notice(s, org, media, checked)

    def record_notice(self, s: Session, org: Organization, media: Media, checked: Checked) -> None:
        self.record_upload(s, media, checked)
        self.jobs.enqueue(s, org, "finalize", media, {})

    def _check_claimed(self, media: Media, disposition: str | None) -> Checked | None:
        """check_upload of an upload this request has claimed; gives it back when the bytes are
        not there or are refused."""
        claimed_at = media.updated_at
        checked = self._inspect(media, disposition)
        if checked is None:
            self.release_upload(media.id, claimed_at)
        return checked

    def _inspect(self, media: Media, disposition: str | None) -> Checked | None:
        core = self.core
        st = core.settings
        obj = media.current.object
        info = self._take_upload(obj)
        if info is None:
            return None
        limit = st.media_max_bytes if media.dialect == "media" else st.upload_max_bytes
        allowed = st.media_api_types if media.dialect == "media" else st.allowed_types
        _, body = core.ctx.storage.open(obj.bucket, obj.key, 0, PROBE_BYTES - 1)
        try:
            head = body.read(PROBE_BYTES)
        finally:
            body.close()
        mime = sniff(head)
        if info.size > limit or mime not in allowed:
            core.ctx.storage.delete(obj.bucket, obj.key)  # refuse it: the record waits for a new PUT
            return None
        width, height = self.dimensions(head, obj.key)
        # the presigned /media API's uploads are content-addressed: their hash decides, when they are
        # recorded, whether the organization already has these bytes
        sha = core.hash_stored(obj) if media.dialect == "media" else None
        return Checked(obj.bucket, obj.key, info.size, mime, width, height, sha,
                       clean_disposition(disposition or info.content_disposition))

    def record_upload(self, s: Session, media: Media, checked: Checked) -> None:
        """Write what ``check_upload`` found: the object's and the record's type, size and
        dimensions, the version's Content-Disposition; the record is ready. A content-addressed
        upload whose bytes the organization already has points at that object, and its copy is
        deleted after the commit, before any URL of the copy has been handed out."""
        obj = media.current.object
        obj.size, obj.mime_type, obj.width, obj.height = checked.size, checked.mime_type, checked.width, checked.height
        media.current.content_disposition = checked.disposition
        drop = None
        if checked.sha256 is not None:
            obj.sha256 = checked.sha256
            drop = self._content_address(s, media, obj)
        media.size, media.mime_type = checked.size, checked.mime_type
        media.width, media.height = checked.width, checked.height
        media.state = "ready"
        media.updated_at = now()
        s.flush()
        if drop is not None:  # the copy: the record now points at the first upload
            self.core.remove_after_commit(s, [drop])

    def _content_address(self, s: Session, media: Media, obj: StoredObject) -> tuple[str, str] | None:
        """When the organization already has the bytes of ``obj`` (hashed), point at that object
        and drop the copy."""
        same = objects.same_bytes(s, obj.org_id, obj.bucket, obj.sha256, other_than=obj.id)
        if same is None:
            return None
        media.current.object_id, media.current.object = same.id, same
        s.flush()
        s.delete(obj)
        s.flush()
        return obj.bucket, obj.key

    # -- uploads straight to the store: the workers' sweep ----------------------------------------

    def arrived_keys(self, limit: int = ARRIVALS_BATCH) -> list[str]:
        """The keys of records whose bytes a PUT straight to the store has left under their
        incoming key (one listing of ``incoming/``, at most ``limit``). The local backend's PUT
        reaches the server, which completes it at once: nothing is ever listed there."""
        core = self.core
        found = []
        # each batch starts after the last one (back at the start once a listing ends): keys the
        # sweep cannot complete (a second PUT to a completed upload's URL, a deleted record's bytes,
        # which the janitor removes days later) would otherwise hide every arrival listed after them
        for key in core.ctx.storage.list(core.bucket, INCOMING, start_after=self._arrivals_after):
            found.append(key.removeprefix(INCOMING))
            if len(found) >= limit:
                self._arrivals_after = key
                break
        else:
            self._arrivals_after = ""
        return found

    @property
    def arrivals_cursor(self) -> str:
        """Where the next ``arrived_keys`` batch starts (after this key; "": at the start)."""
        return self._arrivals_after

    def rewind_arrivals(self, cursor: str) -> None:
        """Take the batch after ``cursor`` again at the next ``arrived_keys``: the one listed since
        was not taken (its unit of work failed), and would otherwise wait for the listing to wrap."""
        self._arrivals_after = cursor

    def take_arrivals(self, s: Session, keys: list[str]) -> list[Job]:
        """Queue the completion of the waiting uploads whose bytes have arrived under ``keys``
        (``arrived_keys``), in the session's transaction: one ``finalize`` job per upload, which
        checks the bytes, makes the record ready and computes its placeholders. A record already
        waiting for such a job, or for a ``variants`` job (which completes it too), gets none;
        of two sweeps that see the same arrival, one queues its job (compare-and-set on the
        record: the other finds it changed). A claim whose process died is given back with it."""
        t = now()
        stale = t - timedelta(seconds=self.upload_claim_lease)
        queued = []
        for media_id, org_id, state, updated_at in objects.waiting_arrivals(s, self.core.bucket, keys, stale):
            if not objects.mark_arrival(s, media_id, state, updated_at, t):
                continue  # another sweep took it
            media = s.get(Media, media_id)
            queued.append(self.jobs.enqueue(s, s.get(Organization, org_id), "finalize", media, {}))
        return queued

    def dead_claims(self, s: Session, limit: int = ARRIVALS_BATCH) -> list[DeadClaim]:
        """The claims whose request died holding them (``receiving`` past the lease, no live job
        for the record), as the session reads them now, with no write: a request that checked an
        upload has moved its bytes under the record's own key, where no listing of incoming/ finds
        them, and died before any rollback could queue a job (a worker killed past its timeout, out
        of memory). Whether their bytes are there (``claims_arrived``) is asked outside any
        transaction, then ``take_dead_claims`` writes: a transaction waiting on the store holds
        what it has taken meanwhile (after a write, with SQLite, the whole database's write lock)."""
        stale = now() - timedelta(seconds=self.upload_claim_lease)
        return [DeadClaim(*row) for row in objects.dead_claims(s, stale, limit)]

    def claims_arrived(self, claims: list[DeadClaim]) -> set[str]:
        """The ids of the records of ``claims`` whose bytes the store holds (it is asked: call it
        outside any transaction)."""
        return {claim.media_id for claim in claims if self.arrived_at(claim.bucket, claim.key)}

    def take_dead_claims(self, s: Session, claims: list[DeadClaim], arrived: set[str]) -> list[Job]:
        """Give back ``claims`` (``dead_claims``), in the session's transaction, and queue the
        completion of those whose bytes the store holds (``arrived``: ``claims_arrived``); a record
        changed since it was read is left alone (compare-and-set: another sweep or a request took it)."""
        t = now()
        queued = []
        for claim in claims:
            if not objects.mark_arrival(s, claim.media_id, claim.state, claim.updated_at, t):
                continue  # taken meanwhile
            if claim.media_id in arrived:
                queued.append(self.jobs.enqueue(s, s.get(Organization, claim.org_id), "finalize",
                                                s.get(Media, claim.media_id), {}))
        return queued

    # -- the local backend's upload URL ------------------------------------------------------------

    def receive_put(self, s: Session, bucket: str, key: str, stream, content_length: int | None,
                    disposition: str | None = None) -> Media:
        """The bytes of a presigned upload URL of the local backend: streamed, sniffed, bounded;
        a Content-Disposition the PUT carries is kept with the object, as S3 keeps it."""
        st = self.core.settings
        media = objects.upload_of_key(s, bucket, key)
        if media is None:
            raise NotFound("no such upload")
        if media.state == "ready":
            raise Forbidden("this upload URL has been used: objects never change under a key")
        limit = st.media_max_bytes if media.dialect == "media" else st.upload_max_bytes
        allowed = st.media_api_types if media.dialect == "media" else st.allowed_types
        if content_length is not None and content_length > limit:
            raise TooLarge(f"upload is over the {limit} byte limit")
        if disposition is not None and clean_disposition(disposition) is None:
            raise BadRequest("Content-Disposition must be inline or attachment with its parameters, "
                             f"printable ASCII, at most {DISPOSITION_MAX} characters")
        # the URL is this request's alone before any byte is read: a second PUT at the same time
        # would otherwise pass the check above too, and rewrite the object after this one answered
        if not self.claim_upload(s, media):
            if objects.media_state(s, media.id) == "ready":
                raise Forbidden("this upload URL has been used: objects never change under a key")
            raise Conflict("another request is uploading to this URL")
        self._receive(bucket, key, stream, content_length, limit, allowed)  # a failure gives the URL back
        checked = self._check_claimed(media, disposition)
        if checked is not None:
            self.record_notice(s, s.get(Organization, media.org_id), media, checked)
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
        w = self.core.ctx.storage.writer(bucket, key, mime, limit)
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

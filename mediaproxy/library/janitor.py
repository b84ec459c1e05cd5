"""The janitor: what failures leave in the library's bucket, removed once it is old enough.

Two kinds of leftovers, on either backend:
- incomplete uploads: S3 multipart uploads never completed nor aborted (an abort the store did
  not answer, a process killed mid-upload), the local backend's temp files;
- orphans: objects no record points at, as an original or a variant (bytes committed by a request
  that then failed while the store or the database was down, a write the store finished after the
  request had given up on it).

Only what is older than the grace period (``MEDIAPROXY_JANITOR_GRACE``) is touched: an upload in
flight, or an object whose record is being written, is always younger. The service's ordering
(bytes before the record that points at them, records removed before their bytes) means an old
object without a record is garbage for good.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from sqlalchemy import select

from .models import Media, StoredObject, Variant, Version
from .services.base import INCOMING

log = logging.getLogger("mediaproxy.janitor")
BATCH = 500  # keys looked up in the database at a time


@dataclass
class Sweep:
    incomplete: list[str] = field(default_factory=list)  # keys of the incomplete uploads (aborted unless dry)
    orphans: list[str] = field(default_factory=list)  # keys of the orphans (deleted unless dry)
    young: int = 0  # objects and uploads left alone: within the grace period
    failed: list[str] = field(default_factory=list)  # what could not be removed (it stays for the next run)


def minimum_grace(settings) -> float:
    """The longest an object or an incomplete upload can be in flight on a live system: an upload's
    body may arrive for ``MEDIAPROXY_BODY_TIMEOUT`` and its store write take
    ``MEDIAPROXY_S3_WRITE_TIMEOUT``; a job's first outputs wait for its record while it retries an
    outage for ``MEDIAPROXY_JOB_RETRY_BUDGET``, and a stalled worker's for its lease. A shorter grace
    deletes such in-flight bytes."""
    lib = settings.library
    return max(settings.server.body_timeout + settings.s3_write_timeout, lib.job_retry_budget + lib.job_lease)


def sweep(lib, grace: float, dry_run: bool = False) -> Sweep:
    """One pass over the library's bucket; with ``dry_run``, only say what would go."""
    storage, bucket = lib.ctx.storage, lib.bucket
    cutoff = time.time() - grace
    out = Sweep()
    for key, upload_id, started in list(storage.incomplete_uploads(bucket)):
        if started > cutoff:
            out.young += 1
            continue
        out.incomplete.append(key)
        if not dry_run:
            try:
                storage.abort_incomplete(bucket, key, upload_id)
            except Exception as exc:
                out.failed.append(key)
                log.warning("could not abort the incomplete upload of %s: %s", key, exc)
    batch: list[str] = []
    for key, modified in storage.list_aged(bucket):
        if modified > cutoff:
            out.young += 1
            continue
        batch.append(key)
        if len(batch) >= BATCH:
            _orphans(lib, batch, out, dry_run)
            batch = []
    if batch:
        _orphans(lib, batch, out, dry_run)
    return out


def _orphans(lib, keys: list[str], out: Sweep, dry_run: bool) -> None:
    bucket = lib.bucket
    with lib.db.transaction() as s:
        known = set(s.scalars(select(StoredObject.key).where(StoredObject.bucket == bucket,
                                                             StoredObject.key.in_(keys))))
        known.update(s.scalars(select(Variant.key).where(Variant.bucket == bucket, Variant.key.in_(keys))))
        # a presigned upload's bytes wait under the incoming key until its record is checked (a
        # client may PUT, then ask for its record days later); once the record is ready, or gone,
        # what is there is a late or stray PUT
        waiting = [k.removeprefix(INCOMING) for k in keys if k.startswith(INCOMING)]
        if waiting:
            known.update(INCOMING + k for k in s.scalars(
                select(StoredObject.key).join(Version, Version.object_id == StoredObject.id)
                .join(Media, Media.id == Version.media_id)
                .where(StoredObject.bucket == bucket, StoredObject.key.in_(waiting),
                       Media.state.in_(("uploading", "receiving")))))
    for key in keys:
        if key in known:
            continue
        out.orphans.append(key)
        if dry_run:
            continue
        try:
            lib.ctx.storage.delete(bucket, key)
        except Exception as exc:
            out.failed.append(key)
            log.warning("could not delete the orphan %s: %s", key, exc)

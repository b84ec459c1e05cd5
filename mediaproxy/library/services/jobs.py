"""Jobs as the services see them: written in the caller's transaction and handed to the queue
once it commits (the outbox), run to completion in the runner's transaction, and failed attempts
recorded there. Nothing here commits: the job runner (``library/jobs.py``) owns the job's unit
of work, and the claim that gives it the lease (with a crop's base version) is its own."""

from __future__ import annotations

import logging
from datetime import timedelta

import orjson
from sqlalchemy.orm import Session

from ...errors import BadRequest, MediaError, NotFound
from .. import unit
from ..ids import is_id, new_id
from ..jobs import LeaseLost, NotYet, relay
from ..models import Job, Media, Organization, now
from ..repositories import jobs as jobs_repo
from ..repositories.media import load
from .base import Core

log = logging.getLogger("mediaproxy.library")


def not_yet() -> MediaError:
    return NotYet("the upload has not arrived")


class Jobs:
    def __init__(self, core: Core):
        self.core = core
        self.ingest = None  # services.ingest.Ingest and services.versions.Versions, set by Library
        self.versions = None

    def enqueue(self, s: Session, org: Organization, kind: str, media: Media | None, params: dict) -> Job:
        """Write the job in the session's transaction; it is handed to the queue once that commits
        (the worker must find the row before it can find the task)."""
        job = self.add(s, org, kind, media, params)
        self.relay_after_commit(s, job)
        return job

    def relay_after_commit(self, s: Session, job: Job) -> None:
        core = self.core
        if core.enqueue_id is not None:
            job_id = job.id
            unit.after_commit(s, lambda: relay(core.db, core.enqueue_id, job_id))

    def add(self, s: Session, org: Organization, kind: str, media: Media | None, params: dict) -> Job:
        """The job's row in the caller's transaction, marked relayed when this process relays it
        after the commit (an unmarked row is left to the workers' sweep)."""
        job = Job(id=new_id(), org_id=org.id, media_id=media.id if media else None, kind=kind,
                  params=orjson.dumps(params).decode(), state="pending",
                  relayed_at=now() if self.core.enqueue_id is not None else None)
        s.add(job)
        return job

    def get(self, s: Session, org: Organization, job_id: str) -> Job:
        job = s.get(Job, job_id) if is_id(job_id) else None
        if job is None or job.org_id != org.id:
            raise NotFound("no such job")
        return job

    def run(self, s: Session, job_id: str, owner: str | None = None) -> dict | None:
        """Run one job that ``owner`` has claimed (jobs.claim) to completion, in the session's
        transaction (the runner commits it); raises to ask for a retry. Completes only while
        ``owner`` holds the lease (LeaseLost otherwise)."""
        job = s.get(Job, job_id)
        if job is None or job.state != "active" or job.lease_owner != owner:
            return None
        params = orjson.loads(job.params)
        media = load(s, job.media_id) if job.media_id else None
        if media is None:
            raise NotFound("the media was deleted")
        if job.kind == "crop":
            # the version it starts from was recorded with its first claim, for every attempt
            self.versions.crop(s, media, params, job=job, owner=owner)  # completes the job with the pointer
            return orjson.loads(jobs_repo.result(s, job_id) or "null")
        if job.kind not in ("variants", "finalize"):
            raise BadRequest(f"unknown job kind {job.kind!r}")
        # a presigned upload still waiting is completed by its job: its bytes are checked and
        # rendered before the job's first write (on SQLite that write holds the database's write
        # lock until the commit), then the upload and the rendering are recorded together
        checked = None
        if media.state != "ready":
            checked = self.ingest.check_upload(s, media)
            if checked is None:
                raise not_yet()
        made = self.versions.prepare(s, media, checked, variants=job.kind == "variants")
        if checked is not None:  # (a variants job's rendering has the placeholders and the hash too)
            self.ingest.record_upload(s, media, checked)
        self.versions.record(s, media, made)
        result = {"media": media.id, "objectKey": media.current.object.key,
                  "variants": [x.name for x in media.current.variants]}
        self.complete(s, job_id, owner, result)
        return result

    def complete(self, s: Session, job_id: str, owner: str | None, result: dict,
                 result_version_id: str | None = None) -> None:
        """Mark the job completed in the session's transaction, if ``owner`` still holds it."""
        if not jobs_repo.complete(s, job_id, owner, result=orjson.dumps(result).decode(), failed_reason=None,
                                  result_version_id=result_version_id, updated_at=now()):
            raise LeaseLost(job_id)

    def failed(self, s: Session, job_id: str, reason: str, *, final: bool, transient: bool = False,
               owner: str | None = None) -> str | None:
        """Record a failed attempt (if ``owner`` still holds the job) in the session's transaction:
        ``failed`` for good, or ``pending`` again with a backoff. Storage or the database
        unavailable (``transient``) is retried until ``job_retry_budget`` seconds after the first
        such failure; anything else ``job_retries`` times. Returns the state recorded (None when
        the job was not ours). A crop that failed for good has its output removed after the commit."""
        st = self.core.settings
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
        done = jobs_repo.end_attempt(s, job_id, owner, state=state, failed_reason=reason, failing_since=since,
                                     run_after=None if final else t + timedelta(seconds=delay), updated_at=t)
        if done and final:
            try:
                folder = self.versions.job_output_folder(s, job)
            except Exception as exc:
                folder = None
                log.warning("could not find the output of failed job %s: %s", job_id, type(exc).__name__)
            if folder is not None:
                unit.after_commit(s, lambda: self.versions.drop_folder(folder))
        return state if done else None

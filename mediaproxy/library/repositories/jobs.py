"""Job rows: their outcome, recorded by compare-and-set while the runner holds the lease."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..models import Job


def result(s: Session, job_id: str) -> str | None:
    return s.scalar(select(Job.result).where(Job.id == job_id))


def complete(s: Session, job_id: str, owner: str | None, **values) -> bool:
    """``active`` → ``completed`` with ``values``, if ``owner`` still holds the job."""
    return s.execute(
        update(Job).where(Job.id == job_id, Job.state == "active", Job.lease_owner == owner)
        .values(state="completed", lease_owner=None, lease_until=None, failing_since=None, **values)
        .execution_options(synchronize_session=False)).rowcount == 1


def end_attempt(s: Session, job_id: str, owner: str | None, **values) -> bool:
    """Record a failed attempt's outcome (``values``: its state, reason, backoff), if ``owner``
    still holds the job."""
    return s.execute(
        update(Job).where(Job.id == job_id, Job.state == "active", Job.lease_owner == owner)
        .values(lease_owner=None, lease_until=None, relayed_at=None, **values)
        .execution_options(synchronize_session=False)).rowcount == 1

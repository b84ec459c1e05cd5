"""The unit of work: one transaction per request (``LibraryMiddleware``) or per job (the job
runner), committed or rolled back here and nowhere else (``commit``, ``rollback``,
``transaction``). The services below never commit.

What must happen only once a transaction has committed — storage deletes, cache purges, handing
a job to the queue — is registered on the session (``after_commit``) and runs right after its
commit, or is dropped with a rollback. What an uncommitted change leaves outside the database —
bytes stored for a record that never was, an upload claimed by a request that failed — is
registered with ``after_rollback`` and runs when the transaction rolls back (or its commit fails),
dropped once it has committed. A request (or a job) that fails therefore leaves nothing half-done
outside the database: no object deleted for rows still there, no job on the queue before its row
exists, no bytes left behind for a record that was never made.

A few steps must be seen by other requests before the one that takes them goes on: a presigned
upload claimed by compare-and-set before its body is read (a second PUT on the same URL is 409),
and given back when that request fails. They are units of work of their own, short and separate
from the request's (``transaction``), named where they are taken.

A hook runs once its transaction has ended and cannot change its outcome: it must not raise (a
failure is logged; the janitor and the outbox's sweep pick up what it left) and must not read the
session (whose objects are expired): give it what it needs, computed before."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger("mediaproxy.library")
HOOKS = "mediaproxy.after_commit"
UNDO = "mediaproxy.after_rollback"


def after_commit(s: Session, hook: Callable[[], object]) -> None:
    """Run ``hook`` after the session's next commit; never if it rolls back first."""
    s.info.setdefault(HOOKS, []).append(hook)


def after_rollback(s: Session, hook: Callable[[], object]) -> None:
    """Run ``hook`` when the session's transaction rolls back, or its commit fails; never once it
    has committed."""
    s.info.setdefault(UNDO, []).append(hook)


def commit(s: Session) -> None:
    """Commit the unit (its after-commit hooks follow); a commit that fails is rolled back, its
    after-rollback hooks run, and the error goes on."""
    try:
        s.commit()
    except BaseException:
        rollback(s)
        raise


def rollback(s: Session) -> None:
    """Roll the unit back and run its after-rollback hooks (a rollback that fails, on a broken
    connection, still runs them: nothing was committed)."""
    try:
        s.rollback()
    finally:
        _run(s.info.pop(UNDO, ()))


@contextmanager
def transaction(db) -> Iterator[Session]:
    """A unit of work of its own: a session committed when the block ends normally, rolled back
    otherwise, always closed."""
    s = db.session()
    try:
        yield s
        commit(s)
    except BaseException:
        rollback(s)
        raise
    finally:
        s.close()


@contextmanager
def beside(s: Session) -> Iterator[Session]:
    """A unit of work of its own on the database of the session ``s`` (which it leaves alone):
    for what must be committed whatever becomes of ``s``'s transaction, or before it goes on."""
    own = Session(bind=s.get_bind(), expire_on_commit=False)
    try:
        yield own
        commit(own)
    except BaseException:
        rollback(own)
        raise
    finally:
        own.close()


def _run(hooks) -> None:
    for hook in hooks:
        try:
            hook()
        except Exception as exc:
            log.warning("a step after the transaction failed (%s: %s); left for the janitor or the outbox",
                        type(exc).__name__, exc)


@event.listens_for(Session, "after_commit")
def _committed(s: Session) -> None:
    s.info.pop(UNDO, None)
    _run(s.info.pop(HOOKS, ()))


@event.listens_for(Session, "after_soft_rollback")
def _drop(s: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:  # the outermost transaction: its hooks will never run
        s.info.pop(HOOKS, None)

"""After-commit hooks: what must happen only once a transaction has committed — storage deletes,
cache purges, handing a job to the queue — is registered on the session (``after_commit``) and
runs right after its next commit, or is dropped with a rollback. A request (or a job) that fails
therefore leaves nothing half-done outside the database: no object deleted for rows still there,
no job on the queue before its row exists.

A hook runs once the commit has happened and cannot undo it: it must not raise (a failure is
logged; the janitor and the outbox's sweep pick up what it left) and must not read the session
(whose objects are expired): give it what it needs, computed before."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger("mediaproxy.library")
HOOKS = "mediaproxy.after_commit"


def after_commit(s: Session, hook: Callable[[], object]) -> None:
    """Run ``hook`` after the session's next commit; never if it rolls back first."""
    s.info.setdefault(HOOKS, []).append(hook)


@event.listens_for(Session, "after_commit")
def _run(s: Session) -> None:
    for hook in s.info.pop(HOOKS, ()):
        try:
            hook()
        except Exception as exc:
            log.warning("an after-commit step failed (%s: %s); left for the janitor or the outbox",
                        type(exc).__name__, exc)


@event.listens_for(Session, "after_soft_rollback")
def _drop(s: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:  # the outermost transaction: its hooks will never run
        s.info.pop(HOOKS, None)

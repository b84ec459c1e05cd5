"""Jobs on huey: SQLite storage by default (``MEDIAPROXY_QUEUE_URL=sqlite:///…``), Redis
(``redis://…``) when it says so. One task, ``run_job(job_id)``; the job's record (its
state, attempts, failedReason, result) lives in the library's database, so the API answers
from there and the queue only carries ids.

State: ``pending → active → completed | failed``. A job that raises is retried with
exponential backoff (``MEDIAPROXY_JOB_RETRIES`` times, the first after
``MEDIAPROXY_JOB_RETRY_DELAY`` seconds, doubling) and stays ``pending`` with the last
``failedReason`` meanwhile; bad input (a 4xx) fails at once. A worker that dies mid-job
leaves the job ``active``: the next worker to start puts it back on the queue, and the
service's ordering (new objects first, pointer moved in one transaction) means the re-run
finds the record on the old version or the new, never on a missing object.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from huey import RedisHuey, SqliteHuey
from huey.api import Huey
from huey.exceptions import RetryTask
from sqlalchemy import select

from ..errors import MediaError
from ..settings import Settings
from .models import Job

log = logging.getLogger("mediaproxy.jobs")
TASK = "mediaproxy.run_job"


class NotYet(MediaError):
    """Retry later: e.g. the bytes of a presigned upload have not arrived yet."""

    status = 409
    reason = "not ready yet"


def make_huey(settings: Settings) -> Huey:
    url = settings.library.queue_url
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey(name="mediaproxy", filename=str(path), results=False, timeout=30)
    return RedisHuey(name="mediaproxy", url=url, results=False)


class Queue:
    """The queue as the web processes see it (enqueue) and as the worker sees it (run)."""

    def __init__(self, settings: Settings, runner: Callable[[str], None] | None = None):
        self.settings = settings
        self.huey = make_huey(settings)
        self._runner = runner

        @self.huey.task(name=TASK)
        def run_job(job_id: str) -> None:
            if self._runner is None:
                raise RuntimeError("this process only enqueues")
            self._runner(job_id)

        self._task = run_job

    def enqueue(self, job_id: str) -> None:
        self._task(job_id)

    def queued_ids(self) -> set[str]:
        ids = set()
        for task in [*self.huey.pending(), *self.huey.scheduled()]:
            if task.args:
                ids.add(task.args[0])
        return ids


def runner(settings: Settings, library) -> Callable[[str], None]:
    """The worker's side of ``run_job``: run, record failures, ask huey to retry with backoff."""
    st = settings.library

    def run(job_id: str) -> None:
        s = library.db.session()
        try:
            library.run_job(s, job_id)
        except NotYet as exc:
            _failed(library, s, job_id, exc.reason, retry=True, delay_for=lambda n: st.job_retry_delay * 2 ** (n - 1))
        except MediaError as exc:
            s.rollback()
            if exc.status < 500:
                library.job_failed(s, job_id, exc.reason, final=True)
                log.info("job %s failed: %s", job_id, exc.reason)
                return
            _failed(library, s, job_id, exc.reason, retry=True, delay_for=lambda n: st.job_retry_delay * 2 ** (n - 1))
        except Exception as exc:
            log.exception("job %s raised", job_id)
            _failed(library, s, job_id, f"{type(exc).__name__}: {exc}", retry=True,
                    delay_for=lambda n: st.job_retry_delay * 2 ** (n - 1))
        finally:
            s.close()

    def _failed(lib, s, job_id: str, reason: str, retry: bool, delay_for) -> None:
        s.rollback()
        job = s.get(Job, job_id)
        if job is None:
            return
        final = not retry or job.attempts > st.job_retries
        lib.job_failed(s, job_id, reason, final=final)
        if not final:
            raise RetryTask(reason, delay=delay_for(job.attempts))

    return run


def recover(queue: Queue, library) -> int:
    """Put back on the queue the jobs a dead worker left ``active`` and any ``pending`` job the
    queue lost (e.g. a Redis flush). Called when a worker starts."""
    queued = queue.queued_ids()
    n = 0
    with library.db.transaction() as s:
        for job in s.scalars(select(Job).where(Job.state.in_(("pending", "active")))):
            if job.id in queued:
                continue
            job.state = "pending"
            n += 1
            queue.enqueue(job.id)
    if n:
        log.info("re-queued %d interrupted job(s)", n)
    return n


def run_worker(settings: Settings) -> None:
    """``mediaproxy worker``: the huey consumer, in threads, until SIGINT/SIGTERM."""
    from ..app import configure_vips
    from ..context import Context
    from .db import Database
    from .service import Library

    configure_vips(settings)
    ctx = Context.build(settings)
    db = Database(settings.library.database_url, pool_size=settings.library.worker_threads + 1)
    if settings.library.migrate_on_start:
        from .db import upgrade_locked

        upgrade_locked(db)
    lib = Library(ctx, db)
    queue = Queue(settings)
    queue._runner = runner(settings, lib)
    lib._enqueue = queue.enqueue
    try:
        recover(queue, lib)
    except Exception as exc:  # e.g. a database not migrated yet: serve the queue anyway
        log.warning("could not look for interrupted jobs: %s: %s", type(exc).__name__, exc)
    consumer = queue.huey.create_consumer(workers=settings.library.worker_threads, worker_type="thread",
                                          periodic=False, initial_delay=0.05, backoff=1.5, max_delay=0.5,
                                          check_worker_health=True, graceful_signal="INT")
    consumer.run()

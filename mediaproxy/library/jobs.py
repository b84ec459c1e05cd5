"""Jobs on huey: SQLite storage by default (``MEDIAPROXY_QUEUE_URL=sqlite:///…``), Redis
(``redis://…``) when it says so. One task, ``run_job(job_id)``; the job's record (its state,
attempts, failedReason, result, lease) lives in the library's database, so the API answers from
there and the queue only carries ids. docs/library.md § Jobs has the whole model; in short:

- **Outbox.** The job's row is written in the transaction of the request that asks for it, marked
  relayed, and handed to the queue after the commit. When the queue cannot take it the mark is
  undone and the row waits: every worker's sweep hands un-relayed rows over (and rows relayed
  long ago that the queue no longer holds, e.g. after a Redis restart without persistence).
- **Claim and lease.** A worker runs a job only after moving it ``pending → active`` by
  compare-and-set, with itself as ``lease_owner`` and ``lease_until`` ahead; a heartbeat renews
  the leases of the jobs it runs. A job whose lease expired (its worker was killed, frozen, or
  lost the database) is put back to ``pending`` by the sweep of any worker. Nothing is recovered
  because "a worker started": any number of workers start and stop at any time.
- **Exactly once in effect.** A job completes in the transaction that applies it, and only while
  its runner still holds the lease; a crop moves its media by compare-and-set from the version it
  started from. A duplicate task, a rerun after a crash, or a stale worker changes nothing twice.
- **Retries.** Bad input (a 4xx) fails at once. Storage or the database unavailable is retried
  with backoff for ``MEDIAPROXY_JOB_RETRY_BUDGET`` seconds; anything else
  ``MEDIAPROXY_JOB_RETRIES`` times. A retry waits in the database (``run_after``) until the sweep
  hands it to the queue again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from huey import RedisHuey, SqliteHuey
from huey.api import Huey
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from ..errors import MediaError
from ..settings import LibrarySettings, Settings
from . import unit
from .models import Job, Media, now

log = logging.getLogger("mediaproxy.jobs")
TASK = "mediaproxy.run_job"
QUEUE_TIMEOUT = 5.0  # seconds a Redis command may take before the queue counts as unreachable
RELAY_BATCH = 200  # un-relayed jobs handed to the queue per sweep
STALE_LEASES = 10  # a relayed job still pending after this many leases is checked against the queue
# A job left ``active`` by a release before leases (no lease, no heartbeat) may still be running in
# an old worker during a rolling upgrade: it is put back only this many leases after it last moved.
LEASELESS_GRACE_LEASES = 10


class NotYet(MediaError):
    """Retry later: e.g. the bytes of a presigned upload have not arrived yet."""

    status = 409
    reason = "not ready yet"


class LeaseLost(Exception):
    """The job's lease passed to another worker while this one ran it: this attempt changes nothing."""


def unavailable(exc: BaseException) -> bool:
    """Storage or the database could not be reached (not the job's fault): retried for a time budget."""
    if isinstance(exc, MediaError):
        return exc.status in (502, 503, 504)
    if isinstance(exc, DBAPIError):
        return isinstance(exc, (OperationalError, InterfaceError)) or exc.connection_invalidated
    return isinstance(exc, (PoolTimeout, TimeoutError, ConnectionError))


def make_huey(settings: Settings) -> Huey:
    url = settings.library.queue_url
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey(name="mediaproxy", filename=str(path), results=False, timeout=30)
    from redis import ConnectionPool

    # a Redis that is gone or frozen is an error within seconds, not a request thread held forever
    pool = ConnectionPool.from_url(url, socket_timeout=QUEUE_TIMEOUT, socket_connect_timeout=QUEUE_TIMEOUT)
    return RedisHuey(name="mediaproxy", connection_pool=pool, results=False)


class Queue:
    """The queue as the web processes see it (enqueue) and as the worker sees it (run)."""

    def __init__(self, settings: Settings, runner: Callable[[str], None] | None = None):
        self.settings = settings
        self.huey = make_huey(settings)
        self.runner = runner

        @self.huey.task(name=TASK)
        def run_job(job_id: str) -> None:
            if self.runner is None:
                raise RuntimeError("this process only enqueues")
            self.runner(job_id)

        self._task = run_job

    def enqueue(self, job_id: str) -> None:
        self._task(job_id)

    def enqueue_later(self, job_id: str, delay: float) -> None:
        self._task.schedule(args=(job_id,), delay=delay)

    def ping(self) -> None:
        """Raises when the queue cannot take a task."""
        self.huey.pending_count()

    def queued_ids(self) -> set[str]:
        ids = set()
        for task in [*self.huey.pending(), *self.huey.scheduled()]:
            if task.args:
                ids.add(task.args[0])
        return ids


# -- the outbox ----------------------------------------------------------------------------------

def relay(db, enqueue: Callable[[str], None], job_id: str) -> bool:
    """Hand a committed job (already marked relayed) to the queue; on failure undo the mark, so the
    sweep hands it over later. False when the queue could not take it."""
    try:
        enqueue(job_id)
        return True
    except Exception as exc:
        log.warning("queue unreachable (%s): job %s waits in the outbox", type(exc).__name__, job_id)
    try:
        with db.transaction() as s:
            s.execute(update(Job).where(Job.id == job_id, Job.state == "pending").values(relayed_at=None))
    except Exception as exc:  # the database too: the job is handed over again once its relay is stale
        log.warning("could not return job %s to the outbox: %s", job_id, type(exc).__name__)
    return False


# -- leases --------------------------------------------------------------------------------------

def claim(db, job_id: str, owner: str, lease: float) -> bool:
    """``pending`` (or ``active`` with an expired lease) → ``active``, held by ``owner``: by
    compare-and-set, so of any number of workers handed the same id, one runs it. A crop records
    with its first claim the version it starts from (``base_version_id``), for every attempt:
    committed with the lease, it survives an attempt that fails or is killed."""
    t = now()
    with db.transaction() as s:
        got = s.execute(
            update(Job)
            .where(Job.id == job_id,
                   or_(Job.state == "pending",
                       (Job.state == "active") & (or_(Job.lease_until.is_(None), Job.lease_until < t))))
            .values(state="active", attempts=Job.attempts + 1, lease_owner=owner,
                    lease_until=t + timedelta(seconds=lease), updated_at=t)
            .execution_options(synchronize_session=False)
        ).rowcount
        if got == 1:
            s.execute(
                update(Job).where(Job.id == job_id, Job.kind == "crop", Job.base_version_id.is_(None))
                .values(base_version_id=select(Media.current_version_id).where(Media.id == Job.media_id)
                        .scalar_subquery())
                .execution_options(synchronize_session=False))
    return got == 1


class Keeper:
    """The worker's heartbeat, every ``MEDIAPROXY_JOB_HEARTBEAT`` seconds in every worker (not only
    at start), on two threads: ``job-leases`` renews the leases of the jobs this process runs, puts
    back jobs whose lease expired and relays the outbox (``beat``); ``upload-arrivals`` queues the
    completion of presigned uploads whose bytes the store has received (``sweep_arrivals``;
    ``ingest``: the library's ``Ingest``). The leases never wait on the store: a store that hangs
    holds back the sweep by up to the S3 client's timeouts and retries, which in the renewals'
    thread could outlast a lease (timeouts raised near it) and let another worker run a running
    job again."""

    def __init__(self, db, queue: Queue, settings: LibrarySettings, ingest=None):
        self.db = db
        self.queue = queue
        self.settings = settings
        self.ingest = ingest
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._sweeping = threading.Lock()  # one sweep of arrivals at a time in this process
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # what failed at the last beat, per part of it: logged once per outage, and its end
        self._failing: dict[str, str | None] = {"jobs": None, "arrivals": None}

    def hold(self, job_id: str) -> None:
        with self._lock:
            self._held.add(job_id)

    def release(self, job_id: str) -> None:
        with self._lock:
            self._held.discard(job_id)

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._every, args=(self.beat,), name="job-leases", daemon=True)]
        if self.ingest is not None:
            self._threads.append(threading.Thread(target=self._every, args=(self.sweep_arrivals,),
                                                  name="upload-arrivals", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self, timeout: float | None = None) -> None:
        """Both threads end after their current round; ``timeout`` waits that long for them (a
        sweep waiting on a hung store ends at the S3 client's timeouts)."""
        self._stop.set()
        if timeout is not None:
            for t in self._threads:
                t.join(timeout)

    def _every(self, work: Callable[[], object]) -> None:
        while True:
            work()
            if self._stop.wait(self.settings.job_heartbeat):
                return

    def _outage(self, part: str, exc: Exception | None, failed: str, works: str) -> None:
        """Log ``failed`` once per outage of ``part`` (``exc`` given), ``works`` when it ends. Each
        part has one thread, which alone reads and writes its entry."""
        if exc is not None:
            what = type(exc).__name__
            if self._failing[part] != what:
                log.warning(failed, what)
            self._failing[part] = what
        elif self._failing[part] is not None:
            log.info(works)
            self._failing[part] = None

    def beat(self) -> None:
        """The leases and the outbox: the database and the queue, never the store."""
        try:
            self.renew()
            expired = self.expire()
            relayed = self.relay_outbox()
        except Exception as exc:
            self._outage("jobs", exc, "job sweep failed (%s): leases and the outbox wait for the next beat", "")
            return
        self._outage("jobs", None, "", "job sweep works again")
        if expired:
            log.warning("re-queued %d job(s) whose worker's lease expired", expired)
        if relayed:
            log.info("relayed %d job(s) from the outbox", relayed)

    def sweep_arrivals(self) -> int | None:
        """``take_arrivals``, on its own thread: a store that does not answer holds back only this
        sweep (logged once per outage). One sweep at a time: a call while another is running (it
        waits on a slow store) returns None at once; otherwise the number of completions queued
        (0 when the sweep failed)."""
        if not self._sweeping.acquire(blocking=False):
            return None
        try:
            try:
                arrived = self.take_arrivals()
            except Exception as exc:
                self._outage("arrivals", exc,
                             "the sweep of uploads arrived in the store failed (%s): again at the next beat", "")
                return 0
            self._outage("arrivals", None, "", "the sweep of uploads arrived in the store works again")
        finally:
            self._sweeping.release()
        if arrived:
            log.info("queued the completion of %d upload(s) the store received", arrived)
        return arrived

    def renew(self) -> int:
        with self._lock:
            held = list(self._held)
        if not held:
            return 0
        with self.db.transaction() as s:
            return s.execute(
                update(Job).where(Job.id.in_(held), Job.lease_owner == self.owner, Job.state == "active")
                .values(lease_until=now() + timedelta(seconds=self.settings.job_lease))
                .execution_options(synchronize_session=False)).rowcount

    def expire(self) -> int:
        """Jobs ``active`` past their lease → ``pending``; one with no lease (left by a release
        before leases) only LEASELESS_GRACE_LEASES leases after it last moved, so that an old
        worker still running it during a rolling upgrade is not doubled."""
        t = now()
        grace = t - timedelta(seconds=LEASELESS_GRACE_LEASES * self.settings.job_lease)
        with self.db.transaction() as s:
            return s.execute(
                update(Job).where(Job.state == "active", or_(and_(Job.lease_until.is_(None), Job.updated_at < grace),
                                                             Job.lease_until < t))
                .values(state="pending", lease_owner=None, lease_until=None, relayed_at=None, run_after=None)
                .execution_options(synchronize_session=False)).rowcount

    def take_arrivals(self) -> int:
        """A presigned upload straight to the store tells the server nothing: the store's incoming
        keys are listed, and each waiting upload found there gets the job that completes it
        (``Ingest.take_arrivals``), as does one whose checking request died holding its claim
        (``Ingest.dead_claims``, ``Ingest.take_dead_claims``), in a unit of work of its own; the
        relay follows the commit. The store is asked before that unit writes anything: a store
        that hangs would otherwise hold its transaction open, and with SQLite the whole database's
        write lock, which the renewal of leases on the other thread (and every request) waits for."""
        if self.ingest is None:
            return 0
        cursor = self.ingest.arrivals_cursor
        keys = self.ingest.arrived_keys()
        try:
            with self.db.transaction() as s:
                claims = self.ingest.dead_claims(s)
            arrived = self.ingest.claims_arrived(claims)  # the store, outside any transaction
            with self.db.transaction() as s:
                # a claim whose request died is given back first (its bytes may be under the record's key)
                return len(self.ingest.take_dead_claims(s, claims, arrived)) + len(self.ingest.take_arrivals(s, keys))
        except Exception:
            self.ingest.rewind_arrivals(cursor)  # the batch listed is taken again at the next sweep
            raise

    def relay_outbox(self) -> int:
        """Hand the queue what it should hold: due un-relayed jobs, and those relayed so long ago
        that the queue has lost them. Each is marked before it is handed over (by compare-and-set,
        so two workers' sweeps do not both send it), and unmarked if the queue refuses it."""
        t = now()
        stale = t - timedelta(seconds=STALE_LEASES * self.settings.job_lease)
        with self.db.transaction() as s:
            due = list(s.scalars(
                select(Job.id).where(Job.state == "pending", Job.relayed_at.is_(None),
                                     or_(Job.run_after.is_(None), Job.run_after <= t))
                .order_by(Job.created_at).limit(RELAY_BATCH)))
            old = list(s.execute(
                select(Job.id, Job.relayed_at).where(Job.state == "pending", Job.relayed_at < stale)
                .limit(RELAY_BATCH)))
        if old:
            queued = self.queue.queued_ids()
            due += [job_id for job_id, _ in old if job_id not in queued]
        n = 0
        for job_id in due:
            with self.db.transaction() as s:
                marked = s.execute(
                    update(Job).where(Job.id == job_id, Job.state == "pending",
                                      or_(Job.relayed_at.is_(None), Job.relayed_at < stale))
                    .values(relayed_at=t).execution_options(synchronize_session=False)).rowcount
            if not marked:
                continue  # another worker's sweep has it
            if not relay(self.db, self.queue.enqueue, job_id):
                break  # the queue is down: the rest wait for the next beat
            n += 1
        return n


# -- the worker's side of run_job ----------------------------------------------------------------

def runner(settings: Settings, library, queue: Queue, keeper: Keeper) -> Callable[[str], None]:
    """Claim, run, record the outcome: the job's unit of work (the services run it in one
    session, committed here). A job whose outcome cannot be recorded (the database went away)
    keeps its lease until it expires, and is then run again."""
    st = settings.library

    def run(job_id: str) -> None:
        try:
            if not claim(library.db, job_id, keeper.owner, st.job_lease):
                return  # done, held by a live worker, or gone: a duplicate task does nothing
        except Exception as exc:
            # the database is away: keep the task, try again after a heartbeat
            log.warning("job %s: could not claim (%s); again in %.1f s", job_id, type(exc).__name__,
                        st.job_heartbeat)
            try:
                queue.enqueue_later(job_id, st.job_heartbeat)
            except Exception:
                pass  # the stale relay check hands it over again
            return
        keeper.hold(job_id)
        s = library.db.session()
        try:
            library.jobs.run(s, job_id, keeper.owner)
            unit.commit(s)  # the job's effect and its completion, together
        except LeaseLost:
            _rollback(s)
            log.warning("job %s: lease lost to another worker; this attempt is dropped", job_id)
        except Exception as exc:  # (a BaseException, e.g. the process exiting, is left to the lease)
            _rollback(s)
            _failed(s, job_id, exc)
        finally:
            keeper.release(job_id)
            s.close()

    def _failed(s, job_id: str, exc: BaseException) -> None:
        if isinstance(exc, MediaError) and exc.status < 500 and not isinstance(exc, NotYet):
            reason, final, transient = exc.reason, True, False
        elif unavailable(exc):
            reason, final, transient = _reason(exc), False, True
        else:
            if not isinstance(exc, MediaError):
                log.error("job %s raised", job_id, exc_info=exc)
            reason, final, transient = _reason(exc), False, False
        try:
            state = library.jobs.failed(s, job_id, reason, final=final, transient=transient, owner=keeper.owner)
            unit.commit(s)
        except Exception as err:
            _rollback(s)
            log.warning("job %s failed (%s) and its end could not be recorded (%s): its lease will put it back",
                        job_id, reason, type(err).__name__)
            return
        if state == "failed":
            log.info("job %s failed: %s", job_id, reason)
        elif state == "pending":
            log.info("job %s will be retried: %s", job_id, reason)

    return run


def _rollback(s) -> None:
    try:
        unit.rollback(s)
    except Exception:  # a connection that broke mid-job: the session is discarded anyway
        pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, MediaError):
        return exc.reason
    if isinstance(exc, DBAPIError):
        return f"database unavailable: {type(exc.orig).__name__}" if exc.orig is not None else "database unavailable"
    return f"{type(exc).__name__}: {exc}"

"""Jobs outlive workers: queued before a worker starts, or interrupted by one that died."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import create_engine, text

from . import media
from .conftest import start_library
from .library import MEDIAPROXY, Worker
from .server import ROOT


@pytest.fixture(scope="module", params=["local", "s3-pg-redis"])
def idle_stack(request, make_server, tmp_path_factory):
    stack = start_library(request, make_server, tmp_path_factory, request.param, worker=False)
    yield stack
    stack.stop()


@pytest.fixture
def idle(idle_stack):
    """A library with no worker running (the test starts one; it is stopped after the test)."""
    yield idle_stack
    if idle_stack.worker is not None:
        idle_stack.worker.stop()
        idle_stack.worker = None


def _state(stack, job_id: str) -> dict:
    return stack.api("GET", f"/api/v1/media/job/{job_id}").json()


def test_jobs_queued_before_the_worker_starts_complete(idle):
    ids = []
    for i in range(3):
        r = idle.upload(media.jpeg(100 + i, 80), generateVariants=True, **{"async": True})
        assert r.status_code == 202
        ids.append(r.json()["jobId"])
    time.sleep(0.5)
    assert all(_state(idle, j)["state"] == "pending" for j in ids)
    idle.worker = Worker(idle.env, idle.workdir / "worker.log")
    for j in ids:
        assert idle.wait_job(j)["state"] == "completed"


def test_a_job_interrupted_by_a_dead_worker_is_run_again(idle):
    m = idle.upload(media.gradient(300, 200).pngsave_buffer(), "g.png").json()
    r = idle.api("POST", "/api/v1/media/crop", json={"id": m["id"], "x": 0, "y": 0, "width": 100, "height": 100,
                                                     "async": True})
    job_id = r.json()["jobId"]
    # What a worker killed mid-job leaves behind: the task taken off the queue, the record "active"
    # under a lease it no longer renews (a release before leases left none: see the grace's test).
    from huey import RedisHuey, SqliteHuey

    url = idle.env["MEDIAPROXY_QUEUE_URL"]
    h = (SqliteHuey(name="mediaproxy", filename=url.removeprefix("sqlite:///")) if url.startswith("sqlite")
         else RedisHuey(name="mediaproxy", url=url))
    assert h.pending_count() == 1
    h.flush()
    engine = create_engine(idle.env["MEDIAPROXY_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET state='active', attempts=1, lease_owner='killed', lease_until=:t "
                          "WHERE id=:id"), {"id": job_id, "t": datetime.now(UTC).replace(tzinfo=None)})
    engine.dispose()
    assert _state(idle, job_id)["state"] == "active"
    # the record still points at the old version, whose bytes are all there
    assert idle.api("GET", f"/api/v1/media/{m['id']}").json()["objectKey"] == m["objectKey"]
    assert requests.get(m["url"], timeout=30).status_code == 200
    idle.worker = Worker(idle.env, idle.workdir / "worker.log")
    job = idle.wait_job(job_id)
    assert job["state"] == "completed" and job["attempts"] == 2
    got = idle.api("GET", f"/api/v1/media/{m['id']}").json()
    assert (got["width"], got["height"]) == (100, 100)
    assert requests.get(got["url"], timeout=30).status_code == 200


def test_worker_stops_on_sigterm_and_sigint(idle):
    for sig in (signal.SIGINT, signal.SIGTERM):
        w = Worker(idle.env, idle.workdir / "worker.log")
        time.sleep(1.0)
        assert w.proc.poll() is None
        w.stop(sig)
        assert w.proc.returncode is not None


def test_db_upgrade_is_idempotent_and_keys_print_last(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "MEDIAPROXY_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    for _ in range(2):
        out = subprocess.run([MEDIAPROXY, "db", "upgrade"], cwd=ROOT, env=env, capture_output=True, text=True,
                             check=True)
        assert "revision 0010" in out.stdout  # the head: the admin list's index
    out = subprocess.run([MEDIAPROXY, "keys", "create", "--org", "new-org"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    key = out.stdout.strip().splitlines()[-1]
    assert key.startswith("mpk_") and len(key) > 50
    engine = create_engine(env["MEDIAPROXY_DATABASE_URL"])
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT prefix, digest FROM api_keys")).all()
    engine.dispose()
    assert len(stored) == 1 and key not in stored[0] and stored[0][0] in key  # only a digest is kept
    bad = subprocess.run([MEDIAPROXY, "keys", "create", "--org", "Not A Slug"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "slug" in bad.stderr


# -- the job model in process: claims, leases, the outbox, retry budgets ---------------------------

@pytest.fixture
def job_lib(tmp_path):
    """A Library on a fresh SQLite database and the local backend, and a factory of pending jobs."""
    from mediaproxy.context import Context
    from mediaproxy.library import auth
    from mediaproxy.library.db import Database
    from mediaproxy.library.models import Job
    from mediaproxy.library.services import Library
    from mediaproxy.settings import Settings

    (tmp_path / "storage" / "library").mkdir(parents=True)
    settings = Settings.from_env({
        "MEDIAPROXY_STORAGE": str(tmp_path / "storage"), "MEDIAPROXY_SECRET_KEY": "s" * 40,
        "MEDIAPROXY_DATABASE_URL": f"sqlite:///{tmp_path}/lib.db", "MEDIAPROXY_CACHE_DIR": str(tmp_path / "cache"),
        "MEDIAPROXY_JOB_RETRIES": "2", "MEDIAPROXY_JOB_RETRY_DELAY": "1", "MEDIAPROXY_JOB_RETRY_MAX_DELAY": "3",
        "MEDIAPROXY_JOB_RETRY_BUDGET": "60", "MEDIAPROXY_JOB_LEASE": "0.3"})
    db = Database(settings.library.database_url)
    db.upgrade()
    lib = Library(Context.build(settings), db)
    with db.transaction() as s:
        org_id = auth.organization(s, "acme", create=True).id

    def new_job() -> str:
        with db.transaction() as s:
            job = Job(id=uuid.uuid4().hex, org_id=org_id, kind="finalize", params="{}", state="pending")
            s.add(job)
        return job.id

    yield lib, new_job
    db.dispose()


def _row(lib, job_id: str):
    from mediaproxy.library.models import Job

    with lib.db.transaction() as s:
        job = s.get(Job, job_id)
        s.expunge(job)
        return job


def _lease_ran_out(lib, job_id: str) -> None:
    """Back-date a job's lease to a second ago, as the clock would have (no sleeping for it)."""
    from sqlalchemy import update

    from mediaproxy.library.models import Job, now

    with lib.db.transaction() as s:
        s.execute(update(Job).where(Job.id == job_id).values(lease_until=now() - timedelta(seconds=1)))


def test_a_job_is_claimed_once_and_again_only_after_its_lease_expires(job_lib):
    from mediaproxy.library.jobs import Keeper, claim

    lib, new_job = job_lib
    job_id = new_job()
    assert claim(lib.db, job_id, "worker-a", 60)
    assert not claim(lib.db, job_id, "worker-b", 60)  # held under a live lease
    keeper = Keeper(lib.db, None, lib.settings)
    assert keeper.expire() == 0
    _lease_ran_out(lib, job_id)
    assert keeper.expire() == 1  # any worker's sweep puts it back
    job = _row(lib, job_id)
    assert (job.state, job.lease_owner, job.relayed_at) == ("pending", None, None)
    assert claim(lib.db, job_id, "worker-b", 60)
    assert _row(lib, job_id).attempts == 2


def test_a_job_left_active_by_a_release_before_leases_gets_a_grace(job_lib):
    """Rolling upgrade: a job an old worker (no lease, no heartbeat) is still running is not put
    back by the first sweep of a new worker, only once it has not moved for its grace."""
    from datetime import timedelta

    from sqlalchemy import update

    from mediaproxy.library.jobs import LEASELESS_GRACE_LEASES, Keeper
    from mediaproxy.library.models import Job, now

    lib, new_job = job_lib
    job_id = new_job()
    grace = LEASELESS_GRACE_LEASES * lib.settings.job_lease

    def left_active(seconds_ago: float) -> None:
        with lib.db.transaction() as s:
            s.execute(update(Job).where(Job.id == job_id).values(
                state="active", lease_owner=None, lease_until=None, updated_at=now() - timedelta(seconds=seconds_ago)))

    keeper = Keeper(lib.db, None, lib.settings)
    left_active(1)
    assert keeper.expire() == 0  # an old worker may still be running it
    assert _row(lib, job_id).state == "active"
    left_active(grace + 1)
    assert keeper.expire() == 1  # its worker is gone by now: any worker's sweep puts it back
    assert _row(lib, job_id).state == "pending"


def test_a_heartbeat_keeps_the_lease_and_a_lost_lease_completes_nothing(job_lib):
    from mediaproxy.library.jobs import Keeper, LeaseLost, claim

    lib, new_job = job_lib
    job_id = new_job()
    keeper = Keeper(lib.db, None, replace(lib.settings, job_lease=60.0))
    assert claim(lib.db, job_id, keeper.owner, 60)
    keeper.hold(job_id)
    for _ in range(3):
        _lease_ran_out(lib, job_id)  # (not yet swept)
        assert keeper.renew() == 1  # the heartbeat gives it a whole lease again
        assert keeper.expire() == 0
    keeper.release(job_id)
    assert keeper.renew() == 0  # no longer held: no longer renewed
    _lease_ran_out(lib, job_id)
    assert keeper.expire() == 1
    assert claim(lib.db, job_id, "worker-b", 60)
    s = lib.db.session()
    try:
        with pytest.raises(LeaseLost):  # the first runner's late end changes nothing
            lib.jobs.complete(s, job_id, keeper.owner, {"x": 1})
        s.rollback()
        assert lib.jobs.failed(s, job_id, "late", final=False, owner=keeper.owner) is None
        assert _row(lib, job_id).state == "active"
        lib.jobs.complete(s, job_id, "worker-b", {"x": 1})
        s.commit()
    finally:
        s.close()
    assert _row(lib, job_id).state == "completed"
    assert not claim(lib.db, job_id, "worker-c", 0.3)  # a finished job is never run again


def test_storage_outages_are_retried_for_a_time_budget_other_failures_a_number_of_times(job_lib):
    from mediaproxy.library.jobs import claim

    lib, new_job = job_lib
    transient, counted = new_job(), new_job()
    s = lib.db.session()
    try:
        for attempt in range(1, 6):
            for job_id, kind in ((transient, True), (counted, False)):
                if _row(lib, job_id).state == "failed":
                    continue
                assert claim(lib.db, job_id, "w", 0.3)
                state = lib.jobs.failed(s, job_id, "storage unavailable", final=False, transient=kind, owner="w")
                s.commit()  # what the job runner's unit of work does
                job = _row(lib, job_id)
                if kind:
                    assert state == "pending"  # well inside the 60 s budget
                    delay = (job.run_after - job.updated_at).total_seconds()
                    assert delay == pytest.approx(min(2 ** (attempt - 1), 3))  # doubling, capped
                    assert job.relayed_at is None  # the sweep hands it over when due
                else:
                    assert state == ("pending" if attempt <= 2 else "failed")
        # past the budget: failed for good
        with lib.db.transaction() as s2:
            from sqlalchemy import update

            from mediaproxy.library.models import Job, now
            s2.execute(update(Job).where(Job.id == transient).values(failing_since=now() - timedelta(seconds=61)))
        assert claim(lib.db, transient, "w", 0.3)
        assert lib.jobs.failed(s, transient, "storage unavailable", final=False, transient=True, owner="w") == "failed"
    finally:
        s.close()


def test_what_counts_as_storage_or_database_unavailable():
    from sqlalchemy.exc import IntegrityError, OperationalError

    from mediaproxy.errors import BadRequest, StorageUnavailable, UpstreamError, UpstreamTimeout
    from mediaproxy.library.jobs import NotYet, unavailable

    for exc in (StorageUnavailable(), UpstreamTimeout(), UpstreamError(), OperationalError("x", {}, Exception()),
                TimeoutError(), ConnectionRefusedError()):
        assert unavailable(exc), exc
    for exc in (BadRequest(), NotYet(), IntegrityError("x", {}, Exception()), ValueError(), KeyError("k")):
        assert not unavailable(exc), exc


def test_job_lease_settings():
    from mediaproxy.errors import ConfigError
    from mediaproxy.settings import LibrarySettings

    st = LibrarySettings.from_env({})
    assert (st.job_lease, st.job_heartbeat, st.job_retry_budget, st.job_test_delay) == (30.0, 5.0, 600.0, 0.0)
    assert LibrarySettings.from_env({"MEDIAPROXY_JOB_LEASE": "1.5"}).job_heartbeat == 0.5  # a third of a short lease
    with pytest.raises(ConfigError):
        LibrarySettings.from_env({"MEDIAPROXY_JOB_LEASE": "2", "MEDIAPROXY_JOB_HEARTBEAT": "1.5"})

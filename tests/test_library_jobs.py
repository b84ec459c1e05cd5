"""Jobs outlive workers: queued before a worker starts, or interrupted by one that died."""

from __future__ import annotations

import signal
import subprocess
import time

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
    # What a worker killed mid-job leaves behind: the task taken off the queue, the record "active".
    from huey import RedisHuey, SqliteHuey

    url = idle.env["MEDIAPROXY_QUEUE_URL"]
    h = (SqliteHuey(name="mediaproxy", filename=url.removeprefix("sqlite:///")) if url.startswith("sqlite")
         else RedisHuey(name="mediaproxy", url=url))
    assert h.pending_count() == 1
    h.flush()
    engine = create_engine(idle.env["MEDIAPROXY_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET state='active', attempts=1 WHERE id=:id"), {"id": job_id})
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
        assert "revision 0009" in out.stdout  # the head: the Content-Disposition kept with objects
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

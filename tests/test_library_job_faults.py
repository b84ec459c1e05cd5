"""Jobs under faults, against the real servers: a worker SIGKILLed mid-crop, a rolling restart of
workers, Redis stopped during uploads, PostgreSQL restarted during jobs, S3 frozen past a job's
retries, S3 frozen while a worker holds a job. A crop applies exactly once, leaves no object that
no record points at, and no job is stranded; an upload that answers success has its jobs run, and
none answers 500; a job's lease never waits on the store."""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from datetime import timedelta

import pytest
import pyvips
import requests

from . import media
from .conftest import LIBRARY_STACKS
from .library import Stack, Worker, library_env
from .server import AWS_ENV, MotoS3, Server

# leases short enough for a test, heartbeats well inside them
FAST_JOBS = {
    "MEDIAPROXY_JOB_LEASE": "3",
    "MEDIAPROXY_JOB_HEARTBEAT": "0.2",
    "MEDIAPROXY_JOB_RETRY_DELAY": "0.2",
    "MEDIAPROXY_UPLOAD_MAX_BYTES": str(20 * 1024**2),
}
BIG = (6000, 4000)  # a crop of it with its variants takes seconds: long enough to be interrupted


def _stack(request, tmp_path_factory, name: str, extra: dict | None = None, moto: MotoS3 | None = None,
           database: str | None = None, queue: str | None = None) -> Stack:
    backend, db_kind, queue_kind = LIBRARY_STACKS[name]
    workdir = tmp_path_factory.mktemp(f"faults-{name}")
    env = library_env(workdir, {**FAST_JOBS, **(extra or {})})
    if database is not None:
        env["MEDIAPROXY_DATABASE_URL"] = database
    elif db_kind == "postgres":
        env["MEDIAPROXY_DATABASE_URL"] = request.getfixturevalue("postgres").new_database()
    if queue is not None:
        env["MEDIAPROXY_QUEUE_URL"] = queue
    elif queue_kind == "redis":
        env["MEDIAPROXY_QUEUE_URL"] = request.getfixturevalue("redis_server").new_url()
    if backend == "s3" and moto is None:
        moto = request.getfixturevalue("moto")
    srv = Server(backend, workdir, moto, env=env, workers=1)
    try:
        return Stack(srv, workdir, worker=False)
    except BaseException:
        srv.stop()
        raise


@pytest.fixture
def stacks(request, tmp_path_factory):
    """Start stacks for one test; every server and worker is stopped after it."""
    made: list[tuple[Stack, list[Worker]]] = []

    def start(name: str, **kw) -> tuple[Stack, list[Worker]]:
        stack = _stack(request, tmp_path_factory, name, **kw)
        made.append((stack, []))
        return made[-1]

    yield start
    for stack, workers in made:
        for w in workers:
            w.stop(signal.SIGKILL)
        stack.server.stop()


def _worker(stack: Stack, workers: list[Worker]) -> Worker:
    w = Worker(stack.env, stack.workdir / "worker.log")
    workers.append(w)
    return w


def _job(stack: Stack, job_id: str) -> dict:
    r = stack.api("GET", f"/api/v1/media/job/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


def _upload_big(stack: Stack) -> dict:
    r = stack.upload(media.gradient(*BIG).webpsave_buffer(Q=90), "big.webp")
    assert r.status_code == 201, r.text
    return r.json()


def _crop_async(stack: Stack, media_id: str, **extra) -> str:
    r = stack.api("POST", "/api/v1/media/crop", json={"id": media_id, "x": 0, "y": 0, "width": BIG[0],
                                                      "height": BIG[1], "rotate": 90, "async": True, **extra})
    assert r.status_code == 202, r.text
    return r.json()["jobId"]


def _rotation(url: str) -> int:
    """How far the gradient was turned clockwise, from the colour of its top-left corner (R grows
    left→right and G top→bottom in the original)."""
    r = requests.get(url, timeout=30)
    assert r.status_code == 200
    im = pyvips.Image.new_from_buffer(r.content, "")
    red, green = im.getpoint(3, 3)[:2]
    return {(False, False): 0, (False, True): 90, (True, True): 180, (True, False): 270}[(red > 128, green > 128)]


def _orphans(stack: Stack, media_id: str) -> set[str]:
    """Objects stored under the media's prefix that its record does not point at."""
    m = stack.api("GET", f"/api/v1/media/{media_id}").json()
    wanted = {m["objectKey"], *(v["objectKey"] for v in m["variants"])}
    return set(stack.stored_keys(f"acme/{media_id}/")) - wanted


def _wait(cond, timeout: float, what: str, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("name", ["local", "s3-pg-redis"])
def test_a_worker_killed_mid_crop_then_restarted_rotates_once_and_leaves_no_orphan(stacks, name):
    stack, workers = stacks(name, extra={"MEDIAPROXY_JOB_TEST_DELAY": "2"})
    m = _upload_big(stack)
    before = set(stack.stored_keys(f"acme/{m['id']}/"))
    worker = _worker(stack, workers)
    job_id = _crop_async(stack, m["id"], regenerateVariants=True)
    # the crop has written its output but not finished: kill its worker there
    _wait(lambda: set(stack.stored_keys(f"acme/{m['id']}/")) - before, 30, "the crop's first object")
    assert _job(stack, job_id)["state"] == "active"
    worker.stop(signal.SIGKILL)
    _worker(stack, workers)
    job = stack.wait_job(job_id, timeout=60)
    assert job["state"] == "completed", job
    got = stack.api("GET", f"/api/v1/media/{m['id']}").json()
    assert (got["width"], got["height"]) == (BIG[1], BIG[0])
    assert _rotation(got["url"]) == 90  # once: not 180
    assert _orphans(stack, m["id"]) == set()
    # the same task handed over again (a duplicate, a lost ack) changes nothing
    stack_queue_again(stack, job_id)
    time.sleep(1.0)
    again = stack.api("GET", f"/api/v1/media/{m['id']}").json()
    assert again["objectKey"] == got["objectKey"] and again["updatedAt"] == got["updatedAt"]
    assert _job(stack, job_id)["attempts"] == job["attempts"]


def stack_queue_again(stack: Stack, job_id: str) -> None:
    from huey import RedisHuey, SqliteHuey

    url = stack.env["MEDIAPROXY_QUEUE_URL"]
    h = (SqliteHuey(name="mediaproxy", filename=url.removeprefix("sqlite:///")) if url.startswith("sqlite")
         else RedisHuey(name="mediaproxy", url=url))

    @h.task(name="mediaproxy.run_job")
    def run_job(job_id: str) -> None: ...

    run_job(job_id)


@pytest.mark.parametrize("name", ["local", "s3-pg-redis"])
def test_a_rolling_restart_of_workers_runs_a_long_crop_once(stacks, name):
    stack, workers = stacks(name, extra={"MEDIAPROXY_JOB_TEST_DELAY": "4"})
    m = _upload_big(stack)
    first = _worker(stack, workers)
    job_id = _crop_async(stack, m["id"], regenerateVariants=True)
    _wait(lambda: _job(stack, job_id)["state"] == "active", 30, "the crop to start")
    # while it runs: new workers start, an idle one is stopped, and another started
    _worker(stack, workers)
    idle = _worker(stack, workers)
    time.sleep(1.0)
    idle.stop(signal.SIGTERM)
    _worker(stack, workers)
    job = stack.wait_job(job_id, timeout=60)
    assert job["state"] == "completed" and job["attempts"] == 1, job
    assert first.proc.poll() is None
    got = stack.api("GET", f"/api/v1/media/{m['id']}").json()
    assert _rotation(got["url"]) == 90  # not 180 or 270
    assert _orphans(stack, m["id"]) == set()


def test_uploads_while_redis_is_stopped_succeed_and_their_jobs_run_once_it_is_back(stacks):
    from .services import Redis

    redis = Redis()  # this test's own: stopping it disturbs no other test
    try:
        stack, workers = stacks("local", queue=redis.new_url())
        _worker(stack, workers)
        assert stack.server.get("/_ready").text == "ready\n"
        redis.halt()
        ready = stack.server.get("/_ready")
        assert ready.status_code == 200 and ready.text.startswith("ready, degraded: queue: queue unreachable")
        jobs, ids = [], []
        for i in range(4):
            r = stack.upload(media.jpeg(200 + i, 150), generateVariants=True, **{"async": True})
            assert r.status_code == 202, r.text  # stored, and said so: not a 500
            jobs.append(r.json()["jobId"])
            ids.append(r.json()["media"]["id"])
        r = stack.api("POST", "/v2/images", files={"file": ("p.png", media.png(120, 80), "image/png")})
        assert r.status_code == 201, r.text
        v2_id = r.json()["id"]
        r = stack.api("POST", "/api/v1/media/variants", json={"id": ids[0]})
        assert r.status_code == 202, r.text
        jobs.append(r.json()["jobId"])
        time.sleep(1.0)
        assert all(_job(stack, j)["state"] == "pending" for j in jobs)
        redis.start()  # empty: the queue lost nothing it held, since it held none of these
        for j in jobs:
            assert stack.wait_job(j, timeout=30)["state"] == "completed"
        for media_id in ids:
            got = stack.api("GET", f"/api/v1/media/{media_id}").json()
            assert {v["name"] for v in got["variants"]} >= {"thumbnail", "small"} and got["blurHash"]
        assert stack.api("GET", f"/api/v1/media/{v2_id}").json()["blurHash"]  # its placeholders' job ran
        assert stack.server.get("/_ready").text == "ready\n"
    finally:
        redis.stop()


def test_jobs_interrupted_by_a_postgresql_restart_are_not_stranded(stacks):
    from .services import Postgres

    pg = Postgres()  # this test's own: stopping it disturbs no other test
    try:
        stack, workers = stacks("local", database=pg.new_database(), extra={"MEDIAPROXY_JOB_TEST_DELAY": "1"})
        ids = []
        for i in range(3):
            r = stack.upload(media.png(300 + i, 200), "g.png")
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        _worker(stack, workers)
        jobs = [stack.api("POST", "/api/v1/media/crop", json={"id": i, "x": 0, "y": 0, "width": 200, "height": 100,
                                                              "rotate": 90, "async": True}).json()["jobId"]
                for i in ids]
        _wait(lambda: _job(stack, jobs[0])["state"] == "active", 20, "a crop to start")
        pg.halt()
        # while it is away every library route answers 503 with Retry-After, not 500
        for method, path in (("GET", f"/api/v1/media/job/{jobs[0]}"), ("GET", f"/api/v1/media/{ids[0]}"),
                             ("GET", "/api/v1/media/list?limit=5"), ("POST", "/api/v1/media/crop")):
            r = stack.api(method, path, json={} if method == "POST" else None)
            assert r.status_code == 503 and r.headers["Retry-After"].isdigit(), (path, r.status_code, r.text)
            assert r.json() == {"error": "database unavailable"}
        assert stack.server.get("/_ready").status_code == 503
        time.sleep(2.5)  # past the crop's delay: its end cannot be recorded
        pg.start()
        for j in jobs:
            job = stack.wait_job(j, timeout=30)
            assert job["state"] == "completed", job
        for media_id in ids:
            got = stack.api("GET", f"/api/v1/media/{media_id}").json()
            assert (got["width"], got["height"]) == (100, 200)
            assert _orphans(stack, media_id) == set()
    finally:
        pg.stop()


def test_a_job_retries_past_a_storage_stall_longer_than_its_retry_count(stacks):
    moto = MotoS3()  # this test's own: freezing it disturbs no other test
    try:
        stack, workers = stacks("s3", moto=moto, extra={
            "MEDIAPROXY_JOB_RETRIES": "2", "MEDIAPROXY_JOB_RETRY_MAX_DELAY": "0.5",
            "MEDIAPROXY_JOB_RETRY_BUDGET": "60", "MEDIAPROXY_S3_READ_TIMEOUT": "1",
            "MEDIAPROXY_STORAGE_BREAKER_COOLDOWN": "0.5"})
        m = stack.upload(media.png(300, 200), "g.png").json()
        _worker(stack, workers)
        moto.proc.send_signal(signal.SIGSTOP)
        try:
            job_id = _crop_async_small(stack, m["id"])
            # more attempts than MEDIAPROXY_JOB_RETRIES (2) would allow, and not failed for good
            _wait(lambda: _job(stack, job_id)["attempts"] >= 4 or _job(stack, job_id)["state"] == "failed",
                  30, "retries during the stall", step=0.2)
            state = _job(stack, job_id)
            assert state["state"] in ("pending", "active"), state
            assert state["failedReason"]
        finally:
            moto.proc.send_signal(signal.SIGCONT)
        job = stack.wait_job(job_id, timeout=30)
        assert job["state"] == "completed", job
        got = stack.api("GET", f"/api/v1/media/{m['id']}").json()
        assert (got["width"], got["height"]) == (100, 200)
        # bad input still fails at once
        bad = stack.api("POST", "/api/v1/media/crop", json={"id": m["id"], "x": 500, "y": 0, "width": 10,
                                                            "height": 10, "async": True}).json()["jobId"]
        job = stack.wait_job(bad, timeout=30)
        assert job["state"] == "failed" and job["attempts"] == 1
    finally:
        moto.stop()


def _crop_async_small(stack: Stack, media_id: str) -> str:
    r = stack.api("POST", "/api/v1/media/crop", json={"id": media_id, "x": 0, "y": 0, "width": 200, "height": 100,
                                                      "rotate": 90, "async": True})
    assert r.status_code == 202, r.text
    return r.json()["jobId"]


def test_concurrent_synchronous_crops_each_apply_once_or_answer_409(stacks):
    """Two crops of one image at once: each that answers 200 turned it once (a crop that lost the
    compare-and-set answers 409 and removes what it wrote); never both from the same version."""
    from concurrent.futures import ThreadPoolExecutor

    stack, _ = stacks("local")
    m = _upload_big(stack)

    def crop(_):
        return stack.api("POST", "/api/v1/media/crop", json={"id": m["id"], "x": 0, "y": 0, "width": BIG[0],
                                                             "height": BIG[1], "rotate": 90}).status_code

    with ThreadPoolExecutor(2) as pool:
        codes = sorted(pool.map(crop, range(2)))
    # a second crop of the whole 6000x4000 image after the first has turned it is outside: 400
    assert codes in ([200, 409], [200, 400]), codes
    got = stack.api("GET", f"/api/v1/media/{m['id']}").json()
    assert (got["width"], got["height"]) == (BIG[1], BIG[0])
    assert _rotation(got["url"]) == 90
    assert _orphans(stack, m["id"]) == set()


def test_a_frozen_store_holds_back_the_sweep_of_arrivals_never_the_leases(tmp_path, monkeypatch):
    """A worker's keeper over S3 frozen (SIGSTOP), with S3 timeouts raised past the lease, as a
    deployment may: the sweep of arrived uploads waits on the store, the leases do not. The lease
    of a job the worker runs keeps moving ahead across heartbeats while the store hangs (were the
    sweep in the renewals' thread, the lease would run out and another worker would run the job
    again); once the store answers, the sweep queues the completion of an upload that arrived, once."""
    from sqlalchemy import select

    from mediaproxy.context import Context
    from mediaproxy.library import auth
    from mediaproxy.library.db import Database
    from mediaproxy.library.jobs import Keeper, claim
    from mediaproxy.library.models import Job
    from mediaproxy.library.services import Library
    from mediaproxy.library.services.base import incoming_key
    from mediaproxy.settings import Settings

    class Recorded:  # the queue: what was handed to it, in order
        def __init__(self):
            self.ids: list[str] = []

        def enqueue(self, job_id: str) -> None:
            self.ids.append(job_id)

        def queued_ids(self) -> set[str]:
            return set(self.ids)

    with contextlib.ExitStack() as cleanup:  # every step runs, even after one that fails
        moto = MotoS3()  # this test's own: freezing it disturbs no other test
        cleanup.callback(moto.stop)
        for k, v in {**AWS_ENV, "AWS_ENDPOINT_URL": moto.endpoint}.items():
            monkeypatch.setenv(k, v)
        settings = Settings.from_env({
            "MEDIAPROXY_MODE": "library", "MEDIAPROXY_STORAGE": "s3", "MEDIAPROXY_S3_ADDRESSING_STYLE": "path",
            "MEDIAPROXY_S3_READ_TIMEOUT": "120",  # a listing that hangs holds its sweep far past the lease
            "MEDIAPROXY_CACHE_DIR": str(tmp_path / "cache"), "MEDIAPROXY_SECRET_KEY": "s" * 40,
            "MEDIAPROXY_DATABASE_URL": f"sqlite:///{tmp_path}/lib.db",
            "MEDIAPROXY_QUEUE_URL": f"sqlite:///{tmp_path}/queue.db",
            # a lease thirty heartbeats long: a keeper starved for a second on a loaded machine keeps it
            "MEDIAPROXY_JOB_LEASE": "3", "MEDIAPROXY_JOB_HEARTBEAT": "0.1"})
        db = Database(settings.library.database_url)
        cleanup.callback(db.dispose)
        db.upgrade()
        queue = Recorded()
        lib = Library(Context.build(settings), db, queue.enqueue)
        keeper = Keeper(db, queue, settings.library, lib.ingest)
        cleanup.callback(keeper.stop, timeout=10)
        cleanup.callback(moto.proc.send_signal, signal.SIGCONT)  # first: a frozen store holds the sweep
        listings: list[list[str]] = []  # what each of the sweep's listings of incoming/ found
        list_incoming = lib.ingest.arrived_keys

        def arrived_keys() -> list[str]:
            listings.append(list_incoming())
            return listings[-1]

        monkeypatch.setattr(lib.ingest, "arrived_keys", arrived_keys)

        def row(job_id: str) -> Job:
            with db.transaction() as s:
                job = s.get(Job, job_id)
                s.expunge(job)
                return job

        def jobs_of(media_id: str) -> list[str]:
            with db.transaction() as s:
                return list(s.scalars(select(Job.id).where(Job.media_id == media_id)))

        with db.transaction() as s:
            org = auth.organization(s, "acme", create=True)
            held = Job(id=uuid.uuid4().hex, org_id=org.id, kind="finalize", params="{}", state="pending")
            s.add(held)
            record, signed = lib.ingest.presign_upload(s, org, "http://x", "a.png", "image/png", None)
            held_id, media_id, key = held.id, record.id, signed["objectKey"]
        assert claim(db, held_id, keeper.owner, settings.library.job_lease)
        keeper.hold(held_id)  # a job this worker runs
        keeper.start()
        _wait(lambda: listings, 30, "a first sweep of arrivals")
        moto.proc.send_signal(signal.SIGSTOP)
        try:
            frozen_at = row(held_id).lease_until
            leases = set()

            def renewed_past_its_lease() -> bool:
                job = row(held_id)
                assert (job.state, job.lease_owner) == ("active", keeper.owner), "the held job's lease ran out"
                leases.add(job.lease_until)
                past = frozen_at + timedelta(seconds=2 * settings.library.job_lease)
                return len(leases) >= 5 and job.lease_until > past

            _wait(renewed_past_its_lease, 30, "renewals of the held job's lease while the store is frozen", step=0.05)
            assert keeper.sweep_arrivals() is None  # the sweep waiting on the store holds it: none overlaps
        finally:
            moto.proc.send_signal(signal.SIGCONT)
        # what a PUT straight to S3 leaves
        moto.client.put_object(Bucket=lib.bucket, Key=incoming_key(key), Body=media.png(64, 48),
                               ContentType="image/png")
        (job_id,) = _wait(lambda: jobs_of(media_id), 60, "the sweep to queue the arrived upload's completion")
        swept = len(listings)
        _wait(lambda: len(listings) >= swept + 3, 30, "three more sweeps")
        assert jobs_of(media_id) == [job_id] and queue.ids.count(job_id) == 1
        assert row(job_id).kind == "finalize"
        assert row(held_id).state == "active"  # held all along

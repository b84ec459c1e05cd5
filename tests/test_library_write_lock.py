"""A rendering holds no write lock: a synchronous upload's over real gunicorn on SQLite; in
process, a crop and a job that complete a presigned upload before they render.

On SQLite the first write of a transaction takes the database's one write lock until the
transaction ends, and the library runs one transaction per request. A synchronous ``/api/v1``
upload with ``generateVariants`` therefore renders its variants and placeholders before it writes
its record: another client's write (a PATCH, a small upload) goes on while the variants render,
instead of waiting for them and for the commit behind them."""

from __future__ import annotations

import threading

import pytest
import pyvips

from mediaproxy.context import Context
from mediaproxy.library import auth, unit
from mediaproxy.library import jobs as queue_jobs
from mediaproxy.library.db import Database
from mediaproxy.library.repositories import media as media_repo
from mediaproxy.library.services import Library
from mediaproxy.library.services.base import incoming_key
from mediaproxy.settings import Settings

from . import media
from .conftest import start_library
from .server import eventually

FULL_SIZE = 8  # variants, each the whole image re-encoded: a rendering of several seconds


@pytest.fixture(scope="module")
def slow_variants(request, make_server, tmp_path_factory):
    """The local backend on SQLite, whose variants are all full size (slow to render)."""
    stack = start_library(request, make_server, tmp_path_factory, "local", {
        "MEDIAPROXY_VARIANTS": ",".join(f"full{i}=0" for i in range(FULL_SIZE)),
        "MEDIAPROXY_UPLOAD_MAX_BYTES": str(16 * 1024**2),
    }, worker=False)
    yield stack
    stack.stop()


def noise_jpeg(side: int) -> bytes:
    """Noise compresses badly: each full-size WebP of it is a long encode."""
    band = pyvips.Image.gaussnoise(side, side, mean=128, sigma=60).cast("uchar")
    return band.bandjoin([band.rot180(), band.fliphor()]).copy(interpretation="srgb").jpegsave_buffer(Q=80)


def test_a_write_goes_on_while_a_synchronous_upload_renders(slow_variants):
    lib = slow_variants
    other = lib.upload(media.png(64, 48), "other.png")
    assert other.status_code == 201, other.text
    answered: list[str] = []  # in the order the answers arrived
    slow: dict = {}

    def upload_slowly() -> None:
        slow["answer"] = lib.upload(noise_jpeg(1600), "noise.jpg", generateVariants=True)
        answered.append("slow upload")

    thread = threading.Thread(target=upload_slowly)
    thread.start()
    try:
        # its first variant is stored: the rendering is under way, FULL_SIZE - 1 more to go
        eventually(lambda: any(k.endswith("/full0.webp") for k in lib.stored_keys("acme/")), timeout=120)
        patched = lib.api("PATCH", f"/api/v1/media/{other.json()['id']}", json={"alt": "changed meanwhile"})
        answered.append("patch")
        small = lib.upload(media.png(64, 48), "small.png")
        answered.append("small upload")
    finally:
        thread.join(180)
    assert patched.status_code == 200 and patched.json()["alt"] == "changed meanwhile", patched.text
    assert small.status_code == 201, small.text
    assert slow["answer"].status_code == 201, slow["answer"].text
    assert len(slow["answer"].json()["variants"]) == FULL_SIZE
    # neither write waited for the rendering (and the commit after it)
    assert answered == ["patch", "small upload", "slow upload"]


# -- in process: the rarer paths that complete a presigned upload before they render ---------------
# A probe in the rendering (the placeholders, which every one of these paths computes) asks SQLite
# for its write lock without waiting: it gets it only if the rendering request or job holds none.


@pytest.fixture
def lock_probe(monkeypatch):
    """Where the rendering found the database's write lock: a list, one entry per placeholder
    rendering ("free" or "held"), and the function that arms it on a database file."""
    import sqlite3

    from mediaproxy.library.services.versions import Versions

    seen: list[str] = []
    db_file: list[str] = []
    placeholder_hashes = Versions.placeholder_hashes

    def probed(self, *args):
        if db_file:
            conn = sqlite3.connect(db_file[0], timeout=0, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")  # the write lock, at once or not at all
                conn.execute("ROLLBACK")
                seen.append("free")
            except sqlite3.OperationalError:
                seen.append("held")
            finally:
                conn.close()
        return placeholder_hashes(self, *args)

    monkeypatch.setattr(Versions, "placeholder_hashes", probed)
    return seen, db_file.append


def library_settings(tmp_path, mode: str = "library") -> Settings:
    (tmp_path / "store" / "library").mkdir(parents=True, exist_ok=True)
    return Settings.from_env({
        "MEDIAPROXY_MODE": mode,
        "MEDIAPROXY_STORAGE": str(tmp_path / "store"),
        "MEDIAPROXY_CACHE_DIR": str(tmp_path / "cache"),
        "MEDIAPROXY_SECRET_KEY": "write-lock-tests",
        "MEDIAPROXY_DATABASE_URL": f"sqlite:///{tmp_path}/library.db",
        "MEDIAPROXY_QUEUE_URL": f"sqlite:///{tmp_path}/queue.db",
    })


def arrived(lib, org, filename: str = "a.png") -> tuple[str, str]:
    """A presigned upload whose bytes a PUT straight to the store left under its incoming key,
    not completed yet: (its id, its key)."""
    with lib.db.transaction() as s:
        record, signed = lib.ingest.presign_upload(s, s.merge(org), "http://x", filename, "image/png", None)
        media_id, key = record.id, signed["objectKey"]
    lib.ctx.storage.put(lib.bucket, incoming_key(key), media.png(200, 150), "image/png")
    return media_id, key


@pytest.mark.parametrize("kind", ["finalize", "variants"])
def test_a_job_that_completes_an_upload_renders_before_it_writes(tmp_path, lock_probe, kind):
    seen, arm = lock_probe
    settings = library_settings(tmp_path)
    db = Database(settings.library.database_url)
    db.upgrade()
    try:
        lib = Library(Context.build(settings), db, None)
        with db.transaction() as s:
            org = auth.organization(s, "acme", create=True)
        media_id, _ = arrived(lib, org)
        with db.transaction() as s:
            job_id = lib.jobs.enqueue(s, s.merge(org), kind, media_repo.load(s, media_id), {}).id
        assert queue_jobs.claim(db, job_id, "worker", 30.0)
        arm(str(tmp_path / "library.db"))
        s = db.session()
        try:
            lib.jobs.run(s, job_id, "worker")
            unit.commit(s)
            assert media_repo.load(s, media_id).state == "ready"
        finally:
            s.close()
        assert seen == ["free"]
    finally:
        db.dispose()


def test_a_crop_that_completes_an_upload_renders_before_it_writes(tmp_path, lock_probe):
    """A synchronous crop of a presigned upload the store has received and nobody has completed:
    the request completes it, and records that only after its crop has rendered."""
    import falcon.testing

    from mediaproxy.app import create_falcon_app

    seen, arm = lock_probe
    settings = library_settings(tmp_path)
    client = falcon.testing.TestClient(create_falcon_app(settings, Context.build(settings)))
    db = Database(settings.library.database_url)
    try:
        lib = Library(Context.build(settings), db, None)
        with db.transaction() as s:
            key = auth.create_key(s, "acme")
            org = auth.organization(s, "acme")
        media_id, _ = arrived(lib, org)
        arm(str(tmp_path / "library.db"))
        r = client.simulate_post("/api/v1/media/crop", headers={"X-API-Key": key},
                                 json={"id": media_id, "x": 10, "y": 10, "width": 100, "height": 80})
        assert r.status_code == 200, r.text
        assert (r.json["status"], r.json["width"], r.json["height"]) == ("ready", 100, 80)
        assert seen == ["free"]
    finally:
        db.dispose()

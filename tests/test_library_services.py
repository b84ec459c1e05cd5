"""The library's verbs in process, against SQLite and PostgreSQL and the local store: no HTTP.

What the HTTP tests cannot see cheaply: a record and what goes with it are one transaction,
batch checks and statistics cost a fixed number of queries, an API key's organization comes
with the key, and the crop decodes through the pipeline's strict loader."""

from __future__ import annotations

import contextlib

import pytest
from sqlalchemy import event, func, select

from mediaproxy.context import Context
from mediaproxy.errors import BadRequest, NotFound
from mediaproxy.library import auth, unit
from mediaproxy.library.db import Database
from mediaproxy.library.models import Job, Media, MediaTag, StoredObject
from mediaproxy.library.repositories import clients, stats
from mediaproxy.library.repositories import media as media_repo
from mediaproxy.library.services import Library
from mediaproxy.media import pipeline
from mediaproxy.media.edit import Edit, edit_image
from mediaproxy.settings import Settings

from . import media as samples


@pytest.fixture(params=["sqlite", "postgres"])
def lib(request, tmp_path):
    """The services over SQLite, and over PostgreSQL (a server of the test session's, a database
    of each test's own)."""
    url = (f"sqlite:///{tmp_path}/library.db" if request.param == "sqlite"
           else request.getfixturevalue("postgres").new_database())
    settings = Settings.from_env({
        "MEDIAPROXY_MODE": "library",
        "MEDIAPROXY_STORAGE": str(tmp_path / "store"),
        "MEDIAPROXY_CACHE_DIR": str(tmp_path / "cache"),
        "MEDIAPROXY_SECRET_KEY": "service-tests",
        "MEDIAPROXY_DATABASE_URL": url,
        "MEDIAPROXY_QUEUE_URL": f"sqlite:///{tmp_path}/queue.db",
    })
    (tmp_path / "store" / "library").mkdir(parents=True)
    db = Database(settings.library.database_url)
    db.upgrade()
    queued: list[str] = []
    library = Library(Context.build(settings), db, queued.append)
    library.queued = queued
    yield library
    db.dispose()


@contextlib.contextmanager
def counted(db: Database):
    """The statements run inside the block."""
    seen: list[str] = []

    def count(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def png(width=64, height=48) -> bytes:
    return samples.bands(width, height, [(200, 30, 60), (20, 120, 220)]).pngsave_buffer()


def stored(lib: Library, s, org, data: bytes, name: str = "a.png"):
    up = lib.ingest.begin_upload(org, name)
    for i in range(0, len(data), 1000):
        up.write(data[i:i + 1000])
    return up, *up.finish()


def a_stored_png(lib: Library):
    """A session of its own, and a PNG stored for the organization "acme" (made first): no record yet."""
    with lib.db.transaction() as s:
        org = auth.organization(s, "acme", create=True)
    s = lib.db.session()
    up, obj, _ = stored(lib, s, s.merge(org), png())
    return s, up, obj


def test_a_record_and_what_goes_with_it_are_one_transaction(lib):
    s, up, obj = a_stored_png(lib)

    def with_record(media):
        s.add(MediaTag(media_id=media.id, tag="first"))
        s.flush()
        raise BadRequest("the album is gone")  # what a failing tag or album step does

    with pytest.raises(BadRequest):
        lib.ingest.create_media(s, up, obj, dialect="v2", job="finalize", with_record=with_record)
    unit.rollback(s)  # what the request's unit of work does with a failure
    s.close()
    with lib.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Media)) == 0
        assert s.scalar(select(func.count()).select_from(MediaTag)) == 0
        assert s.scalar(select(func.count()).select_from(Job)) == 0
        assert s.scalar(select(func.count()).select_from(StoredObject)) == 0
    with pytest.raises(NotFound):
        lib.ctx.storage.head(lib.bucket, up.key)  # the bytes no record points at went too
    assert lib.queued == []  # no job was handed to the queue


def test_a_record_with_its_tags_in_one_commit(lib):
    s, up, obj = a_stored_png(lib)
    media = lib.ingest.create_media(s, up, obj, dialect="v2", job="finalize",
                                    with_record=lambda m: lib.catalog.set_tags(s, m.id, ["a", "b"]))
    assert lib.queued == []  # nothing is relayed before the commit
    unit.commit(s)
    s.close()
    with lib.db.transaction() as s:
        assert lib.catalog.tags_of(s, [media.id]) == {media.id: ["a", "b"]}
    assert lib.queued == [up.job.id]  # relayed after the commit


def test_adding_images_to_an_album_checks_them_in_one_query(lib):
    with lib.db.transaction() as s:
        org = auth.organization(s, "acme", create=True)
        ids = []
        for i in range(30):
            m = Media(id=f"{i:032x}", org_id=org.id, owner="alice", dialect="v2", state="ready",
                      filename=f"{i}.png", mime_type="image/png", size=1, is_private=i == 29)
            s.add(m)
            ids.append(m.id)
        s.flush()
        album = lib.albums.create(s, org, "bob", {"name": "x"})
        with counted(lib.db) as seen:
            lib.albums.check_addable(s, album, ids[:29])
        assert len(seen) == 1
        with pytest.raises(NotFound, match=f"no such image: {ids[29]}"):
            lib.albums.check_addable(s, album, ids)  # alice's private image, bob's album
        with pytest.raises(NotFound, match="no such media"):
            lib.albums.check_addable(s, album, ["f" * 32])


def test_statistics_of_every_client_cost_three_queries(lib):
    with lib.db.transaction() as s:
        orgs = [auth.organization(s, f"org-{i}", create=True) for i in range(12)]
        for n, org in enumerate(orgs):
            for i in range(n % 3):
                s.add(Media(id=f"{n:016x}{i:016x}", org_id=org.id, dialect=("v1", "media", "v2")[i], state="ready",
                            filename="f", mime_type="image/png", size=10 * (i + 1), is_private=i == 1, owner="u"))
        s.flush()
        ids = [o.id for o in clients.every_client(s)]
        with counted(lib.db) as seen:
            every = lib.admin.stats_of(s, ids)
        assert len(seen) == 3
        for org_id in ids:  # the same figures as one client's own statistics
            assert every[org_id] == lib.admin.stats(s, org_id)
        assert every[orgs[2].id]["images"] == 2 and every[orgs[2].id]["privateImages"] == 1
        assert every[orgs[2].id]["byApi"]["media"] == {"images": 1, "privateImages": 1, "bytes": 20}
        assert list(every[orgs[0].id]["byApi"]) == list(stats.STATS_APIS)


def test_an_api_key_brings_its_organization_in_one_query(lib):
    with lib.db.transaction() as s:
        key = auth.create_key(s, "acme")
    s = lib.db.session()
    try:
        with counted(lib.db) as seen:
            org = auth.authenticate(s, key)
            assert org.slug == "acme"
        assert len(seen) == 1
    finally:
        s.close()


def test_the_crop_decodes_through_the_strict_loader():
    whole = samples.bands(400, 300, [(200, 30, 60), (20, 120, 220)]).jpegsave_buffer(Q=90)
    limits = pipeline.Limits(10**8, 1000, 10**9)
    out = edit_image(whole, Edit(x=10, y=10, width=100, height=50, format="png"), limits, contextlib.nullcontext)
    assert (out.width, out.height, out.format) == (100, 50, "png")
    cut = whole[: len(whole) * 2 // 3]  # a truncated JPEG: a half-grey crop before, refused now
    with pytest.raises(BadRequest):
        edit_image(cut, Edit(x=0, y=200, width=400, height=100), limits, contextlib.nullcontext)


def test_the_edit_parameters_of_a_request():
    e = Edit.of({"x": 1, "y": 2, "width": 3, "height": 4, "rotate": None, "scale": None, "format": "jpg"})
    assert e == Edit(1, 2, 3, 4, 0, 1.0, None, "jpg")


@pytest.fixture
def recorded(lib):
    """A session in which a PNG of organization acme is stored and its record committed:
    (session, organization, upload, media)."""
    with lib.db.transaction() as s:
        org = auth.organization(s, "acme", create=True)
    s = lib.db.session()
    try:
        org = s.merge(org)
        up, obj, _ = stored(lib, s, org, png())
        media = lib.ingest.create_media(s, up, obj)
        unit.commit(s)
        yield s, org, up, media
    finally:
        s.close()


def test_a_delete_removes_the_bytes_only_once_it_commits(lib, recorded):
    s, _, up, media = recorded
    media_id = media.id
    try:
        lib.versions.delete(s, media_repo.load(s, media_id))
        lib.ctx.storage.head(lib.bucket, up.key)  # still there: nothing has committed
        unit.rollback(s)  # the request failed: the record stays, and so do its bytes
        s.close()
        s = lib.db.session()  # the next request
        assert media_repo.load(s, media_id) is not None
        lib.ctx.storage.head(lib.bucket, up.key)
        assert lib.versions.delete(s, media_repo.load(s, media_id)) == 1
        unit.commit(s)
        with pytest.raises(NotFound):
            lib.ctx.storage.head(lib.bucket, up.key)
    finally:
        s.close()


def test_a_job_reaches_the_queue_only_once_its_row_is_committed(lib, recorded):
    s, org, _, media = recorded
    job = lib.jobs.enqueue(s, org, "variants", media, {})
    assert lib.queued == []
    unit.rollback(s)
    assert lib.queued == [] and s.get(Job, job.id) is None  # rolled back: never queued
    job = lib.jobs.enqueue(s, org, "variants", media_repo.load(s, media.id), {})
    job_id = job.id
    unit.commit(s)
    assert lib.queued == [job_id]


def _waiting_upload(lib, data: bytes):
    """A presigned upload's record, committed, whose bytes a PUT has left in the store."""
    with lib.db.transaction() as s:
        org = auth.organization(s, "acme", create=True)
        media, signed = lib.ingest.presign_upload(s, org, "http://x", "a.png", "image/png", None)
        media_id, key = media.id, signed["objectKey"]
    lib.ctx.storage.put(lib.bucket, key, data, "image/png")  # the local backend's PUT writes the key
    return org, media_id


def _state(lib, media_id: str) -> str:
    with lib.db.transaction() as s:
        return media_repo.load(s, media_id).state


def test_a_read_has_no_side_effects(lib):
    org, media_id = _waiting_upload(lib, png())
    s = lib.db.session()
    try:
        org = s.merge(org)
        with counted(lib.db) as seen:
            media = lib.catalog.get(s, org, media_id)
        assert media.state == "uploading"
        assert not [q for q in seen if not q.lstrip().upper().startswith("SELECT")], seen
        assert lib.ingest.notice(s, org, media)  # the explicit completion: a write, in the request's unit
        assert lib.queued == []
        unit.commit(s)
        assert _state(lib, media_id) == "ready" and len(lib.queued) == 1  # its placeholders, after the commit
    finally:
        s.close()


def test_the_sweep_queues_one_completion_per_arrived_upload(lib):
    """A PUT straight to the store tells the server nothing: the workers' sweep lists the incoming
    keys and queues one job per arrived upload (of two sweeps that saw it at once, one: a
    compare-and-set on the record), which completes it with its placeholders and hash."""
    import hashlib
    from datetime import timedelta

    from mediaproxy.library import jobs as queue_jobs
    from mediaproxy.library.models import now
    from mediaproxy.library.repositories import objects
    from mediaproxy.library.services.base import incoming_key

    data = png()
    with lib.db.transaction() as s:
        org = auth.organization(s, "acme", create=True)
        media, signed = lib.ingest.presign_upload(s, org, "http://x", "a.png", "image/png", None)
        media_id, key = media.id, signed["objectKey"]
    assert lib.ingest.arrived_keys() == []
    lib.ctx.storage.put(lib.bucket, incoming_key(key), data, "image/png")  # what a PUT to S3 leaves
    assert lib.ingest.arrived_keys() == [key]
    late = lib.db.session()  # a second sweep, which saw the arrival before the first queued its job
    try:
        stale = now() - timedelta(seconds=lib.ingest.upload_claim_lease)
        (seen,) = objects.waiting_arrivals(late, lib.bucket, [key], stale)
        assert seen[0] == media_id
        with lib.db.transaction() as s:
            (job,) = lib.ingest.take_arrivals(s, [key])
            job_id = job.id
        assert lib.queued == [job_id]  # relayed once committed
        assert not objects.mark_arrival(late, seen[0], seen[2], seen[3], now())
        unit.rollback(late)
    finally:
        late.close()
    with lib.db.transaction() as s:
        assert lib.ingest.take_arrivals(s, [key]) == []  # its job waits for it: none more
        assert s.scalar(select(func.count()).select_from(Job).where(Job.media_id == media_id)) == 1
        assert media_repo.load(s, media_id).state == "uploading"
    assert queue_jobs.claim(lib.db, job_id, "worker", 30.0)
    s = lib.db.session()
    try:
        lib.jobs.run(s, job_id, "worker")
        unit.commit(s)
        media = media_repo.load(s, media_id)
        assert (media.state, media.width, media.height) == ("ready", 64, 48)
        assert media.blur_hash and media.current.object.sha256 == hashlib.sha256(data).hexdigest()
        assert s.get(Job, job_id).state == "completed"
    finally:
        s.close()
    assert lib.ingest.arrived_keys() == []  # moved under the record's key, which the client cannot write
    assert lib.ctx.storage.get(lib.bucket, key)[1] == data


def test_an_upload_taken_by_a_request_that_fails_is_completed_by_a_job(lib):
    """A request that checks an upload (a crop by id) moves its bytes under the record's key, where
    the workers' sweep does not look; if it then fails, a job is queued to complete the upload."""
    _, media_id = _waiting_upload(lib, png())
    s = lib.db.session()
    try:
        assert lib.ingest.check_upload(s, media_repo.load(s, media_id)) is not None
        assert lib.queued == []
        unit.rollback(s)  # e.g. the crop's rectangle lay outside the image: 400
    finally:
        s.close()
    with lib.db.transaction() as s:
        assert media_repo.load(s, media_id).state == "uploading"
        jobs = list(s.scalars(select(Job).where(Job.media_id == media_id)))
        assert [(j.kind, j.state) for j in jobs] == [("finalize", "pending")] and lib.queued == [jobs[0].id]


def test_an_upload_claim_is_seen_at_once_and_given_back_when_its_request_fails(lib):
    _, media_id = _waiting_upload(lib, png())
    s, other = lib.db.session(), lib.db.session()
    try:
        media = media_repo.load(s, media_id)
        assert lib.ingest.claim_upload(s, media)
        # committed on its own, before this request goes on: a second request cannot take it
        assert _state(lib, media_id) == "receiving"
        assert not lib.ingest.claim_upload(other, media_repo.load(other, media_id))
        unit.rollback(other)
        unit.rollback(s)  # this request failed: the upload is given back for a retry
        assert _state(lib, media_id) == "uploading"
        assert lib.ingest.complete_upload(other, media_repo.load(other, media_id)) is True  # claims it itself
        unit.commit(other)
        assert _state(lib, media_id) == "ready"
    finally:
        s.close()
        other.close()


def test_a_rendering_that_fails_leaves_a_concurrent_rendering_s_variants(lib):
    """Two renderings of one version's variants at once (a variants job whose lease lapsed and its
    retry, two regenerate jobs): both store the same keys ({folder}/{name}.webp). The first stores
    and flushes, then fails (its lease lost, its commit failed); its after-rollback step deletes the
    keys no committed row names yet: the second's bytes, which it then commits rows for."""
    import threading

    with lib.db.transaction() as s:
        org = auth.organization(s, "acme", create=True)
    s = lib.db.session()
    up, obj, _ = stored(lib, s, s.merge(org), png())
    media_id = lib.ingest.create_media(s, up, obj).id
    unit.commit(s)
    s.close()
    stored_b, go, errors = threading.Event(), threading.Event(), []
    placeholder_hashes = lib.versions.placeholder_hashes

    def after_storing(*args):  # called once the rendering has stored its variants, before it flushes
        if threading.current_thread().name == "second":
            stored_b.set()
        return placeholder_hashes(*args)

    lib.versions.placeholder_hashes = after_storing

    def second():
        sb = lib.db.session()
        try:
            lib.versions.render_variants(sb, media_repo.load(sb, media_id))  # waits at its flush
            go.wait(60)
            unit.commit(sb)
        except Exception as exc:
            errors.append(exc)
            unit.rollback(sb)
        finally:
            sb.close()

    sa = lib.db.session()
    lib.versions.render_variants(sa, media_repo.load(sa, media_id))  # the first: stored and flushed
    t = threading.Thread(target=second, name="second")
    t.start()
    assert stored_b.wait(60)
    unit.rollback(sa)  # the first fails
    sa.close()
    go.set()
    t.join(60)
    assert not errors
    s = lib.db.session()
    try:
        variants = media_repo.load(s, media_id).current.variants
        assert variants
        for v in variants:  # every committed variant row names bytes that exist
            lib.ctx.storage.head(v.bucket, v.key)
    finally:
        s.close()


def test_the_sweep_reaches_every_arrival_past_keys_it_cannot_complete(lib):
    """What lies under incoming/ without a waiting record (a second PUT to a completed upload's URL
    that is still valid, the bytes of a deleted record: the janitor's, days later) must not hide the
    arrivals after it: a sweep takes a batch at a time, each beat the batch after the last, so an
    upload behind any number of such keys is reached."""
    from mediaproxy.library.services.base import incoming_key

    with lib.db.transaction() as s:
        org = auth.organization(s, "acme", create=True)
        _, signed = lib.ingest.presign_upload(s, org, "http://x", "a.png", "image/png", None)
        key = signed["objectKey"]
    for i in range(3):  # stray PUTs, listed before the waiting upload
        lib.ctx.storage.put(lib.bucket, incoming_key(f"0stray{i}"), b"x", "image/png")
    lib.ctx.storage.put(lib.bucket, incoming_key(key), png(), "image/png")
    seen = set()
    for _ in range(3):  # three beats of two keys each reach all four
        seen.update(lib.ingest.arrived_keys(limit=2))
    assert key in seen


def test_the_sweep_completes_an_upload_whose_checker_died_holding_it(lib):
    """A request that claimed a waiting upload (a crop by id, POST /variants, the local backend's
    PUT) and died before its transaction ended (a worker killed past its timeout, out of memory)
    leaves the record ``receiving`` with its bytes under the record's own key, where no listing of
    incoming/ finds them and no rollback queues a job: the sweep takes the dead claim back once
    its lease is over and queues the one job that completes the upload."""
    from datetime import timedelta

    from mediaproxy.library.jobs import Keeper
    from mediaproxy.library.models import now
    from mediaproxy.library.repositories import objects

    _, media_id = _waiting_upload(lib, png())
    lease = lib.ingest.upload_claim_lease
    with lib.db.transaction() as s:  # the dead request's claim, taken before the lease
        claimed = now() - timedelta(seconds=lease + 5)
        assert objects.claim_upload(s, media_id, claimed, claimed - timedelta(seconds=lease))
    keeper = Keeper(lib.db, None, lib.settings, lib.ingest)
    assert keeper.take_arrivals() == 1
    with lib.db.transaction() as s:
        jobs = s.scalars(select(Job).where(Job.media_id == media_id)).all()
        assert [j.kind for j in jobs] == ["finalize"]
        assert media_repo.load(s, media_id).state == "uploading"
    assert keeper.take_arrivals() == 0  # its job waits for it: none more


def test_the_sweep_of_arrivals_never_waits_on_the_store_inside_its_transaction(lib, monkeypatch):
    """The sweep gives back a dead claim and queues its completion in a transaction that never waits
    on the store: asked inside it, after its first write, a store that hangs would hold that
    transaction open, and with it SQLite's write lock (the whole database's), so the renewal of a
    running job's lease on the keeper's other thread would wait for the store too, then fail."""
    import threading
    import uuid
    from datetime import timedelta

    from mediaproxy.library.jobs import Keeper, claim
    from mediaproxy.library.models import now
    from mediaproxy.library.repositories import objects

    org, media_id = _waiting_upload(lib, png())
    lease = lib.ingest.upload_claim_lease
    with lib.db.transaction() as s:  # a request that died holding its claim
        claimed = now() - timedelta(seconds=lease + 5)
        assert objects.claim_upload(s, media_id, claimed, claimed - timedelta(seconds=lease))
        held = Job(id=uuid.uuid4().hex, org_id=org.id, kind="crop", params="{}", state="pending")
        s.add(held)
        held_id = held.id
    keeper = Keeper(lib.db, None, lib.settings, lib.ingest)
    assert claim(lib.db, held_id, keeper.owner, lib.settings.job_lease)
    keeper.hold(held_id)  # a job this worker runs
    asked, answer = threading.Event(), threading.Event()
    head = lib.ctx.storage.head

    def hanging_head(bucket: str, key: str):
        asked.set()
        answer.wait(120)
        return head(bucket, key)

    monkeypatch.setattr(lib.ctx.storage, "head", hanging_head)
    swept: list[int] = []
    sweep = threading.Thread(target=lambda: swept.append(keeper.take_arrivals()))
    sweep.start()
    try:
        assert asked.wait(60), "the sweep never asked the store whether the dead claim's bytes arrived"
        assert keeper.renew() == 1  # while the sweep waits on the store
    finally:
        answer.set()
        sweep.join(60)
    assert swept == [1]
    with lib.db.transaction() as s:
        assert [j.kind for j in s.scalars(select(Job).where(Job.media_id == media_id))] == ["finalize"]
        assert media_repo.load(s, media_id).state == "uploading"


def test_a_sweep_whose_unit_of_work_failed_takes_the_same_batch_again(lib, monkeypatch):
    """The sweep lists incoming/ a batch at a time, each after the last; when the unit of work that
    takes a batch fails (the database gone for a beat), the next sweep lists that batch again
    instead of the one after it, so its uploads do not wait for the listing to come round."""
    from mediaproxy.library.jobs import Keeper
    from mediaproxy.library.services.base import incoming_key

    keys = []
    with lib.db.transaction() as s:
        org = auth.organization(s, "acme", create=True)
        for i in range(4):
            _, signed = lib.ingest.presign_upload(s, org, "http://x", f"{i}.png", "image/png", None)
            keys.append(signed["objectKey"])
    for key in keys:
        lib.ctx.storage.put(lib.bucket, incoming_key(key), png(), "image/png")
    listed = lib.ingest.arrived_keys
    monkeypatch.setattr(lib.ingest, "arrived_keys", lambda: listed(limit=2))
    keeper = Keeper(lib.db, None, lib.settings, lib.ingest)
    dead_claims = lib.ingest.dead_claims

    def database_gone(s):
        raise OSError("the database went away")

    monkeypatch.setattr(lib.ingest, "dead_claims", database_gone)
    with pytest.raises(OSError):
        keeper.take_arrivals()
    monkeypatch.setattr(lib.ingest, "dead_claims", dead_claims)
    assert keeper.take_arrivals() == 2  # the first two uploads, not the two after them
    assert keeper.take_arrivals() == 2
    with lib.db.transaction() as s:
        queued = {media_repo.load(s, j.media_id).current.object.key
                  for j in s.scalars(select(Job).where(Job.kind == "finalize"))}
    assert queued == set(keys)

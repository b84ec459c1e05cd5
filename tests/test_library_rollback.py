"""An answer that says failure stores nothing, over real HTTP: no record, no object, no job.

A decompression bomb uploaded with ``generateVariants=true`` (413 from the variants step, after the
bytes and the record were committed), and uploads whose queue is unreachable (a later step fails):
afterwards the list, the bucket (S3 or the directory) and the database hold nothing new."""

from __future__ import annotations

import struct

import pytest
from sqlalchemy import func, select

from mediaproxy.library.db import Database
from mediaproxy.library.models import Job, Media, StoredObject, Variant

from . import media
from .conftest import start_library
from .server import free_port
from .test_adversarial import png_few_rows


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small, valid JPEG whose frame header claims width×height."""
    data = bytearray(media.jpeg(16, 16))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def counts(env: dict) -> dict[str, int]:
    db = Database(env["MEDIAPROXY_DATABASE_URL"])
    try:
        with db.transaction() as s:
            return {m.__name__: s.scalar(select(func.count()).select_from(m))
                    for m in (Media, StoredObject, Variant, Job)}
    finally:
        db.dispose()


def snapshot(library) -> tuple:
    listed = library.api("GET", "/api/v1/media/list", params={"limit": 100}).json()
    return listed["total"], sorted(library.stored_keys("")), counts(library.env)


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_a_bomb_with_variants_is_413_and_leaves_nothing(library, kind):
    bomb = png_few_rows(30000, 30000) if kind == "png" else jpeg_claiming(60000, 60000)
    assert len(bomb) < 200_000
    before = snapshot(library)
    for extra in ({}, {"isPrivate": True, "alt": "a bomb"}):
        r = library.upload(bomb, f"bomb.{kind}", generateVariants=True, **extra)
        assert r.status_code == 413, r.text
        assert "pixel limit" in r.json()["error"]
    assert snapshot(library) == before
    # and a sound upload afterwards is all there
    r = library.upload(media.jpeg(320, 240), "fine.jpg", generateVariants=True)
    assert r.status_code == 201 and len(r.json()["variants"]) == 5


@pytest.fixture(scope="module")
def queue_down(request, make_server, tmp_path_factory):
    """A stack whose queue (Redis) is not listening: every enqueue fails."""
    stack = start_library(request, make_server, tmp_path_factory, "local",
                          {"MEDIAPROXY_QUEUE_URL": f"redis://127.0.0.1:{free_port()}/0"}, worker=False)
    yield stack
    stack.stop()


def test_an_upload_whose_queue_fails_is_all_there_or_not_at_all(queue_down):
    """The /v2 image service's upload queues the placeholder job; the /api/v1 API's ``async`` queues variants. With the
    queue unreachable, an answer that says failure has stored nothing (and a success, if the queue
    is ever written through the database, has stored everything)."""
    lib = queue_down
    before = snapshot(lib)
    answers = [
        lib.api("POST", "/v2/images", files={"file": ("a.png", media.png(64, 48), "application/octet-stream")},
                headers={"X-User-Id": "alice"}),
        lib.upload(media.jpeg(64, 48), "b.jpg", generateVariants=True, **{"async": True}),
    ]
    failed = [r for r in answers if r.status_code >= 400]
    if len(failed) == len(answers):
        assert all(r.status_code >= 500 for r in failed)
        assert snapshot(lib) == before
    else:  # a queue written with the record: each upload answered success and is recorded
        assert [r.status_code for r in answers] == [201, 202], [r.text for r in answers]
        assert snapshot(lib)[2]["Media"] == before[2]["Media"] + 2

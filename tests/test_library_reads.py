"""Reads have no side effects, in process through the real app (MEDIAPROXY_MODE=library, SQLite,
the local store): a read of a presigned upload whose bytes the store holds but which nobody has
completed yet — what a PUT straight to S3 leaves — writes no row and moves no byte, in every
dialect that can name it. The completion is the workers' (``Keeper.take_arrivals``)."""

from __future__ import annotations

import contextlib

import falcon.testing
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from mediaproxy.app import create_falcon_app
from mediaproxy.context import Context
from mediaproxy.library import auth
from mediaproxy.library.db import Database
from mediaproxy.library.repositories import media as media_repo
from mediaproxy.library.services.base import incoming_key
from mediaproxy.settings import Settings

from . import media as samples

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """(a test client of the app, its settings, an API key of "acme")."""
    tmp = tmp_path_factory.mktemp("reads")
    (tmp / "store" / "library").mkdir(parents=True)
    settings = Settings.from_env({
        "MEDIAPROXY_MODE": "library",
        "MEDIAPROXY_STORAGE": str(tmp / "store"),
        "MEDIAPROXY_CACHE_DIR": str(tmp / "cache"),
        "MEDIAPROXY_SECRET_KEY": "read-tests",
        "MEDIAPROXY_DATABASE_URL": f"sqlite:///{tmp}/library.db",
        "MEDIAPROXY_QUEUE_URL": f"sqlite:///{tmp}/queue.db",
    })
    client = falcon.testing.TestClient(create_falcon_app(settings, Context.build(settings)))
    db = Database(settings.library.database_url)
    try:
        with db.transaction() as s:
            key = auth.create_key(s, "acme")
    finally:
        db.dispose()
    return client, settings, key


@contextlib.contextmanager
def writes():
    """The statements that write, on any engine, run inside the block."""
    seen: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith(WRITES):
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", count)


def arrived_upload(client, settings, key: str, path: str, body: dict, headers: dict) -> tuple[str, str]:
    """A presigned upload whose bytes are in the store under its incoming key, as a PUT straight to
    S3 leaves them, not completed: (its id, the incoming key)."""
    r = client.simulate_post(path, json=body, headers={"X-API-Key": key, **headers})
    assert r.status_code == 201, r.text
    answer = r.json
    media_id = answer.get("id") or answer["media"]["id"]
    db = Database(settings.library.database_url)
    try:
        with db.transaction() as s:
            object_key = media_repo.load(s, media_id).current.object.key
    finally:
        db.dispose()
    incoming = settings.storage_dir / "library" / incoming_key(object_key)
    incoming.parent.mkdir(parents=True, exist_ok=True)
    incoming.write_bytes(samples.png(40, 30))
    return media_id, incoming


def test_a_read_of_an_arrived_upload_writes_nothing(app):
    client, settings, key = app
    auth_headers = {"X-API-Key": key}
    v1_id, v1_incoming = arrived_upload(client, settings, key, "/api/v1/media/upload/presigned",
                                        {"filename": "a.png", "mimeType": "image/png"}, {})
    media_id, media_incoming = arrived_upload(client, settings, key, "/media",
                                              {"filename": "b.png", "contentType": "image/png"},
                                              {"X-User-Id": "ulla"})
    reads = [
        (f"/api/v1/media/{v1_id}", {}, {}),
        (f"/api/v1/media/{v1_id}/variants", {}, {}),
        ("/api/v1/media/list", {}, {}),
        (f"/v2/images/{v1_id}", {"info": "true"}, {}),
        (f"/media/{media_id}", {}, {"X-User-Id": "ulla"}),
    ]
    for _ in range(2):
        for path, params, headers in reads:
            with writes() as seen:
                r = client.simulate_get(path, params=params, headers={**auth_headers, **headers})
            assert r.status_code in (200, 404), (path, r.status_code, r.text)
            assert seen == [], (path, seen)
    # the records still wait, their bytes where the PUT left them
    r = client.simulate_get(f"/api/v1/media/{v1_id}", headers=auth_headers)
    assert r.json["status"] == "uploading" and r.json["url"] is None
    r = client.simulate_get(f"/media/{media_id}", headers={**auth_headers, "X-User-Id": "ulla"})
    assert r.json["status"] == "pending_upload" and r.json["publicDownloadUrl"] is None
    assert v1_incoming.exists() and media_incoming.exists()

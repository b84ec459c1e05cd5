"""The library's one-session-per-request middleware: a commit that fails after the responder has
built a success answers 500 with the error body alone — none of the success's headers or body,
so a client is never told "created, here" about something that was rolled back."""

from __future__ import annotations

import io
from types import SimpleNamespace

import falcon
import falcon.testing
import orjson

from mediaproxy.app import create_falcon_app
from mediaproxy.context import Context
from mediaproxy.library import unit
from mediaproxy.library.api.common import PUBLIC, LibraryMiddleware
from mediaproxy.settings import Settings


class _Session:
    def __init__(self, fail: bool):
        self.fail, self.calls, self.info = fail, [], {}

    def commit(self) -> None:
        self.calls.append("commit")
        if self.fail:
            raise RuntimeError("could not serialize access")

    def rollback(self) -> None:
        self.calls.append("rollback")

    def close(self) -> None:
        self.calls.append("close")


class _Created:
    library = True
    auth = PUBLIC  # every library resource declares who may call it (the middleware enforces it)

    def on_post(self, req, resp):
        # what an upload registers: its bytes are deleted if the record is never committed
        s = req.context.db
        unit.after_rollback(s, lambda: s.calls.append("undone"))
        resp.status = falcon.HTTP_201
        resp.set_header("Location", "/api/v1/media/abc")
        resp.set_header("ETag", '"v1"')
        resp.media = {"id": "abc"}

    def on_get(self, req, resp):
        resp.set_header("Content-Disposition", 'attachment; filename="a.bin"')
        resp.set_header("Accept-Ranges", "bytes")
        resp.stream = self.body = io.BytesIO(b"x" * 1000)
        resp.content_length = 1000


def _client(tmp_path, fail: bool) -> tuple[falcon.testing.TestClient, list, _Created]:
    settings = Settings.from_env({"MEDIAPROXY_DEMO": "1", "MEDIAPROXY_STORAGE": str(tmp_path / "storage"),
                                  "MEDIAPROXY_CACHE_DIR": str(tmp_path / "cache"), "MEDIAPROXY_MODE": "static"})
    app = create_falcon_app(settings, Context.build(settings))
    sessions: list[_Session] = []

    def session() -> _Session:
        sessions.append(_Session(fail))
        return sessions[-1]

    app.add_middleware(LibraryMiddleware(SimpleNamespace(db=SimpleNamespace(session=session))))
    resource = _Created()
    app.add_route("/thing", resource)
    return falcon.testing.TestClient(app), sessions, resource


def test_a_failed_commit_answers_500_without_the_successes_headers(tmp_path):
    client, sessions, resource = _client(tmp_path, fail=True)
    r = client.simulate_post("/thing")
    assert r.status_code == 500 and orjson.loads(r.content) == {"error": "internal error"}
    for name in ("Location", "ETag"):
        assert name not in r.headers, name
    assert r.headers["Cache-Control"] == "no-store"
    r = client.simulate_get("/thing")
    assert r.status_code == 500 and orjson.loads(r.content) == {"error": "internal error"}
    for name in ("Content-Disposition", "Accept-Ranges"):
        assert name not in r.headers, name
    assert int(r.headers["Content-Length"]) == len(r.content)
    assert resource.body.closed  # the stream that will not be sent is closed
    # a failed commit is rolled back, and what was to be undone then is (the upload's bytes)
    assert [s.calls for s in sessions] == [["commit", "rollback", "undone", "close"], ["commit", "rollback", "close"]]


def test_a_commit_that_succeeds_leaves_the_answer_alone(tmp_path):
    client, sessions, _ = _client(tmp_path, fail=False)
    r = client.simulate_post("/thing")
    assert r.status_code == 201 and r.headers["Location"] == "/api/v1/media/abc" and r.json == {"id": "abc"}
    r = client.simulate_get("/thing")
    assert r.status_code == 200 and r.content == b"x" * 1000 and r.headers["Accept-Ranges"] == "bytes"
    assert [s.calls for s in sessions] == [["commit", "close"]] * 2

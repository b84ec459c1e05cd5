"""What a worker loads, over real gunicorn: a media-only worker carries none of the library (its
database layer, queue, password hashing, multipart parser) nor the packages a dependency imports
for frameworks it is not used with; a library worker loads the multipart parser (and the smart_open,
boto3 and requests it imports) with its first form. Read from the worker's memory map, the
compiled modules each of those packages loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediaproxy import app as app_module
from mediaproxy.settings import LIBRARY_MODES, MODES

from . import media
from .library import Stack, library_env

# a compiled module of each package, as it appears in /proc/<pid>/maps
LIBRARY_ONLY = {
    "SQLAlchemy": "/sqlalchemy/",
    "psycopg": "/psycopg_binary/",
    "argon2-cffi": "/_argon2_cffi_bindings/",
    "streaming-form-data": "/streaming_form_data/",
}
MULTIPART = LIBRARY_ONLY["streaming-form-data"]
# what swagger-ui-py imports for the frameworks it integrates with: Jinja2 (MarkupSafe) and PyYAML
FOR_OTHER_FRAMEWORKS = {"MarkupSafe": "/markupsafe/", "PyYAML": "/_yaml/"}


def _worker_pid(server) -> int:
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def _loaded(server, fragments: dict[str, str]) -> set[str]:
    maps = Path(f"/proc/{_worker_pid(server)}/maps").read_text()
    return {name for name, fragment in fragments.items() if fragment in maps}


def test_the_library_modes_are_the_ones_given_its_route_group():
    assert {m for m in MODES if app_module.library in app_module.MODES[m]} == set(LIBRARY_MODES)


@pytest.mark.parametrize("mode", ["media", "static"])
def test_a_worker_without_the_library_loads_none_of_it(make_server, mode):
    srv = make_server("local", env={"MEDIAPROXY_MODE": mode})
    # every route the mode serves is built at start-up; its OpenAPI document and docs page answer
    assert srv.get("/openapi.json").json()["info"]["x-mode"] == mode
    assert srv.get("/docs/swagger-ui.css").status_code == 200
    assert _loaded(srv, LIBRARY_ONLY) == set()
    assert _loaded(srv, FOR_OTHER_FRAMEWORKS) == set()


def test_a_library_worker_loads_the_multipart_parser_with_its_first_form(make_server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("footprint")
    stack = Stack(make_server("local", env=library_env(workdir), workers=1), workdir, worker=False)
    try:
        srv = stack.server
        assert "/api/v1/media/upload" in srv.get("/openapi.json").json()["paths"]
        assert stack.api("GET", "/api/v1/media/list").status_code == 200  # the database layer is there
        loaded = _loaded(srv, LIBRARY_ONLY)
        assert "SQLAlchemy" in loaded and "streaming-form-data" not in loaded, loaded
        assert _loaded(srv, {"PyYAML": "/_yaml/"}) == set()  # (Alembic's templates use MarkupSafe)
        r = stack.upload(media.jpeg(64, 64))
        assert r.status_code in (200, 201, 202), r.text
        assert _loaded(srv, {"streaming-form-data": MULTIPART}) == {"streaming-form-data"}
        assert stack.upload(media.jpeg(48, 48), filename="second.jpg").status_code == r.status_code
    finally:
        stack.stop()

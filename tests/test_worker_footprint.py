"""What a worker loads: a media-only worker carries none of the library (its database layer, queue,
password hashing, multipart parser) nor the packages a dependency imports for frameworks it is not
used with. Read over real gunicorn from the worker's memory map (the compiled modules of those
packages), and from a fresh interpreter's ``sys.modules`` for the pure-Python ones."""

from __future__ import annotations

import os
import subprocess
import sys
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
# the same and the rest, compiled or not, by their import names
NOT_IN_A_MEDIA_WORKER = ("mediaproxy.library", "sqlalchemy", "alembic", "huey", "redis", "psycopg", "argon2", "jwt",
                         "msgspec", "streaming_form_data", "smart_open", "jinja2", "yaml")
# what swagger-ui-py imports for the frameworks it integrates with: Jinja2 (MarkupSafe) and PyYAML
FOR_OTHER_FRAMEWORKS = {"MarkupSafe": "/markupsafe/", "PyYAML": "/yaml/_yaml."}



def _loaded(server, fragments: dict[str, str]) -> set[str]:
    maps = Path(f"/proc/{server.worker_pid()}/maps").read_text()
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


def test_a_library_worker_loads_it(make_server, tmp_path_factory):
    """The other side of the checks above: in a library mode the same fragments are found, so their
    absence in a media worker means something."""
    workdir = tmp_path_factory.mktemp("footprint")
    stack = Stack(make_server("local", env=library_env(workdir), workers=1), workdir, worker=False)
    try:
        srv = stack.server
        assert "/api/v1/media/upload" in srv.get("/openapi.json").json()["paths"]
        assert stack.upload(media.jpeg(64, 64)).status_code == 201
        loaded = _loaded(srv, LIBRARY_ONLY)
        assert {"SQLAlchemy", "argon2-cffi", "streaming-form-data"} <= loaded, loaded
        assert _loaded(srv, {"PyYAML": FOR_OTHER_FRAMEWORKS["PyYAML"]}) == set()  # (Alembic's templates use MarkupSafe)
    finally:
        stack.stop()


def _imported(code: str, env: dict) -> set[str]:
    """Which of NOT_IN_A_MEDIA_WORKER a fresh interpreter has imported after running ``code``."""
    code += (
        "\nimport sys\n"
        f"wanted = {NOT_IN_A_MEDIA_WORKER!r}\n"
        "print(' '.join(w for w in wanted if any(m == w or m.startswith(w + '.') for m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_a_media_worker_imports_none_of_the_library_s_python(tmp_path):
    """What the memory map cannot show (packages without compiled modules), from a fresh interpreter
    that builds the media mode's app and answers through it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIAPROXY_")}
    env.update(MEDIAPROXY_MODE="media", MEDIAPROXY_SECRET_KEY="x" * 40, MEDIAPROXY_STORAGE=str(tmp_path / "s"),
               MEDIAPROXY_CACHE_DIR=str(tmp_path / "c"))
    served = (
        "import mediaproxy.wsgi\n"
        "from falcon import testing\n"
        "c = testing.TestClient(mediaproxy.wsgi.app)\n"
        "assert c.simulate_get('/openapi.json').json['info']['x-mode'] == 'media'\n"
        "assert c.simulate_get('/docs/swagger-ui-bundle.js').status_code == 200\n"
        "assert c.simulate_get('/_health').status_code == 200\n"
    )
    assert _imported(served, env) == set()
    # the same look finds them where they are loaded
    assert {"sqlalchemy", "huey", "jwt", "msgspec", "mediaproxy.library"} <= _imported(
        "import mediaproxy.library.build", env)

"""The OpenAPI 3.1 document: valid, complete for the running mode's Falcon routes,
served at /openapi.json with Swagger UI at /docs, and true of a live server
(schemathesis against a real gunicorn)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import falcon.inspect
import orjson
import pytest
from openapi_spec_validator import validate

from mediaproxy import demo
from mediaproxy.app import create_falcon_app
from mediaproxy.context import Context
from mediaproxy.library.api.operations import DIALECTS, fragment
from mediaproxy.openapi import HERE, FragmentError, build
from mediaproxy.settings import MODES, Settings
from mediaproxy.storage.local import LocalStorage

from .conftest import start_library
from .server import SECRET
from .test_library_v2_admin import login, make_admin

METHODS = ("get", "head", "post", "put", "patch", "delete")


def falcon_routes(mode: str, tmp_path) -> set[tuple[str, str]]:
    settings = Settings.from_env({"MEDIAPROXY_SECRET_KEY": "x", "MEDIAPROXY_MODE": mode,
                                  "MEDIAPROXY_STORAGE": str(tmp_path), "MEDIAPROXY_CACHE_DIR": ""})
    app = create_falcon_app(settings, Context.build(settings))
    return {(route.path, m.method.lower()) for route in falcon.inspect.inspect_routes(app)
            for m in route.methods if not m.internal and m.method.lower() in METHODS}


def documented(doc: dict) -> set[tuple[str, str]]:
    return {(item.get("x-falcon-route", path), m) for path, item in doc["paths"].items() for m in item if m in METHODS}


@pytest.mark.parametrize("mode", MODES)
def test_document_is_valid_openapi_31(mode):
    doc = build(mode)
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema, dangling $refs included


@pytest.mark.parametrize("mode", MODES)
def test_every_route_of_the_mode_is_documented_and_nothing_else(mode, tmp_path):
    routes, doc = falcon_routes(mode, tmp_path), documented(build(mode))
    assert routes - doc == set(), "routes missing from the OpenAPI document"
    assert doc - routes == set(), "documented operations the app does not serve"


def test_fragments_plug_in_by_mode(tmp_path):
    (tmp_path / "base.json").write_bytes((HERE / "base.json").read_bytes())
    extra = {"x-modes": ["other"], "paths": {"/x": {"get": {"responses": {"200": {"description": "x"}}}}},
             "components": {"schemas": {"PlainText": {"type": "integer"}}}}
    (tmp_path / "extra.json").write_text(json.dumps(extra))
    assert "/x" not in build("media", tmp_path)["paths"]
    with pytest.raises(FragmentError, match=r"components\.schemas\.PlainText differs"):
        build("other", tmp_path)
    del extra["components"]
    (tmp_path / "extra.json").write_text(json.dumps(extra))
    (tmp_path / "twice.json").write_text(json.dumps(extra))
    with pytest.raises(FragmentError, match="path /x is already defined"):
        build("other", tmp_path)


def test_served_document_and_swagger_ui(local_server):
    r = local_server.get("/openapi.json")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert orjson.loads(r.content) == build("media")
    page = local_server.get("/docs")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    for asset in re.findall(r'(?:src|href)="(/docs/[^"]+)"', page.text):
        got = local_server.get(asset)
        assert got.status_code == 200 and len(got.content) > 0, asset
    bundle = local_server.get("/docs/swagger-ui-bundle.js").text
    assert "isOAS31" in bundle  # a Swagger UI that reads OpenAPI 3.1 (5.x), served locally
    assert "/openapi.json" in local_server.get("/docs/init.js").text
    assert local_server.get("/docs/../../etc/passwd").status_code == 404
    assert local_server.get("/docs/index.html").status_code == 404


CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance")


# the library's handlers refuse what its document calls invalid (the origin's routes are not held to it yet)
LIBRARY_CHECKS = CHECKS + ",negative_data_rejection"
CONFIG = Path(__file__).with_name("schemathesis.toml")


def schemathesis(url: str, cwd: Path, *args: str, examples: int = 8,
                 checks: str = CHECKS) -> subprocess.CompletedProcess:
    st = str(Path(sys.executable).with_name("schemathesis"))
    return subprocess.run(
        [st, "--config-file", str(CONFIG), "run", url, "--checks", checks,
         # One schemathesis worker: with two, hypothesis' lambda descriptions hit CPython 3.11's
         # "AST constructor recursion depth mismatch" (ast.parse from threads) as runtime errors.
         "--max-examples", str(examples), "--seed", "11", "--workers", "1", "--request-timeout", "60",
         "--generation-database", "none", "--no-color", "--suppress-health-check", "all",
         "--report", "json", "--report-json-path", str(cwd / "st.json"), *args],
        capture_output=True, text=True, timeout=900, cwd=cwd,  # its cache directory stays out of the repo
    )


def test_schemathesis_against_a_live_server(make_server, tmp_path):
    """Every operation, positive and negative inputs, a bounded number of cases each:
    no 5xx, and every status, content type, header and JSON body as documented."""
    srv = make_server("local", workers=2)
    storage = LocalStorage(srv.storage_dir)
    demo.seed(storage, "cdn")  # the documented examples name the demo objects
    demo.seed_uploads(storage, "uploads")
    # ~4,500 cases, about a minute on an idle 2-core machine
    done = schemathesis(srv.url("/openapi.json"), tmp_path, "--header", f"X-Internal-Secret: {SECRET}")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


LIBRARY_TAGS = "^(" + "|".join(re.escape(d.tag) for d in DIALECTS) + ")$"
# the admin's own session: its profile and password, then its logout, each run after the rest (a logout
# ends the access token every admin operation uses; a password change, when one succeeds, too)
OWN_SESSION = "^/v2/admin/auth/(me|logout)"
LOGOUT = "^/v2/admin/auth/logout$"
# A multipart field is text: a non-string item of these forms' `tags[]` reaches the server as its JSON
# text ("{}"), a valid tag, so schemathesis' negative cases there are not negative. These operations
# run without the negative_data_rejection check; test_library_v2.py holds their fields to the document.
TEXT_FORMS = ("POST /v2/images", "POST /v2/admin/images")


def test_schemathesis_against_the_library_in_mode_all(request, make_server, tmp_path_factory, tmp_path):
    """Every operation of the library (the /api/v1, /media, /v2 and admin APIs, the portal, the public
    URLs) against a real gunicorn in MEDIAPROXY_MODE=all, with an organization's API key, an admin's
    access token and the portal's own Origin: no 5xx, every answer as the generated document says, and
    every request the document calls invalid refused."""
    stack = start_library(request, make_server, tmp_path_factory, "local", worker=False)
    srv = stack.server
    email = make_admin(stack)
    # includes add up (this run's tag regex would take in the rest): every other operation is excluded
    forms = ("--exclude-name-regex", "^(?!(" + "|".join(re.escape(name) for name in TEXT_FORMS) + ")$)")
    runs = ((("--exclude-path-regex", OWN_SESSION, *(arg for name in TEXT_FORMS for arg in ("--exclude-name", name))),
             LIBRARY_CHECKS),
            (forms, CHECKS),
            (("--include-path-regex", OWN_SESSION, "--exclude-path-regex", LOGOUT), LIBRARY_CHECKS),
            (("--include-path-regex", LOGOUT), LIBRARY_CHECKS))
    tested = 0
    try:
        for i, (only, checks) in enumerate(runs):
            token = login(stack, email).json()["accessToken"]  # a fresh one: the last run may have ended it
            (tmp_path / str(i)).mkdir()
            done = schemathesis(srv.url("/openapi.json"), tmp_path / str(i), "--include-tag-regex", LIBRARY_TAGS,
                                *only, "--header", f"X-API-Key: {stack.key}",
                                "--header", f"Authorization: Bearer {token}", "--header", f"Origin: {srv.base}",
                                examples=5, checks=checks)
            assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
            tested += orjson.loads((tmp_path / str(i) / "st.json").read_bytes())["operations"]["tested"]
    finally:
        stack.stop()
    library = fragment()["paths"]
    assert tested == sum(1 for item in library.values() for m in item if m in METHODS)  # every operation, once

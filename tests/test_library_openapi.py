"""The library's OpenAPI fragments are valid OpenAPI 3.1 and cover every route the app serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from mediaproxy.app import create_app
from mediaproxy.settings import Settings

OPENAPI = Path(__file__).resolve().parent.parent / "mediaproxy" / "openapi"
FRAGMENTS = ("library-v1.json", "library-media.json")


@pytest.mark.parametrize("name", FRAGMENTS)
def test_fragment_is_valid_openapi_31(name):
    frag = json.loads((OPENAPI / name).read_text())
    assert frag["x-modes"] == ["library", "all"]
    doc = {"openapi": "3.1.0", "info": {"title": "mediaproxy", "version": "1"}, "paths": frag["paths"],
           "components": frag["components"]}
    validate(doc)


def _routes(app) -> set[tuple[str, str]]:
    """(method, template) of every route of the Falcon app."""
    falcon_app = app
    while not hasattr(falcon_app, "_router"):
        falcon_app = falcon_app.app
    found = set()

    def walk(nodes):
        for node in nodes:
            if node.resource is not None:
                for method in node.method_map:
                    responder = node.method_map[method]
                    if getattr(responder, "__name__", "") != "method_not_allowed" and method not in ("OPTIONS",):
                        found.add((method, node.uri_template))
            walk(node.children)

    walk(falcon_app._router._roots)
    return found


def test_every_library_route_is_documented(tmp_path):
    settings = Settings.from_env({"MEDIAPROXY_DEMO": "1", "MEDIAPROXY_MODE": "library",
                                  "MEDIAPROXY_STORAGE": str(tmp_path / "s"),
                                  "MEDIAPROXY_CACHE_DIR": str(tmp_path / "c"),
                                  "MEDIAPROXY_DATABASE_URL": f"sqlite:///{tmp_path}/l.db",
                                  "MEDIAPROXY_QUEUE_URL": f"sqlite:///{tmp_path}/q.db", "MEDIAPROXY_FAST_PATH": "0"})
    app = create_app(settings)
    documented = set()
    for name in FRAGMENTS:
        for path, item in json.loads((OPENAPI / name).read_text())["paths"].items():
            for method in item:
                documented.add((method.upper(), path))
    ops = {"/_health", "/internal/telemetry"}  # the origin's own routes, documented with the origin
    # HEAD answers wherever GET does
    served = {(m, re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", t)) for m, t in _routes(app) if t not in ops and m != "HEAD"}
    norm = {(m, re.sub(r"\{\w+\}", "{}", t)) for m, t in served}
    doc_norm = {(m, re.sub(r"\{\w+\}", "{}", t)) for m, t in documented}
    assert norm - doc_norm == set(), "served but not documented"
    assert doc_norm - norm == set(), "documented but not served"

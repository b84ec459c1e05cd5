"""The library's OpenAPI fragments are valid OpenAPI 3.1 and cover every route the app serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openapi_spec_validator import validate

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


# Route coverage (every route of the library and all modes documented, nothing else):
# tests/test_openapi.py::test_every_route_of_the_mode_is_documented_and_nothing_else.

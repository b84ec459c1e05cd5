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


# Route coverage (every route of the library and all modes documented, nothing else):
# tests/test_openapi.py::test_every_route_of_the_mode_is_documented_and_nothing_else.

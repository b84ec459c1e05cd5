"""The library's OpenAPI fragment is generated from its route tables, its declared operations and its
msgspec schemas (library/api/operations.py): valid OpenAPI 3.1, one operation for every responder and no
declaration left over, the declared authentication of each resource as its security, and the schemas the
handlers read body fields from closed (additionalProperties: false) where the API refuses unknown fields."""

from __future__ import annotations

import msgspec
import pytest
from openapi_spec_validator import validate

from mediaproxy.library.api import schemas as S
from mediaproxy.library.api.common import ADMIN, KEY, KEY_USER, PUBLIC, TOKEN, requirement
from mediaproxy.library.api.openapi import METHODS, Generator, Op, json
from mediaproxy.library.api.operations import DIALECTS, OPERATIONS, fragment, route_table
from mediaproxy.openapi import build

# every request body whose unknown fields the API refuses (400 "unknown field(s): …", "cannot change …")
CLOSED = {S.MediaPatch, S.ImagePatch, S.AlbumInput, S.MePatch, S.ClientPatch}


def test_fragment_is_valid_openapi_31():
    frag = fragment()
    assert frag["x-modes"] == ["library", "all"]
    validate({"openapi": "3.1.0", "info": {"title": "mediaproxy", "version": "1"}, "paths": frag["paths"],
              "components": frag["components"]})


def test_every_declaration_is_routed():
    table = route_table("/v2", "/admin")
    routed = {(resource, m) for _, resource, _ in table for m in METHODS if hasattr(resource, f"on_{m}")}
    assert set(OPERATIONS) - routed == set(), "operations declared for no route"
    assert routed - set(OPERATIONS) == set(), "responders without a declared operation"


def test_a_responder_without_an_operation_fails_the_generator():
    class Orphan:
        auth = KEY

        def on_get(self, req, resp):
            pass

    with pytest.raises(LookupError, match=r"Orphan\.on_get"):
        Generator().paths([("/orphan", Orphan, DIALECTS[0])], {})
    paths = Generator().paths([("/orphan", Orphan, DIALECTS[0])], {(Orphan, "get"): Op("x", "x", {200: json(
        S.Error, "x")})})
    assert paths["/orphan"]["get"]["security"] == [{"ApiKey": []}]


def test_security_is_the_declared_authentication():
    doc = fragment()
    for template, resource, _ in route_table("/v2", "/admin"):
        path = template.replace(":path}", "}")
        for method in METHODS:
            if not hasattr(resource, f"on_{method}"):
                continue
            op = doc["paths"][path][method]
            need = requirement(resource, method.upper()) if hasattr(resource, "auth") else PUBLIC
            schemes = {name for alt in op["security"] for name in alt}
            if need == ADMIN:
                assert schemes == {"AdminJWT"}, (method, path)
            elif need in (KEY, KEY_USER):
                assert "ApiKey" in schemes and {} not in op["security"], (method, path)
            else:
                assert need in (PUBLIC, TOKEN) and schemes <= {"ApiKey"}, (method, path)
            if need in (KEY, KEY_USER, ADMIN):
                assert "401" in op["responses"], (method, path)
            if need == KEY_USER:
                assert {"name": "X-User-Id", "in": "header", "required": True}.items() <= next(
                    p for p in op["parameters"] if p["name"] == "X-User-Id").items(), (method, path)


def test_closed_bodies_are_closed_in_the_document_and_open_ones_are_not():
    schemas = fragment()["components"]["schemas"]
    used = {name for name in schemas if name.endswith(("Patch", "Input"))}
    assert used == {c.__name__ for c in CLOSED}
    for struct in CLOSED:
        assert struct.__struct_config__.forbid_unknown_fields
        assert schemas[struct.__name__]["additionalProperties"] is False
    assert "additionalProperties" not in schemas["CropRequest"]


def test_fields_are_the_wire_names():
    assert S.fields(S.MediaPatch) == ("alt", "caption", "description", "isPrivate")
    assert S.fields(S.ImageForm)[:3] == ("file", "albumId", "tags[]")


def test_closed_schemas_decode_what_they_declare():
    assert msgspec.json.decode(b'{"isPrivate": true, "alt": null}', type=S.MediaPatch) == S.MediaPatch(
        is_private=True, alt=None)
    with pytest.raises(msgspec.ValidationError, match="unknown field `size`"):
        msgspec.json.decode(b'{"size": 1}', type=S.MediaPatch)


def test_the_document_follows_the_api_prefix_and_the_portal_path():
    doc = build("library", api_prefix="/api/img", portal_path="/console")
    assert "/api/img/images/{image_id}" in doc["paths"] and "/api/img/admin/auth/login" in doc["paths"]
    assert "/console/session" in doc["paths"]
    assert not any(p.startswith(("/v2/", "/admin/")) for p in doc["paths"])
    assert "/api/img/admin/auth/login" in doc["components"]["securitySchemes"]["AdminJWT"]["description"]


# Route coverage (every route of the library and all modes documented, nothing else):
# tests/test_openapi.py::test_every_route_of_the_mode_is_documented_and_nothing_else.

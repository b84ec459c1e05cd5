"""The library's OpenAPI document says what its handlers check: every query parameter and body field
the generated document bounds (minimum, maximum, maxLength, minLength, pattern, enum, minItems,
maxItems, a boolean's type) is decoded by its handler through that same declaration. Proved over
real HTTP by walking the document itself: for each operation and each bounded field, a value just
outside the bound is refused (400, the error naming the field), and one just inside it is not
refused for that field. A handler that read a field by hand, or through another schema, with other
bounds, fails the walk. Also the decoding rules every dialect shares (library/api/common.py)."""

from __future__ import annotations

import re

import msgspec
import pytest

from mediaproxy.errors import BadRequest
from mediaproxy.library.api import common
from mediaproxy.library.api import schemas as S
from mediaproxy.library.api.operations import fragment
from mediaproxy.library.repositories.search import SORTS

from .conftest import start_library
from .test_library_auth_walk import PARAM, _records
from .test_library_v2 import V2, img
from .test_library_v2_admin import PASSWORD, bearer, login, make_admin

# operations whose query the handler does not decode through the library's schemas, with the reason
NOT_DECODED = {
    ("get", "/library/{key}"): "the origin's imgix parameters (routes/library.py), not a library dialect",
    ("get", "/sha256/{sha}"): "the origin's imgix parameters (routes/library.py), not a library dialect",
}
# a signed URL's query that cannot be read is a wrong signature: 403, as the document says
SIGNATURE = {("get", "/api/v1/media/signed/{bucket}/{key}"), ("put", "/api/v1/media/signed/{bucket}/{key}")}
QUERY_MAX = 2000  # a longer value is the request line's limit (414), not the schema's
LAST = ("/auth/login", "/session")  # failed logins throttle this address: probed last


@pytest.fixture(scope="module")
def stack(request, make_server, tmp_path_factory):
    s = start_library(request, make_server, tmp_path_factory, "local")
    yield s
    s.stop()


def _first(prop: dict) -> dict:
    """A property's schema, its first non-null alternative for a union."""
    for alt in prop.get("anyOf", [prop]):
        if alt.get("type") != "null":
            return alt
    return prop


def _matches(pattern: str | None, value: str) -> bool:
    return pattern is None or re.search(pattern, value) is not None


def probes(prop: dict) -> list[tuple[str, object, object]]:
    """(bound, a value outside it, a value inside it) for each bound the property declares."""
    p = _first(prop)
    kind = p.get("type")
    out = []
    if "enum" in p:
        out.append(("enum", "not-one-of-them" if isinstance(p["enum"][0], str) else 7, p["enum"][0]))
    elif kind in ("integer", "number"):
        step = 1 if kind == "integer" else 0.001
        if "minimum" in p:
            out.append(("minimum", p["minimum"] - step, p["minimum"]))
        if "maximum" in p:
            out.append(("maximum", p["maximum"] + step, p["maximum"]))
        out.append(("type", "many", p.get("minimum", p.get("maximum", 1))))
    elif kind == "boolean":
        out.append(("type", "maybe", True))
    elif kind == "string":
        pattern = p.get("pattern")
        good = next((v for v in ("a", "webp", "asc", "cover") if _matches(pattern, v)), None)
        if good is not None and len(good) < p.get("minLength", 0):
            good += "a" * (p["minLength"] - len(good))
        if "maxLength" in p:
            n = p["maxLength"]
            out.append(("maxLength", "a" * (n + 1), (good or "a") + "a" * (n - len(good or "a"))))
        if p.get("minLength") == 1:
            out.append(("minLength", "", good))
        if pattern is not None:
            bad = next(v for v in ("a\x00b", "\x01", "zz") if not _matches(pattern, v))
            out.append(("pattern", bad, good))
    elif kind == "array":
        if p.get("minItems"):
            out.append(("minItems", [], ["nope"]))
        if "maxItems" in p:
            out.append(("maxItems", ["nope"] * (p["maxItems"] + 1), ["nope"] * p["maxItems"]))
    return out


def _valid(name: str, value):
    """An inside value of a field whose content is checked beyond its bounds too (an address, a
    time): one of that content, as long as the bound allows."""
    if name == "email" and isinstance(value, str):  # at most 64 characters before the @, 190 after
        return "a" * max(1, min(64, len(value) - 2)) + "@" + "b" * max(1, len(value) - 65)
    if name in ("from", "to") and isinstance(value, str):
        return "2026-01-01T00:00:00+00:00"
    return value


def baseline(schema: dict, ids: dict) -> dict:
    """Values of the required fields (and of one of id/objectKey), naming nothing that exists."""
    known = {"filename": "walk.png", "contentType": "image/png", "objectKey": "nope", "id": "nope",
             "ids": "nope", "imageIds": ["nope"], "email": "nobody@example.com", "password": "wrong",
             "currentPassword": "wrong", "newPassword": "also-wrong-1", "refreshToken": "nope",
             "clientId": ids["client_id"], "w": 16, "h": 16, "fit": "cover", "e": 1, "s": "nope",
             "width": 1, "height": 1, "name": "walk", "expires": 1, "signature": "nope"}
    out = {}
    for name in schema.get("required", []):
        if name != "file":
            out[name] = known[name]
    if "objectKey" in schema["properties"] and "id" in schema["properties"]:
        out["id"] = "nope"  # ByKey: one of them is needed
    return out


def _wire(value) -> str:
    return "true" if value is True else "false" if value is False else str(value)


def _error(r) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text
    return body.get("error", "") if isinstance(body, dict) else ""


class Walk:
    def __init__(self, stack, ids: dict):
        self.stack, self.ids = stack, ids
        self.token = login(stack, make_admin(stack)).json()["accessToken"]
        self.leaving = make_admin(stack)  # the admin whose sessions the logouts end

    def send(self, method: str, path: str, op: dict, where: str, values: dict):
        headers = {"X-User-Id": "walker", "Origin": self.stack.base, **bearer(self.fresh(op))}
        kw: dict = {}
        if where == "query":
            kw["params"] = {k: _wire(v) for k, v in values.items()}
        elif where == "multipart/form-data":
            kw["files"] = {"file": ("walk.png", img(24, 16), "image/png"),
                           **{k: (None, _wire(v)) for k, v in values.items()}}
            kw["params"] = baseline(self.query_schema(op), self.ids) if self.query_schema(op) else None
        else:
            kw["json"] = values
        return self.stack.api(method.upper(), path, headers=headers, **kw)

    def fresh(self, op: dict) -> str:
        """The admin's access token; a new one for a logout, which ends the session it names."""
        if op["operationId"] == "adminLogout":
            return login(self.stack, self.leaving).json()["accessToken"]
        return self.token

    @staticmethod
    def query_schema(op: dict) -> dict | None:
        params = [p for p in op.get("parameters", []) if p["in"] == "query"]
        if not params:
            return None
        return {"properties": {p["name"]: p["schema"] for p in params},
                "required": [p["name"] for p in params if p["required"]]}


def _body(op: dict, components: dict) -> tuple[str, dict] | None:
    content = op.get("requestBody", {}).get("content", {})
    for ctype in ("application/json", "multipart/form-data"):
        if ctype in content:
            ref = content[ctype]["schema"].get("$ref")
            if ref:
                return ctype, components[ref.rsplit("/", 1)[1]]
    return None


def _operations(doc: dict):
    ops = [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()
           if method in ("get", "post", "put", "patch", "delete")]
    order = {"get": 0, "post": 1, "put": 1, "patch": 2, "delete": 3}
    # what deletes, last, what deletes the path's own record after that; the logins after all
    return sorted(ops, key=lambda o: (o[0].endswith(LAST), order[o[1]], o[1] == "delete" and o[0].endswith("}"),
                                      o[0]))


def test_every_bounded_field_of_the_document_is_checked_by_its_handler(stack):
    doc = fragment()
    components = doc["components"]["schemas"]
    ids = _records(stack)
    ids["client_id"] = str(stack.api("GET", f"{V2}/status").json()["client"]["id"])
    walk = Walk(stack, ids)
    probed, skipped, failures = 0, set(), []
    for template, method, op in _operations(doc):
        if (method, template) in NOT_DECODED:
            skipped.add((method, template))
            continue
        path = PARAM.sub(lambda m: ids[m.group(1)], template)
        parts = []
        query = Walk.query_schema(op)
        body = _body(op, components)
        if query is not None:
            parts.append(("query", query))
        if body is not None:
            parts.append(body)
        for where, schema in parts:
            base = baseline(schema, ids)
            for name, prop in schema["properties"].items():
                if name == "file":
                    continue
                for bound, bad, good in probes(prop):
                    if where == "query" and max(len(_wire(bad)), len(_wire(good))) > QUERY_MAX:
                        continue
                    signed = (method, template) in SIGNATURE
                    r = walk.send(method, path, op, where, {**base, name: bad})
                    error = _error(r)
                    if not (r.status_code == 403 and "malformed" in error if signed else
                            r.status_code == 400 and error.startswith(f"{name} ")):
                        failures.append(("outside", method, template, name, bound, r.status_code, error[:200]))
                    r = walk.send(method, path, op, where, {**base, name: _valid(name, good)})
                    error = _error(r)
                    if r.status_code == 403 and "malformed" in error if signed else \
                            r.status_code == 400 and error.startswith(f"{name} "):
                        failures.append(("inside", method, template, name, bound, r.status_code, error[:200]))
                    probed += 1
    assert not failures, "\n".join(map(str, failures))
    assert skipped == set(NOT_DECODED)
    assert probed >= 150, probed


def test_the_walk_fails_a_handler_that_checks_other_bounds():
    """The probes find a bound the document does not hold (the walk can fail): a field declared
    1..100 yields 0 and 101 outside, 1 and 100 inside."""
    prop = msgspec.json.schema_components([S.PageQuery])[1]["PageQuery"]["properties"]["limit"]
    assert [(b, bad, good) for b, bad, good in probes(prop)] == [
        ("minimum", 0, 1), ("maximum", 101, 100), ("type", "many", 1)]


# -- the decoding rules shared by every dialect ---------------------------------------------------

def refused(values: dict, schema, **kw) -> str:
    with pytest.raises(BadRequest) as exc:
        common.decode(values, schema, **kw)
    return str(exc.value)


def test_query_strings_take_strings_as_they_always_did():
    q = common.decode({"limit": [" 05 ", "7"], "offset": "", "sort": "size", "order": "ASC"}, S.ListQuery,
                      strings=True, repeated=True)
    assert (q.limit, q.offset, q.sort, q.order) == (7, 0, "size", "ASC")  # the last of repeated values
    for bad in ("5.0", "+5", "0x10", "1e1", "٥", "5_000", "1" * 19):
        assert refused({"limit": bad}, S.ListQuery, strings=True) == "limit must be an integer", bad
    assert refused({"limit": "0"}, S.ListQuery, strings=True) == "limit must be 1..100"
    assert common.decode({"info": "TRUE", "thumb": "0"}, S.ImageQuery, strings=True).info is True
    assert refused({"info": "yes"}, S.ImageQuery, strings=True) == "info must be true or false"
    assert common.decode({"ids": ["a", "b"]}, S.BatchRequest, strings=True, repeated=True).ids == ["a", "b"]


def test_json_types_are_never_loosened():
    # a number or boolean as a string is taken where the old readers took it; JSON's own 0/1,
    # null or a list is not a boolean or a number
    assert common.decode({"isPrivate": "true"}, S.MediaPatch, strings=True).is_private is True
    for bad in (1, 0, None, [True]):
        assert refused({"isPrivate": bad}, S.MediaPatch, strings=True) == "isPrivate must be true or false", bad
        assert "isPublic" in refused({"isPublic": bad}, S.AlbumInput), bad
    for bad in (None, True, [5], 5.5):
        assert refused({"expiresIn": bad}, S.ShareRequest, strings=True) == "expiresIn must be an integer", bad
    assert common.decode({"expiresIn": "60"}, S.ShareRequest, strings=True).expires_in == 60
    assert refused({"expiresIn": "60"}, S.ShareRequest) == "expiresIn must be an integer"  # strict JSON
    # a text field the /api/v1 API always took null for says so (null: not given; a PATCH's: cleared)
    assert common.decode({"filename": "a.png", "mimeType": None}, S.PresignRequest, strings=True).mime_type is None
    assert common.decode({"alt": None}, S.MediaPatch, strings=True).alt is None
    assert refused({"filename": None}, S.PresignRequest, strings=True) == "filename must be a string"
    # a boolean as a string is turned into the boolean, or refused; never kept as a string
    assert common.decode({"isPrivate": " TRUE "}, S.MediaPatch, strings=True).is_private is True
    assert refused({"isPrivate": "  "}, S.MediaPatch, strings=True) == "isPrivate must be true or false"


def test_refusals_name_the_field_in_words():
    assert refused({"width": 1}, S.CropRequest, strings=True) == "height is required"
    assert refused({"width": 1, "height": 1, "id": "x", "rotate": "45"}, S.CropRequest, strings=True) \
        == "rotate must be one of 0, 90, 180, 270"
    assert refused({"width": 1, "height": 1, "id": "x", "scale": "nan"}, S.CropRequest, strings=True) \
        == "scale must be a number 0.01..4.0"
    assert refused({"width": 1, "height": 1}, S.CropRequest, strings=True) == "objectKey is required (or id)"
    assert refused({"alt": "a\x00b"}, S.MediaPatch) == "alt must not contain a NUL character"
    assert refused({"search": "a\x1b"}, S.ListQuery, strings=True) == "search must not contain control characters"
    assert refused({"filename": ""}, S.PresignRequest, strings=True) == "filename is required"
    assert refused({"filename": "a" * 256}, S.PresignRequest) == "filename is longer than 255 characters"
    assert refused({"imageIds": []}, S.ImageIds) == "imageIds must be a list of 1 to 1000 strings"
    assert refused({"ids": ",,"}, S.BatchRequest, strings=True) == "ids must name 1 to 100 ids"
    # a closed schema lists every unknown field, sorted, in its own words
    assert refused({"alt": "x", "size": 1, "bucket": "b"}, S.MediaPatch) \
        == "cannot change bucket, size (only alt, caption, description, isPrivate)"
    assert refused({"name": "n", "slug": "s", "id": 1}, S.ClientPatch) \
        == "unknown field(s): id, slug (a client's slug never changes)"


def test_the_list_sorts_are_the_repository_s():
    assert set(msgspec.json.schema(S.ListQuery)["$defs"]["ListQuery"]["properties"]["sort"]["enum"]) == {*SORTS, ""}


def test_a_form_is_read_without_its_file_part():
    f = common.form({"isPrivate": "", "tags[]": ["a", "b"], "description": ""}, S.ImageForm)
    assert (f.is_private, f.tags_list, f.description) == (False, ["a", "b"], "")
    q = common.decode({"ids": "a", "w": "1", "h": "1", "fit": ["inside", ""]}, S.ThumbnailsQuery, strings=True,
                      repeated=True)
    assert q.fit == "cover"  # the last value, empty: the default


def test_a_login_body_is_its_schema(stack):
    r = stack.api("POST", f"{V2}/admin/auth/login", key=None, json={"email": make_admin(stack), "password": PASSWORD,
                                                                  "deviceToken": "x" * 201})
    assert r.status_code == 400 and r.json() == {"error": "deviceToken is longer than 200 characters"}

"""The library's OpenAPI fragment, generated: the route tables of the dialects (each module's
``ROUTES``, the templates Falcon serves), each responder's declared operation (``operations.py``:
summary, parameters, body, answers, errors) and the schemas (``schemas.py``, through
``msgspec.json.schema_components``). Who may call a responder is not declared here: it is the
resource's own ``auth`` (``common.requirement``), which the middleware enforces, so the document
cannot say one thing while the server does another.

``operations.fragment(prefix, portal)`` is merged by ``mediaproxy.openapi.build`` for the library modes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import msgspec

from ...settings import LIBRARY_MODES
from .common import ADMIN, KEY, KEY_USER, PUBLIC, TOKEN, requirement
from .schemas import Error

METHODS = ("get", "put", "post", "patch", "delete")  # HEAD is derived from GET
BINARY = "binary"  # a reply's bytes (an image, a stored file)

# the descriptions every dialect shares
SLOW = ("the body arrived under MEDIAPROXY_BODY_MIN_RATE after the grace, or was not complete after "
        "MEDIAPROXY_BODY_TIMEOUT; Connection: close, nothing stored")
BUSY = ("MEDIAPROXY_UPLOADS_PER_CLIENT uploads of this client (of this address, for an upload URL) are already "
        "arriving; see Retry-After; nothing read")
SMALL_BODY = "a JSON or form body over MEDIAPROXY_SMALL_BODY_MAX (64 KiB); not read, Connection: close"

SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
               "description": "an organization's API key: `mediaproxy keys create --org SLUG`"},
    "BearerKey": {"type": "http", "scheme": "bearer",
                  "description": "the same API key as `Authorization: Bearer KEY` (the /api/v1 and /media APIs)"},
    "AdminJWT": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                 "description": "an admin's access token, from {prefix}/admin/auth/login"},
}


@dataclass(frozen=True)
class Dialect:
    tag: str
    description: str
    errors: dict[int, str]  # the default description of each error status


@dataclass(frozen=True)
class Reply:
    """A success: its description and its content by media type (a Struct, ``BINARY`` or a raw schema)."""

    description: str
    content: dict = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # name → description


def json(schema: type[msgspec.Struct], description: str) -> Reply:
    return Reply(description, {"application/json": schema})


@dataclass(frozen=True)
class Op:
    summary: str
    id: str
    replies: dict[int, Reply]
    errors: tuple = ()  # a status (the dialect's description) or (status, description)
    description: str | None = None
    query: type[msgspec.Struct] | None = None
    body: type[msgspec.Struct] | dict | None = None  # a Struct, or a raw schema (a binary body)
    body_type: str = "application/json"
    body_required: bool | None = None  # default: a form or a file is; a JSON body is not (absent reads as {})
    path: dict[str, str] = field(default_factory=dict)  # path parameter → description
    user: str | None = None  # X-User-Id: "required" (implied by KEY_USER) or "optional"
    key_optional: bool = False  # a PUBLIC responder that takes a key (GET /v2/images/{id}?info)
    headers: tuple[tuple[str, str], ...] = ()  # other request headers: (name, description)


def _falcon_to_openapi(template: str) -> tuple[str, list[str]]:
    names = re.findall(r"\{(\w+)(?::\w+)?\}", template)
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", template), names


class Generator:
    def __init__(self):
        self.structs: set[type] = set()
        self.schemes: set[str] = set()

    def ref(self, schema) -> dict:
        if schema == BINARY:
            return {"type": "string", "format": "binary"}
        if isinstance(schema, dict):
            return schema
        self.structs.add(schema)
        return {"$ref": f"#/components/schemas/{schema.__name__}"}

    def parameters(self, query: type[msgspec.Struct]) -> list[dict]:
        _, comps = msgspec.json.schema_components([query], ref_template="#/components/schemas/{name}")
        s = comps[query.__name__]
        out = []
        for name, prop in s["properties"].items():
            prop = dict(prop)
            p = {"name": name, "in": "query", "required": name in s.get("required", ())}
            if "description" in prop:
                p["description"] = prop.pop("description")
            p["schema"] = prop
            out.append(p)
        return out

    def security(self, resource: type, method: str, op: Op) -> tuple[list, str]:
        need = requirement(resource, method.upper()) if hasattr(resource, "auth") else PUBLIC
        if need in (PUBLIC, TOKEN):
            if op.key_optional:
                self.schemes.add("ApiKey")
                return [{}, {"ApiKey": []}], need
            return [], need
        if need in (KEY, KEY_USER):
            self.schemes.add("ApiKey")
            sec = [{"ApiKey": []}]
            if getattr(resource, "bearer_keys", False):
                self.schemes.add("BearerKey")
                sec.append({"BearerKey": []})
            return sec, need
        assert need == ADMIN, need
        self.schemes.add("AdminJWT")
        return [{"AdminJWT": []}], need

    def operation(self, dialect: Dialect, resource: type, method: str, op: Op, params: list[str]) -> dict:
        security, need = self.security(resource, method, op)
        json_errors = getattr(resource, "json_errors", False) and hasattr(resource, "auth")
        out: dict = {"summary": op.summary}
        if op.description:
            out["description"] = op.description
        out.update({"operationId": op.id, "tags": [dialect.tag], "security": security})
        parameters = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"},
                       **({"description": op.path[n]} if n in op.path else {})} for n in params]
        user = "required" if need == KEY_USER else op.user
        if user:
            parameters.append({"name": "X-User-Id", "in": "header", "required": user == "required",
                               "description": "the end user (printable, at most 255 characters)",
                               "schema": {"type": "string", "maxLength": 255}})
        for name, description in op.headers:
            parameters.append({"name": name, "in": "header", "required": False, "description": description,
                               "schema": {"type": "string"}})
        if op.query is not None:
            parameters.extend(self.parameters(op.query))
        if parameters:
            out["parameters"] = parameters
        if op.body is not None:
            required = op.body_type != "application/json" if op.body_required is None else op.body_required
            out["requestBody"] = {"required": required,
                                  "content": {op.body_type: {"schema": self.ref(op.body)}}}
        responses: dict = {}
        for status, reply in op.replies.items():
            r: dict = {"description": reply.description}
            if reply.headers:
                r["headers"] = {h: {"description": d, "schema": {"type": "string"}} for h, d in reply.headers.items()}
            if reply.content:
                r["content"] = {t: {"schema": self.ref(s)} for t, s in reply.content.items()}
            responses[str(status)] = r
        errors = [e if isinstance(e, tuple) else (e, None) for e in op.errors]
        if need in (KEY, KEY_USER, ADMIN) and 401 not in dict(errors):
            errors.append((401, None))
        if need == KEY_USER and 400 not in dict(errors):
            errors.append((400, None))
        if op.query is not None and 414 not in dict(errors):  # a query string can be made long enough
            errors.append((414, "a request line over the server's limit (gunicorn's limit_request_line); plain text"))
        for status, description in sorted(errors):
            r = {"description": description or dialect.errors[status]}
            if json_errors and status != 414:  # gunicorn's own answer
                r["content"] = {"application/json": {"schema": self.ref(Error)}}
            responses[str(status)] = r
        out["responses"] = responses
        return out

    @staticmethod
    def head(get: dict) -> dict:
        out = {**get, "summary": get["summary"] + " (headers only)", "operationId": get["operationId"] + "Head"}
        out.pop("requestBody", None)
        out["responses"] = {s: {k: v for k, v in r.items() if k != "content"} for s, r in get["responses"].items()}
        return out

    def paths(self, table: list[tuple[str, type, Dialect]], operations: dict) -> dict:
        paths: dict = {}
        for template, resource, dialect in table:
            path, params = _falcon_to_openapi(template)
            item: dict = {}
            for method in METHODS:
                if getattr(resource, f"on_{method}", None) is None:
                    continue
                op = operations.get((resource, method))
                if op is None:
                    raise LookupError(f"{resource.__module__}.{resource.__qualname__}.on_{method} ({template}) "
                                      "declares no operation")
                item[method] = self.operation(dialect, resource, method, op, params)
                if (path + "/") in paths and method in paths[path + "/"]:  # one resource on both
                    item[method]["operationId"] += "NoSlash"
                    item[method]["summary"] += " (the same, without the trailing slash)"
                if method == "get" and getattr(resource, "on_head", None) is not None:
                    item["head"] = self.head(item["get"])
            if path != template:
                item["x-falcon-route"] = template
            if path in paths:
                raise ValueError(f"{path} is routed twice")
            paths[path] = item
        return paths

    def fragment(self, table: list[tuple[str, type, Dialect]], operations: dict, dialects: list[Dialect],
                 prefix: str) -> dict:
        paths = self.paths(table, operations)
        components = self.components()
        if "AdminJWT" in components["securitySchemes"]:
            admin = components["securitySchemes"]["AdminJWT"]
            admin["description"] = admin["description"].replace("{prefix}", prefix)
        return {"x-modes": list(LIBRARY_MODES), "paths": paths, "components": components,
                "tags": [{"name": d.tag, "description": d.description} for d in dialects]}

    def components(self) -> dict:
        _, schemas = msgspec.json.schema_components(sorted(self.structs, key=lambda s: s.__name__),
                                                    ref_template="#/components/schemas/{name}")
        for s in schemas.values():  # a form's file part is bytes on the wire, not base64
            for prop in s.get("properties", {}).values():
                if prop.get("format") == "binary":
                    prop.pop("contentEncoding", None)
        return {"schemas": schemas, "securitySchemes": {k: dict(SECURITY_SCHEMES[k]) for k in sorted(self.schemes)}}

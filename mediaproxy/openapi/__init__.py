"""The OpenAPI 3.1 document, assembled from fragments so route groups plug in on their own.

``base.json`` holds ``openapi``, ``info``, the routes every mode serves and the
shared components. Every other ``*.json`` here is a fragment of one route
group::

    {"x-modes": ["media", "all"], "paths": {...}, "components": {...}, "tags": [...]}

The library's fragment is not written by hand: it is generated from its route
tables, declared operations and msgspec schemas (``library/api/operations.py``),
for the API prefix and portal path the server runs with.

``build(mode)`` merges the base with the fragments whose ``x-modes`` include
the running mode (``MEDIAPROXY_MODE``), in file-name order, then the library's. The library's is
generated, and its modules imported, only for the modes that serve it: a media-only worker never
loads SQLAlchemy, huey or the multipart parser for its document. Two fragments may
share a component only if they define it identically; a path may be defined
once. A path whose Falcon template differs from its OpenAPI form (a
``{rest:path}`` catch-all) names the template in ``x-falcon-route``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import orjson

from ..settings import LIBRARY_MODES

HERE = Path(__file__).resolve().parent


class FragmentError(ValueError):
    """Two fragments disagree (a path defined twice, a component defined differently)."""


def fragments(directory: Path = HERE) -> list[tuple[str, dict]]:
    return [(p.name, orjson.loads(p.read_bytes())) for p in sorted(directory.glob("*.json")) if p.name != "base.json"]


def build(mode: str, directory: Path = HERE, api_prefix: str = "/v2", portal_path: str = "/admin") -> dict:
    doc = orjson.loads((directory / "base.json").read_bytes())
    doc.setdefault("paths", {})
    doc.setdefault("components", {})
    doc.setdefault("tags", [])
    for name, frag in fragments(directory):
        if mode in frag.get("x-modes", ()):
            merge(doc, name, frag)
    if mode in LIBRARY_MODES:
        from ..library.api.operations import fragment as library_fragment

        merge(doc, "the library", library_fragment(api_prefix, portal_path))
    from .. import __version__

    doc["info"]["version"] = __version__
    doc["info"]["x-mode"] = mode
    return doc


def merge(doc: dict, name: str, frag: dict) -> None:
    components, tags = doc["components"], doc["tags"]
    for path, item in frag.get("paths", {}).items():
        if path in doc["paths"]:
            raise FragmentError(f"{name}: path {path} is already defined")
        doc["paths"][path] = item
    for section, entries in frag.get("components", {}).items():
        target = components.setdefault(section, {})
        for key, value in entries.items():
            if key in target and target[key] != value:
                raise FragmentError(f"{name}: components.{section}.{key} differs from an earlier definition")
            target[key] = value
    known = {t["name"] for t in tags}
    tags.extend(copy.deepcopy(t) for t in frag.get("tags", ()) if t["name"] not in known)

"""The /v2 image service's prefix is a setting: the routes served and the OpenAPI document follow it."""

from __future__ import annotations

import re

from mediaproxy.app import create_app
from mediaproxy.openapi import build
from mediaproxy.settings import Settings


def _served(app) -> set[tuple[str, str]]:
    while not hasattr(app, "_router"):
        app = app.app
    found = set()

    def walk(nodes):
        for node in nodes:
            if node.resource is not None:
                for method, responder in node.method_map.items():
                    if getattr(responder, "__name__", "") != "method_not_allowed" and method not in ("OPTIONS", "HEAD"):
                        found.add((method, re.sub(r"\{\w+(:\w+)?\}", "{}", node.uri_template)))
            walk(node.children)

    walk(app._router._roots)
    return found


# Route coverage of /v2 (every route documented, HEAD included, nothing else): tests/test_openapi.py.


def test_the_prefix_is_a_setting(tmp_path):
    settings = Settings.from_env({"MEDIAPROXY_SECRET_KEY": "x", "MEDIAPROXY_MODE": "library",
                                  "MEDIAPROXY_STORAGE": str(tmp_path / "s"),
                                  "MEDIAPROXY_CACHE_DIR": str(tmp_path / "c"), "MEDIAPROXY_API_PREFIX": "/api/img/",
                                  "MEDIAPROXY_DATABASE_URL": f"sqlite:///{tmp_path}/l.db",
                                  "MEDIAPROXY_QUEUE_URL": f"sqlite:///{tmp_path}/q.db", "MEDIAPROXY_FAST_PATH": "0"})
    served = _served(create_app(settings))
    assert ("GET", "/api/img/images/{}") in served and ("POST", "/api/img/admin/auth/login") in served
    assert not any(t.startswith("/v2/") for _, t in served)
    doc = build("library", api_prefix="/api/img")
    documented = {(m.upper(), re.sub(r"\{\w+(:\w+)?\}", "{}", item.get("x-falcon-route", p)))
                  for p, item in doc["paths"].items() for m in item if m in ("get", "post", "patch", "delete", "put")}
    api = "/api/img/"
    assert {r for r in served if r[1].startswith(api)} == {r for r in documented if r[1].startswith(api)}

"""Authentication is a declared property of every library resource (library/api/common.py:
``auth``, enforced by LibraryMiddleware), proved over real HTTP by walking the app's own route
table: every responder declares its level, every non-public one answers 401 without credentials,
and every one that names a record in its path answers 404 to another organization's key."""

from __future__ import annotations

import re
import time

import falcon.inspect
import pytest

from mediaproxy.app import create_falcon_app
from mediaproxy.context import Context
from mediaproxy.library.api import admin, common, media, v1, v2
from mediaproxy.portal import api as portal_api
from mediaproxy.portal import web as portal_web
from mediaproxy.routes import library as public
from mediaproxy.settings import Settings

from .conftest import start_library
from .test_library_v2 import V2, img

MODULES = (v1, media, v2, admin, public, portal_api, portal_web)
# the only responders anyone may call without an API key or an admin token (a share token or a
# signed URL is the credential of some): a route declared public by mistake fails the walk
OPEN = {
    ("GET", "/healthz"),
    ("GET", "/api/v1/media/signed/{bucket}/{key:path}"), ("HEAD", "/api/v1/media/signed/{bucket}/{key:path}"),
    ("PUT", "/api/v1/media/signed/{bucket}/{key:path}"),
    ("GET", "/v2/images/{image_id}"), ("HEAD", "/v2/images/{image_id}"),
    ("GET", "/v2/images/share/{token}"), ("HEAD", "/v2/images/share/{token}"),
    ("POST", "/v2/admin/auth/login"), ("POST", "/v2/admin/auth/refresh"),
    ("GET", "/library/{key:path}"), ("HEAD", "/library/{key:path}"),
    ("GET", "/sha256/{sha}"), ("HEAD", "/sha256/{sha}"),
    # the admin portal: its login, and its cookie session and signed image URLs (TOKEN)
    ("POST", "/admin/session"), ("POST", "/admin/session/refresh"), ("POST", "/admin/session/logout"),
    ("GET", "/admin/media/{image_id}"), ("HEAD", "/admin/media/{image_id}"),
}
PARAM = re.compile(r"\{([a-z_]+)(?::path)?\}")


@pytest.fixture(scope="module")
def stack(request, make_server, tmp_path_factory):
    s = start_library(request, make_server, tmp_path_factory, "local")
    yield s
    s.stop()


def _resource_class(name: str) -> type:
    for module in MODULES:
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            return cls
    raise AssertionError(f"the route's resource {name} is not a library resource")


def _library_routes(env: dict) -> list[tuple[str, type, list[str]]]:
    """(path template, resource class, responder methods) of every library route of MODE=all."""
    app = create_falcon_app(Settings.from_env(env), Context.build(Settings.from_env(env)))
    out = []
    for route in falcon.inspect.inspect_app(app).routes:
        methods = [m.method for m in route.methods if not m.internal]
        source = route.source_info.rsplit(":", 1)[0]  # two modules may name a class alike
        cls = next((c for m in MODULES if isinstance(c := getattr(m, route.class_name, None), type)
                    and m.__file__ == source), None)
        if cls is None or not issubclass(cls, (common.Resource, public.PublicObject, public.ContentAddressed)):
            continue  # the origin's routes, /_health and telemetry: not the library's
        out.append((route.path, cls, methods))
    return out


def _records(stack) -> dict:
    """One of each record of the first organization, to name in the paths."""
    r = stack.upload(img(), filename="walk.png")
    assert r.status_code == 201, r.text
    m = r.json()
    r = stack.upload(img(), filename="walk-async.png", **{"async": True})
    assert r.status_code == 202, r.text
    job = r.json()["jobId"]
    r = stack.api("POST", f"{V2}/images", headers={"X-User-Id": "walker"},
                  files={"file": ("w.png", img(), "image/png")})
    assert r.status_code == 201, r.text
    image = r.json()["id"]
    r = stack.api("POST", f"{V2}/albums", headers={"X-User-Id": "walker"}, json={"name": "walk"})
    assert r.status_code == 201, r.text
    album = r.json()["id"]
    user = f"walker-{time.monotonic_ns()}"
    r = stack.api("POST", f"{V2}/avatars", files={"file": ("me.png", img(), "image/png"),
                                                  "externalUserId": (None, user)})
    assert r.status_code == 201, r.text
    variant = m["variants"][0] if m["variants"] else None
    return {"media_id": m["id"], "image_id": image, "album_id": album, "user": user, "job_id": job,
            "token": "t" * 43, "bucket": m["bucket"], "key": m["objectKey"],
            "folder": m["objectKey"].rsplit("/", 1)[0], "name": variant["name"] if variant else "small",
            "client_id": "1", "avatar_id": "1", "token_id": "1", "sha": "0" * 64}


def test_every_library_route_declares_and_enforces_its_authentication(stack):
    routes = _library_routes(stack.env)
    assert len(routes) >= 40, [p for p, _, _ in routes]  # the four APIs and the public URLs
    ids = _records(stack)
    checked_401 = checked_404 = 0
    opened = set()
    for template, cls, methods in routes:
        path = PARAM.sub(lambda m: ids[m.group(1)], template)
        named = PARAM.search(template) is not None
        for method in methods:
            need = common.requirement(cls, method)  # TypeError: a responder without a declaration
            if need in (common.PUBLIC, common.TOKEN):
                opened.add((method, template))
                continue
            r = stack.api(method, path, key=None)
            assert r.status_code == 401, (method, template, r.status_code, r.text)
            assert r.headers["Content-Type"].startswith("application/json")
            assert method == "HEAD" or "error" in r.json()
            checked_401 += 1
            if need == common.ADMIN or not named:
                continue  # an admin belongs to no organization; a collection is the caller's own
            headers = {"X-User-Id": "walker"} if need == common.KEY_USER else {}
            r = stack.api(method, path, key=stack.other_key, headers=headers)
            assert r.status_code == 404, (method, template, r.status_code, r.text)
            checked_404 += 1
    assert opened == OPEN
    assert checked_401 >= 40 and checked_404 >= 15, (checked_401, checked_404)


def test_an_undeclared_responder_is_refused_at_the_first_request():
    class Undeclared(common.Resource):
        auth = None

        def on_get(self, req, resp):  # pragma: no cover - never reached
            pass

    with pytest.raises(TypeError):
        common.requirement(Undeclared(None), "GET")
    assert common.requirement(Undeclared(None), "POST") is None  # no responder: Falcon's 405
    assert common.requirement(v2.Image(None, type("Api", (), {"gallery": None})()), "HEAD") == common.PUBLIC

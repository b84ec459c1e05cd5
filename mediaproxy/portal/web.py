"""The portal's pages, its cookie session and its signed images (docs/portal.md).

Pages: ``{portal}/`` is ``index.html`` (the API's prefix and the portal's path in ``<meta>``:
no inline script), ``{portal}/static/{name}`` the modules and the style sheet, read once at
start-up, sent with a strict Content-Security-Policy (``'self'`` only, no inline script or
style, ``frame-ancestors 'none'``), ``nosniff`` and ``Referrer-Policy: no-referrer``.

Session: the access token lives in the page's memory only; the refresh token in the cookie
``mediaproxy_portal_refresh`` (``HttpOnly``, ``SameSite=Strict``, ``Secure`` unless the host is a
loopback address, scoped to ``{portal}/session``), which the page cannot read. Every request that
uses it (``refresh``, ``logout``) or sets it (``session``: the login) must come from the portal's
own origin (``Origin`` and, when sent, ``Sec-Fetch-Site``) and, except the login, carry
``X-CSRF-Token``: an HMAC of the refresh token under a key of its own, handed to the page in the
readable cookie ``mediaproxy_portal_csrf`` (path ``{portal}/``) and in the answer. Anything else
is ``403`` before the cookie's session is touched. The login is the admin API's own (same
throttle, same device cookie, here on ``{portal}/session``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from pathlib import Path
from urllib.parse import urlsplit

import falcon
import orjson
from sqlalchemy import select

from ..errors import Forbidden, NotFound, Unauthorized
from ..library import auth
from ..library.api import schemas as S
from ..library.api.admin import AdminResource, Login
from ..library.api.common import TOKEN, json_body, query, send_json
from ..library.models import Admin, RefreshToken, now
from ..media.spec import TransformSpec
from . import signed

STATIC = Path(__file__).resolve().parent / "static"
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
REFRESH_COOKIE = "mediaproxy_portal_refresh"
CSRF_COOKIE = "mediaproxy_portal_csrf"
CSRF_HEADER = "X-CSRF-Token"


def page_headers(resp: falcon.Response) -> None:
    resp.set_header("Content-Security-Policy", CSP)
    resp.set_header("X-Content-Type-Options", "nosniff")
    resp.set_header("Referrer-Policy", "no-referrer")
    resp.set_header("X-Frame-Options", "DENY")
    resp.set_header("Cross-Origin-Opener-Policy", "same-origin")
    resp.set_header("Cross-Origin-Resource-Policy", "same-origin")


def loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def csrf_token(secret: str, refresh: str) -> str:
    key = hmac.new(secret.encode(), b"mediaproxy portal csrf", hashlib.sha256).digest()
    return hmac.new(key, refresh.encode(), hashlib.sha256).hexdigest()


class Files:
    """The portal's static files, read once; ``index.html`` with the deployment's paths filled in."""

    def __init__(self, api_prefix: str, portal: str):
        self.files: dict[str, tuple[bytes, str, str]] = {}
        for p in sorted(STATIC.rglob("*")):
            if p.is_file() and p.suffix in TYPES:
                data = p.read_bytes()
                if p.name == "index.html":
                    data = (data.replace(b"{{API}}", _attr(api_prefix))
                            .replace(b"{{PORTAL}}", _attr(portal)))
                name = p.relative_to(STATIC).as_posix()
                self.files[name] = (data, TYPES[p.suffix], '"' + hashlib.sha256(data).hexdigest()[:32] + '"')

    def send(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        found = self.files.get(name)
        if found is None:
            raise NotFound("no such file")
        data, ctype, etag = found
        page_headers(resp)
        resp.set_header("Cache-Control", "no-cache")  # revalidated: a release's files replace the old at once
        resp.set_header("ETag", etag)
        if etag in (req.get_header("If-None-Match") or ""):
            resp.status = falcon.HTTP_304
            return
        resp.content_type = ctype
        resp.data = data if req.method != "HEAD" else b""
        if req.method == "HEAD":
            resp.content_length = len(data)


def _attr(value: str) -> bytes:
    return (value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")).encode()


class Index:
    def __init__(self, files: Files, portal: str):
        self.files, self.portal = files, portal

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not req.path.endswith("/"):
            raise falcon.HTTPMovedPermanently(self.portal + "/")
        self.files.send(req, resp, "index.html")

    on_head = on_get


class Static:
    def __init__(self, files: Files):
        self.files = files

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self.files.send(req, resp, name)

    on_head = on_get


class _Session(AdminResource):
    """The cookie session's routes: same-origin only; ``csrf`` says whether ``X-CSRF-Token`` is needed."""
    auth = TOKEN  # the session cookie's refresh token, checked by the responder

    csrf = True

    def same_origin(self, req: falcon.Request) -> None:
        origin = req.get_header("Origin")
        site = req.get_header("Sec-Fetch-Site")
        own = {req.netloc.lower()}
        if self.library.settings.public_base_url:
            own.add(urlsplit(self.library.settings.public_base_url).netloc.lower())
        if not origin or origin == "null" or urlsplit(origin).netloc.lower() not in own:
            raise Forbidden("a request of the portal's session must come from the portal's own origin")
        if site is not None and site not in ("same-origin", "none"):
            raise Forbidden("a request of the portal's session must come from the portal's own origin")

    def checked_refresh(self, req: falcon.Request) -> str | None:
        """The refresh cookie, after the origin and the CSRF token are checked (403 otherwise)."""
        self.same_origin(req)
        refresh = req.cookies.get(REFRESH_COOKIE)
        sent = req.get_header(CSRF_HEADER) or ""
        if not refresh or len(refresh) > 256:
            return None  # no session to act on: nothing a forged request could change
        expected = csrf_token(self.library.ctx.settings.secret_key, refresh)
        if not hmac.compare_digest(expected.encode(), sent.encode()):
            raise Forbidden("missing or wrong X-CSRF-Token")
        return refresh

    def secure(self, req: falcon.Request) -> bool:
        return not (req.scheme == "http" and loopback(req.host))

    def set_session(self, req: falcon.Request, resp: falcon.Response, out: dict) -> None:
        """Move the refresh token of a login or refresh answer into the cookie."""
        refresh = out.pop("refreshToken")
        csrf = csrf_token(self.library.ctx.settings.secret_key, refresh)
        portal = self.library.settings.portal_path
        resp.set_cookie(REFRESH_COOKIE, refresh, max_age=out["refreshExpiresIn"], path=f"{portal}/session",
                        secure=self.secure(req), http_only=True, same_site="Strict")
        resp.set_cookie(CSRF_COOKIE, csrf, max_age=out["refreshExpiresIn"], path=f"{portal}/",
                        secure=self.secure(req), http_only=False, same_site="Strict")
        out["csrfToken"] = csrf
        send_json(resp, out)

    def clear(self, req: falcon.Request, resp: falcon.Response) -> None:
        portal = self.library.settings.portal_path
        for name, path in ((REFRESH_COOKIE, f"{portal}/session"), (CSRF_COOKIE, f"{portal}/")):
            resp.set_cookie(name, "", max_age=0, path=path, secure=self.secure(req),
                            http_only=name == REFRESH_COOKIE, same_site="Strict")


class SessionLogin(_Session, Login):
    """``POST {portal}/session`` ``{email, password}``: the admin API's login (its throttle, its
    device cookie), its refresh token set as the cookie instead of answered."""

    request = S.SessionRequest

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.same_origin(req)
        Login.on_post(self, req, resp)
        self.set_session(req, resp, orjson.loads(resp.data))


class SessionRefresh(_Session):
    """``POST {portal}/session/refresh``: the cookie's refresh token rotated (as the admin API's
    refresh), a new access token answered."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        refresh = self.checked_refresh(req)
        try:
            if refresh is None:
                raise Unauthorized("not signed in")
            a, new, session_id = auth.rotate_refresh(req.context.db, refresh)
        except Unauthorized:
            self.clear(req, resp)  # the error's answer keeps these cookies: the page is signed out
            raise
        self.set_session(req, resp, self.tokens(req, a, (new, session_id)))


class SessionLogout(_Session):
    """``POST {portal}/session/logout`` ``{everywhere}``: the cookie's session ends (as the admin
    API's logout with that refresh token), or every session of its admin; the cookies are cleared."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        refresh = self.checked_refresh(req)
        everywhere = json_body(req, S.SessionLogoutRequest, strings=True).everywhere
        s = req.context.db
        row = s.scalar(select(RefreshToken).where(RefreshToken.digest == auth.digest(refresh))) if refresh else None
        if row is not None and row.revoked_at is None and row.expires_at > now():
            if everywhere and row.used_at is None:
                auth.end_every_session(s, s.get(Admin, row.admin_id))
            else:
                # a used token is a copy (the page holds the newest): its family ends, as a refresh
                # with it would end it, and never every session, which a stale copy must not reach
                auth.revoke_family(s, row.family)
        self.clear(req, resp)
        resp.status = falcon.HTTP_204


class SignedMedia(AdminResource):
    """``GET {portal}/media/{id}?w=&h=&fit=&e=&s=``: one image at one size, for a valid signature
    until ``e`` (``signed.py``); through the origin's pipeline and result cache, as ``/v2/images``
    serves it. A wrong or expired signature is ``403``; an image that is gone, ``404``."""

    json_errors = False
    auth = TOKEN  # the URL's signature

    def on_get(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        q = query(req, S.SignedMediaQuery)
        w, h, fit, e = q.w, q.h, q.fit, q.e
        if not signed.valid(self.library.ctx.settings.secret_key, image_id, w, h, fit, e, q.s):
            raise Forbidden("a wrong or expired signature")
        img = self.library.sharing.served(req.context.db, image_id)
        if img is None:
            raise NotFound("no such image")
        spec = TransformSpec(width=w, height=h, fit="cover" if fit == "cover" else "inside", position="center",
                             format="webp", quality=None, lossless=False, animated=None)
        self.serve(req, resp, img, spec, f"private, max-age={max(0, e - int(time.time()))}")
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Cross-Origin-Resource-Policy", "same-origin")

    on_head = on_get


def add_routes(app: falcon.App, api) -> None:
    lib = api.lib
    portal = lib.settings.portal_path
    files = Files(api.prefix, portal)
    index = Index(files, portal)
    app.add_route(portal, index)
    app.add_route(f"{portal}/", _Slash(index))
    app.add_route(f"{portal}/static/{{name}}", Static(files))
    app.add_route(f"{portal}/session", SessionLogin(lib, api))
    app.add_route(f"{portal}/session/refresh", SessionRefresh(lib, api))
    app.add_route(f"{portal}/session/logout", SessionLogout(lib, api))
    app.add_route(f"{portal}/media/{{image_id}}", SignedMedia(lib, api))


class _Slash:
    def __init__(self, index: Index):
        self.index = index

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.index.on_get(req, resp)

    on_head = on_get


# The route table, under MEDIAPROXY_PORTAL_PATH, as add_routes wires it (the OpenAPI document is generated
# from it: library/api/openapi.py)
ROUTES = (
    ("", Index),
    ("/", _Slash),
    ("/static/{name}", Static),
    ("/session", SessionLogin),
    ("/session/refresh", SessionRefresh),
    ("/session/logout", SessionLogout),
    ("/media/{image_id}", SignedMedia),
)

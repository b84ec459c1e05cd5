"""The admin API of the /v2 image service (``{prefix}/admin/...``): ``Authorization: Bearer ACCESS_TOKEN`` (a JWT
from ``/admin/auth/login``; see ``auth.py`` for tokens, rotation and login throttling). An admin
sees every client; the records and verbs are the same as the client API's (``services/``)."""

from __future__ import annotations

import falcon
from msgspec import UNSET

from ...clientip import NetworkSet, client_address
from ...errors import BadRequest, MediaError, NotFound
from .. import auth
from ..models import Admin, Album, Avatar, Media, Organization
from ..repositories import clients
from . import schemas as S
from .common import ADMIN, PUBLIC, json_body, query, send_json
from .presenters import admin_json, avatar_admin_json, client_json
from .v2 import V2, V2Resource, album_fields, patch_image, when


class TooManyAttempts(MediaError):
    status = 429
    reason = "too many failed logins"




class AdminResource(V2Resource):
    auth = ADMIN

    @staticmethod
    def admin(req: falcon.Request) -> Admin:
        """The admin of the request's access token, its session still open (the middleware checked
        it; its session's id is ``req.context.admin_session``)."""
        return req.context.admin

    def optional_user(self, req: falcon.Request) -> None:
        """The admin API takes no end user."""

    def tokens(self, req: falcon.Request, a: Admin, refresh: tuple[str, str]) -> dict:
        """The answer of a login or a refresh: ``refresh`` is (the refresh token, its session id)."""
        token, session_id = refresh
        return {"accessToken": auth.access_token(a, session_id, self.library.ctx.settings.secret_key),
                "tokenType": "Bearer", "expiresIn": auth.ACCESS_TTL, "refreshToken": token,
                "refreshExpiresIn": auth.REFRESH_TTL, "admin": admin_json(a)}

    def client(self, req: falcon.Request, client_id: str) -> Organization:
        org = clients.client(req.context.db, client_id)
        if org is None:
            raise NotFound("no such client")
        return org

    def any_image(self, req: falcon.Request, image_id: str) -> Media:
        s = req.context.db
        row = self.library.sharing.served(s, image_id)
        if row is None:
            raise NotFound("no such image")
        return self.library.catalog.image(s, clients.client(s, str(row.org_id)), image_id)


class Login(AdminResource):
    auth = PUBLIC
    request = S.LoginRequest  # the portal's sign-in declares its own

    def secure(self, req: falcon.Request) -> bool:
        """Whether the device cookie is ``Secure`` (the portal's login relaxes it only on loopback)."""
        return req.scheme == "https"

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        p = json_body(req, self.request)
        s = req.context.db
        email = p.email.strip().lower()
        password = p.password
        secret = self.library.ctx.settings.secret_key
        address = client_address(req.env, NetworkSet(self.library.ctx.settings.trusted_proxy_cidrs))
        a = clients.admin_by_email(s, email)
        device = auth.device_of(p.device_token or req.cookies.get(auth.DEVICE_COOKIE), a, secret)
        keys = auth.throttle_keys(email, auth.throttle_address(address), device)
        wait = auth.throttle_reserve(s, keys)  # counted as a failure until the password proves right
        if wait:
            raise TooManyAttempts(f"too many failed logins; retry in {wait} s", headers={"Retry-After": str(wait)})
        if not auth.verify_password(a, password):
            raise auth.Unauthorized("wrong email or password")
        auth.throttle_success(s, keys)
        out = self.tokens(req, a, auth.issue_refresh(s, a))
        out["deviceToken"] = device_token = auth.device_token(a, secret)
        resp.set_cookie(auth.DEVICE_COOKIE, device_token, max_age=400 * 86400, path=req.path,
                        secure=self.secure(req), http_only=True, same_site="Strict")
        send_json(resp, out)


class Refresh(AdminResource):
    auth = PUBLIC  # the refresh token in the body is the credential

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        p = json_body(req, S.RefreshRequest)
        a, refresh, session_id = auth.rotate_refresh(req.context.db, p.refresh_token)
        send_json(resp, self.tokens(req, a, (refresh, session_id)))


class Logout(AdminResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        a = self.admin(req)
        p = json_body(req, S.LogoutRequest)  # a null refreshToken or a non-boolean everywhere is a 400
        s = req.context.db
        refresh = p.refresh_token
        if p.everywhere or not refresh:
            auth.end_every_session(s, a)  # every refresh token and every access token of this admin
        else:
            auth.revoke_family(s, req.context.admin_session)  # this access token's own session
            auth.revoke_refresh(s, a, refresh)  # and the refresh token's
        resp.status = falcon.HTTP_204


class Me(AdminResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, admin_json(self.admin(req)))

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        a = self.admin(req)
        p = json_body(req, S.MePatch)
        s = req.context.db
        if p.name is not UNSET:
            a.name = p.name or ""
        if p.email is not UNSET:
            email = auth.check_email(p.email)
            if email != a.email and clients.admin_by_email(s, email) is not None:
                raise BadRequest("that email belongs to another admin")
            a.email = email
        s.flush()
        send_json(resp, admin_json(a))


class ChangePassword(AdminResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        a = self.admin(req)
        p = json_body(req, S.PasswordChange)
        current = p.current_password
        new = auth.check_password(p.new_password)
        if not auth.verify_password(a, current):
            raise BadRequest("the current password is wrong")
        a.password_hash = auth.hash_password(new)
        s = req.context.db
        auth.end_every_session(s, a)  # every session ends: log in again
        send_json(resp, self.tokens(req, a, auth.issue_refresh(s, a)))


class Stats(AdminResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        s = req.context.db
        orgs = clients.every_client(s)
        stats = self.library.admin.stats_of(s, [o.id for o in orgs])
        per_client = [client_json(o, stats[o.id]) for o in orgs]
        total: dict = {}
        for c in per_client:
            _add(total, c["stats"])
        send_json(resp, {"clients": len(per_client), **total, "perClient": per_client})


def _add(total: dict, stats: dict) -> None:
    """Sum ``stats`` into ``total``, nested counts (``byApi``) too."""
    for k, v in stats.items():
        if isinstance(v, dict):
            _add(total.setdefault(k, {}), v)
        else:
            total[k] = total.get(k, 0) + v


class Clients(AdminResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = query(req, S.ClientsQuery)
        rows, total = clients.client_page(req.context.db, q.limit, q.skip, q.search or None)
        send_json(resp, {"items": [client_json(o) for o in rows], "total": total, "limit": q.limit, "offset": q.skip})


class ClientOne(AdminResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, client_id: str) -> None:
        org = self.client(req, client_id)
        send_json(resp, client_json(org, self.library.admin.stats(req.context.db, org.id)))

    def on_patch(self, req: falcon.Request, resp: falcon.Response, client_id: str) -> None:
        org = self.client(req, client_id)
        org.name = json_body(req, S.ClientPatch).name
        req.context.db.flush()
        send_json(resp, client_json(org))


class AdminImages(AdminResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Upload on behalf of a client: ``clientId`` in the query (the form's fields come after the
        file in many clients, and the upload must know its client before the first byte is stored)."""
        org = self.client(req, str(query(req, S.AdminUploadQuery).client_id))
        media = self.receive_image(req, org, S.AdminImageForm, lambda f: f.external_user_id or None, "externalUserId")
        send_json(resp, {**self.image_json(req, media), "clientId": org.id}, 201)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = query(req, S.AdminImagesQuery)
        limit, offset = q.limit, q.skip
        items, total = self.library.catalog.list_images(
            req.context.db, q.client_id or None, user=None, limit=limit, offset=offset, tag=q.tag or None,
            owner=q.user_id or None, private=None if q.is_private is UNSET else q.is_private,
            since=when(q.from_, "from"), until=when(q.to, "to"), search=q.search or None, all_private=True)
        send_json(resp, {"items": [{**j, "clientId": m.org_id} for j, m in zip(self.images_json(req, items), items,
                                                                               strict=True)],
                         "total": total, "limit": limit, "offset": offset})


class AdminTags(AdminResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = query(req, S.TagsQuery)
        send_json(resp, {"items": self.library.admin.tag_counts(req.context.db, q.client_id or None, q.search or None,
                                                                q.limit)})


class AdminImage(AdminResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        m = self.any_image(req, image_id)
        send_json(resp, {**self.image_json(req, m), "clientId": m.org_id})

    def on_patch(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        m = self.any_image(req, image_id)
        patch_image(self, req, m)
        send_json(resp, {**self.image_json(req, m), "clientId": m.org_id})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        self.library.sharing.delete_image(req.context.db, self.any_image(req, image_id))
        resp.status = falcon.HTTP_204



class AdminAvatars(AdminResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = query(req, S.ClientPageQuery)
        limit, offset = q.limit, q.skip
        rows, total = self.library.avatars.page(req.context.db, q.client_id or None, limit, offset)
        send_json(resp, {"items": [avatar_admin_json(a, m) for a, m in rows], "total": total, "limit": limit,
                         "offset": offset})


class AdminAvatar(AdminResource):
    def _row(self, req: falcon.Request, avatar_id: str) -> Avatar:
        row = self.library.avatars.by_id(req.context.db, avatar_id)
        if row is None:
            raise NotFound("no such avatar")
        return row

    def on_get(self, req: falcon.Request, resp: falcon.Response, avatar_id: str) -> None:
        row = self._row(req, avatar_id)
        send_json(resp, avatar_admin_json(row, self.library.avatars.media_of(req.context.db, row)))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, avatar_id: str) -> None:
        self.library.avatars.delete(req.context.db, self._row(req, avatar_id))
        resp.status = falcon.HTTP_204


class AdminAlbums(AdminResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = query(req, S.ClientPageQuery)
        limit, offset = q.limit, q.skip
        items, total = self.library.albums.page(req.context.db, q.client_id or None, None, limit, offset)
        counts = self.library.albums.image_counts(req.context.db, [a.id for a in items])
        send_json(resp, {"items": [{**self.album_json(req, a, counts.get(a.id, 0)), "clientId": a.org_id}
                                   for a in items], "total": total, "limit": limit, "offset": offset})


class AdminAlbum(AdminResource):
    def _album(self, req: falcon.Request, album_id: str) -> Album:
        return self.library.albums.get(req.context.db, None, album_id)

    def on_get(self, req: falcon.Request, resp: falcon.Response, album_id: str) -> None:
        a = self._album(req, album_id)
        send_json(resp, {**self.album_json(req, a), "clientId": a.org_id})

    def on_patch(self, req: falcon.Request, resp: falcon.Response, album_id: str) -> None:
        a = self._album(req, album_id)
        self.library.albums.update(req.context.db, a, album_fields(json_body(req, S.AlbumInput), False))
        send_json(resp, {**self.album_json(req, a), "clientId": a.org_id})

    def on_delete(self, req: falcon.Request, resp: falcon.Response, album_id: str) -> None:
        self.library.albums.delete(req.context.db, self._album(req, album_id))
        resp.status = falcon.HTTP_204


# The route table, under {prefix}/admin (the OpenAPI document is generated from it: library/api/openapi.py)
ROUTES = (
    ("/auth/login", Login),
    ("/auth/refresh", Refresh),
    ("/auth/logout", Logout),
    ("/auth/me", Me),
    ("/auth/me/change-password", ChangePassword),
    ("/stats", Stats),
    ("/clients", Clients),
    ("/clients/{client_id}", ClientOne),
    ("/images", AdminImages),
    ("/images/tags", AdminTags),
    ("/images/{image_id}", AdminImage),
    ("/avatars", AdminAvatars),
    ("/avatars/{avatar_id}", AdminAvatar),
    ("/albums", AdminAlbums),
    ("/albums/{album_id}", AdminAlbum),
)


def add_routes(app: falcon.App, api: V2) -> None:
    for template, resource in ROUTES:
        app.add_route(f"{api.prefix}/admin{template}", resource(api.lib, api))

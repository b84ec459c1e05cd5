"""The image families of the CDN: avatars, icons, banners, splashes,
embed-splashes, emojis, stickers (Lottie included), guild-member avatars and
banners, and themes. Each path maps to one object in the CDN bucket."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import falcon

from ..context import Context
from ..errors import BadRequest, NotFound
from ..media.spec import BANNER, BOX, FORMATS, SQUARE, Profile, TransformSpec, parse_spec
from ..storage import ObjectInfo
from .common import HeadSniffer, hash_segment, serve_stored, serve_transform, snowflake, split_ext

# The platform's theme ids: 16 lowercase hex digits (its reference implementation checks this).
THEME_ID = re.compile(r"[a-f0-9]{16}")
_JSON_BLANK = b" \t\r\n"


def looks_like_json(head: bytes) -> bool:
    """The first bytes open a JSON object or array (a Lottie file is an object), after an optional BOM."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip(_JSON_BLANK)
    return text[:1] in (b"{", b"[")


@dataclass(frozen=True, slots=True)
class Family:
    route: str  # Falcon URI template
    prefix: str  # object key = prefix + "/".join(ids) + "/" + hash
    profile: Profile
    id_fields: tuple[str, ...]
    hashed: bool = True  # the file stem is a hash (`a_` marks animation); else a snowflake id
    lottie: bool = False


FAMILIES = (
    Family("/avatars/{user_id}/{filename}", "avatars", SQUARE, ("user_id",)),
    Family("/icons/{guild_id}/{filename}", "icons", SQUARE, ("guild_id",)),
    Family("/banners/{guild_id}/{filename}", "banners", BANNER, ("guild_id",)),
    Family("/splashes/{guild_id}/{filename}", "splashes", BANNER, ("guild_id",)),
    Family("/embed-splashes/{guild_id}/{filename}", "embed-splashes", BANNER, ("guild_id",)),
    Family("/emojis/{filename}", "emojis", BOX, (), hashed=False),
    Family("/stickers/{filename}", "stickers", BOX, (), hashed=False, lottie=True),
    Family(
        "/guilds/{guild_id}/users/{user_id}/avatars/{filename}",
        "guilds/{guild_id}/users/{user_id}/avatars",
        SQUARE,
        ("guild_id", "user_id"),
    ),
    Family(
        "/guilds/{guild_id}/users/{user_id}/banners/{filename}",
        "guilds/{guild_id}/users/{user_id}/banners",
        BANNER,
        ("guild_id", "user_id"),
    ),
)


class ImageResource:
    def __init__(self, ctx: Context, family: Family):
        self.ctx = ctx
        self.family = family
        self._json = HeadSniffer(ctx, lambda info, head: looks_like_json(head)) if family.lottie else None

    def _object_key(self, params: dict[str, str]) -> tuple[str, str]:
        """(object key, extension) for one request, validated.

        A leading ``a_`` on a hash only marks an animated image: it is stripped
        for the key and turns nothing on (animation follows the output format
        and ``animated``; see ``TransformSpec.keeps_animation``).
        """
        fam = self.family
        ids = {name: snowflake(params[name], name.replace("_", " ")) for name in fam.id_fields}
        stem, ext = split_ext(params["filename"])
        if fam.hashed:
            hash_segment(stem)
            if stem.startswith("a_") and len(stem) > 2:
                stem = stem[2:]
        else:
            snowflake(stem)
        prefix = fam.prefix.format(**ids) if "{" in fam.prefix else "/".join((fam.prefix, *ids.values()))
        return f"{prefix}/{stem}", ext

    def target(self, params: dict[str, str], query: Mapping[str, object]) -> tuple[str, TransformSpec | None]:
        """(object key, spec) for one request, validated; spec None means "serve the stored bytes" (Lottie).

        The one parse of these routes: ``on_get`` and the image routes' fast path
        (mediaproxy/fastpath.py) both call it, so both derive the same key.
        """
        key, ext = self._object_key(params)
        if ext == "json" and self.family.lottie:
            return key, None
        ext_format = FORMATS.get(ext)
        if ext_format is None:
            raise BadRequest("unsupported file extension")
        return key, parse_spec(self.family.profile, query, ext_format)

    def on_get(self, req: falcon.Request, resp: falcon.Response, **params: str) -> None:
        key, spec = self.target(params, req.params)
        bucket = self.ctx.settings.cdn_bucket
        if spec is None:
            self._lottie(req, resp, bucket, key)
            return
        serve_transform(req, resp, self.ctx, bucket, key, spec)

    def _lottie(self, req: falcon.Request, resp: falcon.Response, bucket: str, key: str) -> None:
        """``.json``: the stored object as ``application/json``, only when it is JSON (a Lottie animation);
        a sticker stored as an image has no Lottie representation (404)."""
        info: ObjectInfo = self.ctx.storage.head(bucket, key)
        if self._json is None or not self._json(bucket, key, info):
            raise NotFound("no Lottie animation for this sticker")
        serve_stored(req, resp, self.ctx, bucket, key, "application/json", info=info)

    on_head = on_get


class ThemeResource:
    """``/themes/{theme_id}.css``: the stored stylesheet, streamed as text/css."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, theme_id: str) -> None:
        if not THEME_ID.fullmatch(theme_id):
            raise BadRequest("invalid theme id: 16 lowercase hex digits")
        key = f"themes/{theme_id}.css"
        serve_stored(req, resp, self.ctx, self.ctx.settings.cdn_bucket, key, "text/css; charset=utf-8")

    on_head = on_get


def add_routes(app: falcon.App, ctx: Context) -> None:
    for family in FAMILIES:
        app.add_route(family.route, ImageResource(ctx, family))
    app.add_route("/themes/{theme_id}.css", ThemeResource(ctx))

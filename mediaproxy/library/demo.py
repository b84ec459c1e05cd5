"""The library's part of ``mediaproxy demo``: one image uploaded through the library (the same
service the APIs call), an API key for the ``demo`` organization, and URLs that work."""

from __future__ import annotations

import pyvips

from ..context import Context
from ..portal import demo as portal_demo
from ..settings import Settings
from . import auth
from .api.presenters import media_json
from .build import build_library


def seed(settings: Settings, base: str) -> list[tuple[str, str]]:
    ctx = Context.build(settings)
    lib = build_library(settings, ctx)
    lib.db.upgrade()
    xyz = pyvips.Image.xyz(800, 533)
    im = ((xyz[0] * 255 / 799).cast("uchar")).bandjoin([(xyz[1] * 255 / 532).cast("uchar"),
                                                         (xyz[0] * 0 + 140).cast("uchar")])
    data = im.copy(interpretation="srgb").jpegsave_buffer(Q=88)
    with lib.db.transaction() as s:
        key = auth.create_key(s, "demo", "scripts/serve")
        org = auth.organization(s, "demo")
        up = lib.ingest.begin_upload(org, "sunset.jpg")
        up.write(data)
        obj, _ = up.finish()
        media = lib.ingest.create_media(s, up, obj,
                                        fields={"alt": "a demo gradient", "caption": "uploaded by the demo"})
        lib.versions.render_variants(s, media)
        d = media_json(lib, media, base)
        portal = portal_demo.seed(settings, s, base)
    small = next(v["url"] for v in d["variants"] if v["name"] == "small")
    return [
        ("library API key (org demo)", key),
        ("media record (needs the key)", f"curl -H 'X-API-Key: {key}' {base}/api/v1/media/{media.id}"),
        ("list (needs the key)", f"curl -H 'X-API-Key: {key}' '{base}/api/v1/media/list?search=sunset'"),
        ("upload (needs the key)", f"curl -so sunset.jpg {d['url']} && curl -H 'X-API-Key: {key}' "
                                   f"-F file=@sunset.jpg -F generateVariants=true {base}/api/v1/media/upload"),
        ("public URL of the original", d["url"]),
        ("its small variant", small),
        ("imgix-style crop, format by Accept", d["url"] + "?w=300&h=300&fit=crop&auto=format,compress"),
        ("content-addressed URI", d["canonicalUri"]),
        *portal,
    ]

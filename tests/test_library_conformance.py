"""The APIs' own rules over real HTTP: the presigned /media API's ``contentDispositionHeader`` never
carries a control character, ``API_PREFIX`` is honoured, and the client's statistics count every medium
of the client, whichever API stored it."""

from __future__ import annotations

import re
import time
from urllib.parse import unquote

import pytest
import requests

from mediaproxy.library.api.media import disposition

from . import media
from .test_library_media import create as media_create
from .test_library_media import put as media_put

NAMES = ["photo.jpg", "Photo été.png", "evil\r\nSet-Cookie: x=1.png", 'a"b\\c%41.png', "tab\there;x.png",
         "nul\x00del\x7f.png", "日本語.png", "‮gnp.exe"]


def parse(value: str) -> tuple[str, str | None]:
    """(the quoted ASCII fallback, the decoded filename* or None), refusing anything RFC 6266 would not."""
    m = re.fullmatch(r'inline; filename="([ !#-\[\]-~]*)"(?:; filename\*=UTF-8\'\'([A-Za-z0-9!#$&+.^_`|~%-]+))?',
                     value)
    assert m, value
    return m.group(1), unquote(m.group(2), errors="strict") if m.group(2) else None


@pytest.mark.parametrize("name", NAMES)
def test_disposition_is_a_valid_header_value(name):
    value = disposition(name)
    assert all(" " <= c <= "~" for c in value), value
    fallback, exact = parse(value)
    assert (exact or fallback) == name
    assert exact is None or fallback != name


def fresh_key(library, name: str) -> str:
    """A key of an organization of this test's own, so that what it stores shows in no other test."""
    return library._key_in_process(f"{name}-{time.monotonic_ns() % 10**12}")


def test_content_disposition_of_a_hostile_filename_over_http(library):
    data = media.bands(40, 30, [(10, 20, 30)]).pngsave_buffer()
    key = fresh_key(library, "names")
    for name in NAMES[1:]:
        if "\x00" in name:  # no database stores it alike (PostgreSQL cannot): refused on every stack
            r = media_create(library, name, "image/png", key=key)
            assert r.status_code == 400 and "NUL" in r.json()["error"], r.text
            continue
        r = media_create(library, name, "image/png", key=key)
        assert r.status_code == 201, r.text
        c = r.json()
        value = c["contentDispositionHeader"]
        assert all(" " <= ch <= "~" for ch in value), value
        _, exact = parse(value)
        assert exact == name and c["media"]["filename"] == name.strip()
        # the client sends it back with the PUT, as the /media API says: a valid header, accepted
        assert media_put(c, data).status_code == 200, name


def test_api_prefix_is_honoured(make_server, tmp_path):
    """``API_PREFIX`` (the /v2 service's name) moves the routes; ``MEDIAPROXY_API_PREFIX`` wins when both are set."""
    from .library import create_key, library_env

    env = library_env(tmp_path, {"API_PREFIX": "/seed/api"})
    srv = make_server("local", env=env, workers=1)
    key = create_key(srv.env, "prefixed")
    try:
        r = requests.get(f"{srv.base}/seed/api/status", headers={"X-API-Key": key}, timeout=30)
        assert r.status_code == 200 and r.json()["client"]["slug"] == "prefixed", r.text
        assert requests.get(f"{srv.base}/v2/status", headers={"X-API-Key": key}, timeout=30).status_code == 404
    finally:
        srv.stop()
    env = library_env(tmp_path / "both", {"API_PREFIX": "/seed/api", "MEDIAPROXY_API_PREFIX": "/ours"})
    srv = make_server("local", env=env, workers=1)
    key = create_key(srv.env, "prefixed")
    try:
        assert requests.get(f"{srv.base}/ours/status", headers={"X-API-Key": key}, timeout=30).status_code == 200
        assert requests.get(f"{srv.base}/seed/api/status", headers={"X-API-Key": key},
                            timeout=30).status_code == 404
    finally:
        srv.stop()


@pytest.mark.parametrize("env,prefix", [({}, "/v2"), ({"API_PREFIX": "/api/"}, "/api"),
                                        ({"MEDIAPROXY_API_PREFIX": "/a", "API_PREFIX": "/b"}, "/a"),
                                        ({"MEDIAPROXY_API_PREFIX": "/a"}, "/a")])
def test_api_prefix_settings(env, prefix):
    from mediaproxy.errors import ConfigError
    from mediaproxy.settings import LibrarySettings

    assert LibrarySettings.from_env(env).api_prefix == prefix
    with pytest.raises(ConfigError, match=r"^API_PREFIX="):
        LibrarySettings.from_env({"API_PREFIX": "v2"})


def test_stats_count_the_clients_media_of_every_api(library):
    from .test_library_v2 import V2, put_avatar
    from .test_library_v2 import created as v2_created
    from .test_library_v2_admin import admin_api, login, make_admin

    key = fresh_key(library, "stats")
    slug = library.api("GET", f"{V2}/status", key=key).json()["client"]["slug"]

    def stats() -> dict:
        r = library.api("GET", f"{V2}/client/stats", key=key)
        assert r.status_code == 200, r.text
        return r.json()

    before = stats()
    one = library.upload(media.jpeg(64, 48), "one.jpg", key=key, isPrivate=True)  # /api/v1
    assert one.status_code == 201, one.text
    c = media_create(library, "two.png", "image/png", user="stats-user", key=key).json()  # /media
    two = media.bands(30, 20, [(1, 2, 3)]).pngsave_buffer()
    assert media_put(c, two).status_code == 200
    seen = library.uploaded(f"/media/{c['media']['id']}", {"X-User-Id": "stats-user"}, key=key)
    assert seen["status"] == "uploaded" and seen["size"] == len(two)
    three = v2_created(library, key=key, data=media.bands(20, 20, [(9, 9, 9)]).pngsave_buffer())  # /v2
    pending = media_create(library, "never.png", "image/png", user="stats-user", key=key)  # never uploaded
    assert pending.status_code == 201
    put_avatar(library, f"stats-{time.monotonic_ns()}", media.bands(16, 16, [(5, 5, 5)]).pngsave_buffer(), key=key)
    after = stats()
    sizes = one.json()["size"] + len(two) + three["size"]
    assert after["images"] == before["images"] + 3
    assert after["privateImages"] == before["privateImages"] + 1
    assert after["imageBytes"] == before["imageBytes"] + sizes
    for api, n in (("v1", 1), ("media", 1), ("v2", 1)):
        assert after["byApi"][api]["images"] == before["byApi"][api]["images"] + n, api
    assert after["byApi"]["v1"]["privateImages"] == before["byApi"]["v1"]["privateImages"] + 1
    assert after["avatars"] == before["avatars"] + 1
    assert after["totalBytes"] == after["imageBytes"] + after["avatarBytes"]
    # the admin's view of the client is the same, and its totals add every client's up
    token = login(library, make_admin(library)).json()["accessToken"]
    admin = admin_api(library, "GET", "/stats", token).json()
    client = next(c for c in admin["perClient"] if c["slug"] == slug)
    assert client["stats"] == {k: v for k, v in after.items() if k != "client"}
    assert admin["images"] == sum(c["stats"]["images"] for c in admin["perClient"])
    assert admin["byApi"]["media"]["bytes"] == sum(c["stats"]["byApi"]["media"]["bytes"] for c in admin["perClient"])


def test_a_nul_in_any_text_field_is_400_and_stores_nothing(library):
    """PostgreSQL cannot store a NUL (it answered 500 there, and stored it on SQLite): every text
    field of every API refuses it alike, before anything is kept."""
    key = fresh_key(library, "nul")
    nul = "a\x00b"
    for field in ("alt", "caption", "description"):
        r = library.upload(media.jpeg(32, 32), "n.jpg", key=key, **{field: nul})
        assert r.status_code == 400 and "NUL" in r.json()["error"], (field, r.text)
    assert library.api("GET", "/api/v1/media/list", key=key).json()["total"] == 0
    m = library.upload(media.jpeg(32, 32), "n.jpg", key=key).json()
    for field in ("alt", "caption", "description"):
        r = library.api("PATCH", f"/api/v1/media/{m['id']}", key=key, json={field: nul})
        assert r.status_code == 400 and "NUL" in r.json()["error"], (field, r.text)
    v2 = {"X-User-Id": "nul-user"}
    img = library.api("POST", "/v2/images", key=key, headers=v2,
                      files={"file": ("n.png", media.png(16, 16), "image/png")})
    assert img.status_code == 201, img.text
    r = library.api("PATCH", f"/v2/images/{img.json()['id']}", key=key, headers=v2, json={"description": nul})
    assert r.status_code == 400 and "NUL" in r.json()["error"], r.text
    for body in ({"name": nul}, {"name": "ok", "description": nul}):
        r = library.api("POST", "/v2/albums", key=key, headers=v2, json=body)
        assert r.status_code == 400 and "NUL" in r.json()["error"], r.text
    assert library.api("GET", "/v2/albums", key=key, headers=v2).json()["total"] == 0

"""A first end-to-end pass over real HTTP, on both backends."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from . import media


def _ids() -> tuple[str, str]:
    return str(secrets.randbelow(10**17) + 10**17), secrets.token_hex(16)


def test_health(server):
    r = server.get("/_health")
    assert r.status_code == 200 and r.text == "OK"
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_avatar_webp_256(server):
    user, h = _ids()
    server.put("cdn", f"avatars/{user}/{h}", media.jpeg(1024, 1024))
    r = server.get(f"/avatars/{user}/{h}.webp?size=256")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "image/webp"
    im = media.decode(r.content)
    assert (im.width, im.height) == (256, 256)
    assert media.loader(r.content) == "webp"
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    etag = r.headers["ETag"]
    r2 = server.get(f"/avatars/{user}/{h}.webp?size=256", headers={"If-None-Match": etag})
    assert r2.status_code == 304 and r2.content == b""


def test_missing_object_is_404(server):
    user, h = _ids()
    r = server.get(f"/avatars/{user}/{h}.png")
    assert r.status_code == 404
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["Content-Type"].startswith("text/plain")


def test_telemetry(server):
    r = server.get("/internal/telemetry")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert set(body) == {"telemetry_enabled", "service", "timestamp"}
    assert body["telemetry_enabled"] is False and body["service"] == "mediaproxy"
    assert datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00")).utcoffset() == timedelta(0)


def test_every_get_route_answers_head(server):
    """HEAD: the GET's status and headers, no body (the contract: every GET route answers HEAD)."""
    user, h = _ids()
    server.put("cdn", f"avatars/{user}/{h}", media.jpeg(64, 64))
    server.put("cdn", f"themes/{h[:16]}.css", b"body{}")
    server.put("cdn", f"attachments/{user}/{user}/a.txt", b"hello", "text/plain")
    paths = ["/_health", "/internal/telemetry", f"/avatars/{user}/{h}.png?size=16", f"/themes/{h[:16]}.css",
             f"/attachments/{user}/{user}/a.txt", f"/external/{'0' * 64}/aHR0cDovL3g"]
    for path in paths:
        get, head = server.get(path), server.head(path)
        assert head.status_code == get.status_code, path
        assert head.content == b"" and head.headers["Content-Length"] == get.headers["Content-Length"], path
        assert head.headers["Content-Type"] == get.headers["Content-Type"], path

"""The admin portal's pieces that need no browser: signed image URLs, the CSRF token, the demo's
admin (made in demo mode only), and the setting that places the portal."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mediaproxy.errors import ConfigError
from mediaproxy.library import auth
from mediaproxy.library.db import Database
from mediaproxy.library.models import Admin
from mediaproxy.portal import demo, signed, web
from mediaproxy.settings import LibrarySettings

SECRET = "s" * 32


def test_signed_urls_name_one_image_size_and_fit_until_they_expire():
    e = signed.expiry(now=1000)
    assert signed.WINDOW < e - 1000 <= 2 * signed.WINDOW
    assert signed.expiry(now=1001) == e  # one window: the same URLs, which the browser keeps
    url = signed.sign("/admin", SECRET, "abc", 200, 200, "cover", e)
    mac = url.rsplit("&s=", 1)[1]
    assert url.startswith("/admin/media/abc?w=200&h=200&fit=cover&e=")
    assert signed.valid(SECRET, "abc", 200, 200, "cover", e, mac, now=1000)
    for other in (("abd", 200, 200, "cover", e), ("abc", 201, 200, "cover", e), ("abc", 200, 200, "inside", e),
                  ("abc", 200, 200, "cover", e + 600)):
        assert not signed.valid(SECRET, *other, mac, now=1000)
    assert not signed.valid("another secret", "abc", 200, 200, "cover", e, mac, now=1000)
    assert not signed.valid(SECRET, "abc", 200, 200, "cover", e, mac, now=e)  # expired
    assert not signed.valid(SECRET, "abc", 200, 200, "cover", e, "", now=1000)


def test_csrf_token_is_bound_to_the_refresh_token_and_the_secret():
    a = web.csrf_token(SECRET, "refresh-1")
    assert a == web.csrf_token(SECRET, "refresh-1") and len(a) == 64
    assert a != web.csrf_token(SECRET, "refresh-2") and a != web.csrf_token("other", "refresh-1")


@pytest.mark.parametrize("host, relaxed", [("127.0.0.1", True), ("localhost", True), ("[::1]", True),
                                           ("a.localhost", True), ("example.com", False), ("10.0.0.1", False)])
def test_secure_cookies_are_relaxed_for_loopback_only(host, relaxed):
    assert web.loopback(host) is relaxed


def test_the_portal_path_is_a_setting():
    assert LibrarySettings.from_env({}).portal_path == "/admin"
    assert LibrarySettings.from_env({"MEDIAPROXY_PORTAL_PATH": "/ops/console/"}).portal_path == "/ops/console"
    for bad in ("admin", "/v2/admin", "/v2", "/a b"):
        with pytest.raises(ConfigError, match="MEDIAPROXY_PORTAL_PATH"):
            LibrarySettings.from_env({"MEDIAPROXY_PORTAL_PATH": bad})


class _Settings:
    demo = False
    library = LibrarySettings.from_env({})


def test_the_demo_admin_only_in_demo_mode(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/l.db")
    db.upgrade()
    try:
        with db.transaction() as s:
            assert demo.seed(_Settings, s, "http://h") == []
            assert s.scalar(select(Admin)) is None
        _Settings.demo = True
        passwords: list[str] = []
        for _ in range(2):  # seeded again: a new password, the old one refused
            with db.transaction() as s:
                lines = demo.seed(_Settings, s, "http://h")
            assert lines[0][1] == "http://h/admin/"
            email, password = lines[1][1].split(" / ")
            passwords.append(password)
            with db.transaction() as s:
                admin = s.scalar(select(Admin).where(Admin.email == email))
                assert auth.verify_password(admin, password)
                assert not any(auth.verify_password(admin, p) for p in passwords[:-1])
    finally:
        _Settings.demo = False
        db.dispose()

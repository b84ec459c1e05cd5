"""The /v2 admin API over real HTTP: the real `mediaproxy admin create`, login, rotating refresh
tokens (a reused one revokes its family), logout, JWT abuse (alg none, other algorithms, bad
signatures, expired), throttled failed logins, and the admin's views of every client."""

from __future__ import annotations

import hashlib
import hmac
import math
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
import requests

from .conftest import start_library
from .library import MEDIAPROXY
from .server import ROOT, SECRET
from .test_library_v2 import V2, album_api, created, img, put_avatar

PASSWORD = "correct horse battery"


def make_admin(library, password: str = PASSWORD) -> str:
    email = f"admin-{time.monotonic_ns()}@example.com"
    out = subprocess.run([MEDIAPROXY, "admin", "create", "--email", email], cwd=ROOT, env=library.env,
                         input=password + "\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return email


def login(library, email: str, password: str = PASSWORD):
    return library.api("POST", f"{V2}/admin/auth/login", key=None, json={"email": email, "password": password})


def locked_out(fail) -> requests.Response:
    """Wrong passwords (``fail()``) until a 429 says the wait has 1 s or more to run (Retry-After is
    the seconds left rounded up, plus one). The first wait lasts 1 s from the failing attempt's
    start, and a loaded machine can spend that on the attempt's own password check: a test that
    expects its next attempt to be refused waits one out first (each failure doubles the next)."""
    for _ in range(8):
        r = fail()
        if r.status_code == 429 and int(r.headers["Retry-After"]) >= 2:
            return r
        if r.status_code == 429:
            time.sleep(int(r.headers["Retry-After"]) + 0.1)
        else:
            assert r.status_code == 401, r.text
    raise AssertionError("no wait of 1 s or more after 8 wrong passwords")


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def admin_api(library, method, path, token, **kw):
    return library.api(method, f"{V2}/admin{path}", key=None, headers=bearer(token), **kw)


def session(library) -> dict:
    r = login(library, make_admin(library))
    assert r.status_code == 200, r.text
    return r.json()


def test_login_refresh_rotation_and_logout(library):
    email = make_admin(library)
    r = login(library, email)
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["tokenType"] == "Bearer" and t["expiresIn"] <= 900 and t["admin"]["email"] == email
    me = admin_api(library, "GET", "/auth/me", t["accessToken"])
    assert me.status_code == 200 and me.json()["email"] == email
    r = admin_api(library, "PATCH", "/auth/me", t["accessToken"], json={"name": "Root"})
    assert r.status_code == 200 and r.json()["name"] == "Root"
    assert admin_api(library, "PATCH", "/auth/me", t["accessToken"], json={"email": "nope"}).status_code == 400
    # refresh rotates: the new one works, the old one is used up; reusing it revokes the family
    r = library.api("POST", f"{V2}/admin/auth/refresh", key=None, json={"refreshToken": t["refreshToken"]})
    assert r.status_code == 200, r.text
    t2 = r.json()
    assert t2["refreshToken"] != t["refreshToken"]
    reuse = library.api("POST", f"{V2}/admin/auth/refresh", key=None, json={"refreshToken": t["refreshToken"]})
    assert reuse.status_code == 401
    again = library.api("POST", f"{V2}/admin/auth/refresh", key=None, json={"refreshToken": t2["refreshToken"]})
    assert again.status_code == 401  # the whole family
    assert admin_api(library, "GET", "/auth/me", t2["accessToken"]).status_code == 401  # and its access tokens
    # logout revokes
    t3 = login(library, email).json()
    assert admin_api(library, "POST", "/auth/logout", t3["accessToken"],
                     json={"refreshToken": t3["refreshToken"]}).status_code == 204
    assert library.api("POST", f"{V2}/admin/auth/refresh", key=None,
                       json={"refreshToken": t3["refreshToken"]}).status_code == 401
    assert library.api("POST", f"{V2}/admin/auth/refresh", key=None, json={}).status_code == 400


def test_jwt_abuse_is_401(library):
    t = session(library)
    claims = jwt.decode(t["accessToken"], options={"verify_signature": False})
    key = hmac.new(SECRET.encode(), b"mediaproxy admin access token", hashlib.sha256).digest()
    forged = [
        jwt.encode(claims, None, algorithm="none"),
        jwt.encode(claims, "wrong-secret-wrong-secret-wrong-secret", algorithm="HS256"),
        jwt.encode(claims, key, algorithm="HS512"),
        jwt.encode({**claims, "exp": int(time.time()) - 10}, key, algorithm="HS256"),
        jwt.encode({k: v for k, v in claims.items() if k != "exp"}, key, algorithm="HS256"),
        jwt.encode({**claims, "sub": "999999"}, key, algorithm="HS256"),
        t["accessToken"][:-3] + "AAA",
        "not.a.jwt",
        library.key,  # a client's API key is not an admin token
    ]
    for token in forged:
        r = admin_api(library, "GET", "/auth/me", token)
        assert r.status_code == 401 and r.json()["error"], token
    # the right key and algorithm do work:
    assert admin_api(library, "GET", "/auth/me", jwt.encode(claims, key, algorithm="HS256")).status_code == 200
    assert library.api("GET", f"{V2}/admin/stats", key=None).status_code == 401
    assert library.api("GET", f"{V2}/admin/stats").status_code == 401  # X-API-Key is no admin


def test_failed_logins_are_slowed_down(library):
    email = make_admin(library)
    codes = [login(library, email, "wrong password!").status_code for _ in range(5)]
    assert codes == [401] * 5
    # past the free failures each one waits longer (1, 2, 4... s from the attempt's start)
    locked_out(lambda: login(library, email, "wrong password!"))
    r = login(library, email)  # even the right password waits now
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert login(library, "nobody@example.com", "x" * 12).status_code in (401, 429)
    time.sleep(int(r.headers["Retry-After"]) + 0.2)
    assert login(library, email).status_code == 200


def test_parallel_guesses_cannot_pass_the_limit(library):
    """Each attempt is counted before its password is verified: 24 wrong passwords at once for one
    account get exactly the 5 free answers, the rest wait (no lost updates, no duplicate keys)."""
    email = make_admin(library)
    t0 = time.monotonic()
    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(lambda i: login(library, email, f"wrong password {i}").status_code, range(24)))
    took = time.monotonic() - t0
    # past the free ones the counter waits 1, 2, 4... s: a burst that a loaded machine stretches
    # past those waits may see one more failure per wait that ran out (the k-th after 2**k - 1 s)
    extra = math.floor(math.log2(took + 1))
    assert set(codes) <= {401, 429} and 5 <= codes.count(401) <= 5 + extra, (codes, took)


@pytest.fixture(scope="module")
def behind_proxy(request, make_server, tmp_path_factory):
    """A library behind a trusted proxy (127.0.0.1), so a test chooses each request's client address."""
    stack = start_library(request, make_server, tmp_path_factory, "local",
                          extra={"MEDIAPROXY_TRUSTED_PROXY_CIDRS": "127.0.0.1/32"}, worker=False)
    yield stack
    stack.stop()


def login_from(library, address: str, email: str, password: str = PASSWORD, **extra):
    return library.api("POST", f"{V2}/admin/auth/login", key=None, headers={"X-Forwarded-For": address},
                       json={"email": email, "password": password, **extra})


def test_someone_elses_failures_never_refuse_the_owner(behind_proxy):
    """An attacker sharing the owner's address (an office, a carrier NAT, an unconfigured proxy)
    keeps the address's and the owner's pair's limits exhausted; the owner's right password from a
    device that logged in before (its device token, in the body or the cookie) still logs in."""
    lib, shared = behind_proxy, "198.51.100.20"
    email = make_admin(lib)
    r = login_from(lib, shared, email)
    assert r.status_code == 200
    device, cookie = r.json().get("deviceToken"), r.cookies.get("mediaproxy_admin_device")
    stop, codes = threading.Event(), []

    def attack(i: int) -> None:
        while not stop.is_set():
            victim = email if i == 0 else f"victim{i}-{len(codes)}@example.com"
            codes.append(login_from(lib, shared, victim, "guess password").status_code)

    with ThreadPoolExecutor(4) as pool:
        attackers = [pool.submit(attack, i) for i in range(4)]
        try:
            deadline = time.monotonic() + 60
            while codes.count(429) < 8:  # 30 failures from the address, 5 on the owner's pair: the limits hold
                assert time.monotonic() < deadline, codes
                time.sleep(0.05)
            owner = [login_from(lib, shared, email, deviceToken=device).status_code for _ in range(3)]
            owner.append(lib.api("POST", f"{V2}/admin/auth/login", key=None, headers={"X-Forwarded-For": shared},
                                 cookies={"mediaproxy_admin_device": cookie or ""},
                                 json={"email": email, "password": PASSWORD}).status_code)
        finally:
            stop.set()
        for f in attackers:
            f.result()
    assert owner == [200] * 4
    assert device and cookie == device
    assert codes.count(401) <= 40, codes  # the attacker, though, was slowed down
    # a device's own failures do slow it down
    codes = [login_from(lib, shared, email, "guess password", deviceToken=device).status_code for _ in range(8)]
    assert codes[:5] == [401] * 5 and 429 in codes[5:], codes


def test_device_tokens():
    from types import SimpleNamespace

    from mediaproxy.library.auth import device_of, device_token

    owner, other = SimpleNamespace(id=7), SimpleNamespace(id=8)
    token = device_token(owner, "secret")
    assert device_of(token, owner, "secret")
    assert device_of(token, other, "secret") is None  # another account's device is no device of this one
    assert device_of(device_token(other, "secret"), owner, "secret") is None
    assert device_of(token, owner, "another secret") is None
    assert device_of(token[:-4] + "0000", owner, "secret") is None
    assert device_of(None, owner, "secret") is None and device_of(token, None, "secret") is None
    assert device_of("7.é.é", owner, "secret") is None  # not an error: it comes from the client


def test_a_hostile_device_token_is_no_device(library):
    """A device token comes from the client: a forged or malformed one is no device, never an error."""
    email = make_admin(library)

    def with_token(token: str):
        return library.api("POST", f"{V2}/admin/auth/login", key=None,
                           json={"email": email, "password": PASSWORD, "deviceToken": token})

    for token in ("1.\u00e9.\u00e9", "1.2.3.4", "nodots"):
        r = with_token(token)
        assert r.status_code == 200, (token, r.text)
    assert with_token("x" * 201).status_code == 400  # over the field's 200 characters, as any text


def test_an_ipv6_guesser_is_one_address_per_64(behind_proxy):
    lib = behind_proxy
    email = make_admin(lib)
    codes = [login_from(lib, f"2001:db8:0:7::{i:x}", email, "guess password").status_code for i in range(1, 9)]
    assert codes[:5] == [401] * 5 and 429 in codes[5:], codes
    assert login_from(lib, "2001:db8:0:8::1", email).status_code == 200  # another /64 is another address


def test_change_password(library):
    email = make_admin(library)
    t = login(library, email).json()
    r = admin_api(library, "POST", "/auth/me/change-password", t["accessToken"],
                  json={"currentPassword": "wrong one here", "newPassword": "another long one"})
    assert r.status_code == 400
    r = admin_api(library, "POST", "/auth/me/change-password", t["accessToken"],
                  json={"currentPassword": PASSWORD, "newPassword": "short"})
    assert r.status_code == 400
    r = admin_api(library, "POST", "/auth/me/change-password", t["accessToken"],
                  json={"currentPassword": PASSWORD, "newPassword": "another long one"})
    assert r.status_code == 200 and r.json()["accessToken"]
    assert admin_api(library, "GET", "/auth/me", t["accessToken"]).status_code == 401  # old sessions end
    assert login(library, email).status_code == 401
    assert login(library, email, "another long one").status_code == 200


def test_admin_create_refuses_bad_input(library):
    out = subprocess.run([MEDIAPROXY, "admin", "create", "--email", "x@example.com"], cwd=ROOT, env=library.env,
                         input="short\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "password" in out.stderr
    email = make_admin(library)
    out = subprocess.run([MEDIAPROXY, "admin", "create", "--email", email], cwd=ROOT, env=library.env,
                         input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "exists" in out.stderr


def _acme(library, tok: str) -> dict:
    clients = admin_api(library, "GET", "/clients", tok).json()
    return next(c for c in clients["items"] if c["slug"] == "acme")


def test_admin_sees_every_client_and_its_stats(library):
    tok = session(library)["accessToken"]
    stats = admin_api(library, "GET", "/stats", tok).json()
    assert stats["clients"] >= 2 and {c["slug"] for c in stats["perClient"]} >= {"acme", "other-org"}
    acme = _acme(library, tok)

    def images() -> int:
        return admin_api(library, "GET", f"/clients/{acme['id']}", tok).json()["stats"]["images"]

    before = images()
    m = created(library, tags=["counted"])
    assert images() == before + 1
    assert library.api("DELETE", f"{V2}/images/{m['id']}", headers={"X-User-Id": "alice"}).status_code == 204
    assert images() == before
    assert admin_api(library, "GET", "/clients/999999", tok).status_code == 404
    assert admin_api(library, "GET", "/clients/%C2%B2", tok).status_code == 404  # "²": isdigit() but not int()


def test_admin_renames_a_client_but_never_its_slug(library):
    tok = session(library)["accessToken"]
    acme = _acme(library, tok)
    r = admin_api(library, "PATCH", f"/clients/{acme['id']}", tok, json={"name": "Acme Inc."})
    assert r.status_code == 200 and r.json()["name"] == "Acme Inc."
    assert admin_api(library, "GET", f"/clients/{acme['id']}", tok).json()["name"] == "Acme Inc."
    assert admin_api(library, "PATCH", f"/clients/{acme['id']}", tok, json={"slug": "x"}).status_code == 400
    assert _acme(library, tok)["slug"] == "acme"


def test_admin_uploads_on_behalf_of_a_client(library):
    tok = session(library)["accessToken"]
    acme = _acme(library, tok)
    r = admin_api(library, "POST", "/images", tok, params={"clientId": acme["id"]},
                  files=[("file", ("by-admin.png", img(), "image/png")), ("tags[]", (None, "adminmade")),
                         ("externalUserId", (None, "zed")), ("isPrivate", (None, "true"))])
    assert r.status_code == 201, r.text
    m = r.json()
    assert m["clientId"] == acme["id"] and m["isPrivate"] and m["userId"] == "zed"
    no_client = admin_api(library, "POST", "/images", tok, files=[("file", ("by-admin.png", img(), "image/png"))])
    assert no_client.status_code == 400
    ownerless = admin_api(library, "POST", "/images", tok, params={"clientId": acme["id"]},
                          files=[("file", ("nobody.png", img(), "image/png")), ("isPrivate", (None, "true"))])
    assert ownerless.status_code == 400 and "externalUserId" in ownerless.json()["error"]
    assert not any(k.endswith("nobody.png") for k in library.stored_keys("acme/"))  # nothing kept


def test_admin_lists_gets_patches_and_deletes_any_clients_images(library):
    tok = session(library)["accessToken"]
    acme = _acme(library, tok)
    mine = created(library, isPrivate=True, user="alice", tags=["adminmade"])
    other = created(library, key=library.other_key, tags=["adminother"])
    listed = admin_api(library, "GET", "/images", tok, params={"limit": 100, "tag": "adminmade"}).json()
    assert mine["id"] in {i["id"] for i in listed["items"]}  # private images too
    tags = admin_api(library, "GET", "/images/tags", tok, params={"search": "admin", "limit": 10}).json()["items"]
    assert {"adminmade", "adminother"} <= {t["tag"] for t in tags}
    assert admin_api(library, "GET", f"/images/{other['id']}", tok).json()["clientId"] != acme["id"]
    r = admin_api(library, "PATCH", f"/images/{mine['id']}", tok, json={"description": "by admin"})
    assert r.status_code == 200 and r.json()["description"] == "by admin"
    assert admin_api(library, "DELETE", f"/images/{mine['id']}", tok).status_code == 204
    assert admin_api(library, "GET", f"/images/{mine['id']}", tok).status_code == 404


def test_admin_gets_and_deletes_any_clients_avatars(library):
    tok = session(library)["accessToken"]
    acme = _acme(library, tok)
    put_avatar(library, "admin-sees", img(50, 50))
    avs = admin_api(library, "GET", "/avatars", tok, params={"clientId": acme["id"], "limit": 100}).json()
    av = next(a for a in avs["items"] if a["externalUserId"] == "admin-sees")
    assert admin_api(library, "GET", f"/avatars/{av['id']}", tok).json()["mediaId"] == av["mediaId"]
    assert admin_api(library, "DELETE", f"/avatars/{av['id']}", tok).status_code == 204
    assert library.api("GET", f"{V2}/avatars/admin-sees").status_code == 404
    assert admin_api(library, "GET", "/avatars/%C2%B2", tok).status_code == 404
    assert admin_api(library, "GET", "/avatars/abc", tok).status_code == 404


def test_admin_lists_renames_and_deletes_any_clients_albums(library):
    tok = session(library)["accessToken"]
    aid = album_api(library, "POST", json={"name": "seen by admin"}).json()["id"]
    albums = admin_api(library, "GET", "/albums", tok, params={"limit": 100}).json()
    assert aid in {a["id"] for a in albums["items"]}
    r = admin_api(library, "PATCH", f"/albums/{aid}", tok, json={"name": "renamed"})
    assert r.status_code == 200 and r.json()["name"] == "renamed"
    assert admin_api(library, "GET", f"/albums/{aid}", tok).json()["name"] == "renamed"
    assert admin_api(library, "DELETE", f"/albums/{aid}", tok).status_code == 204
    assert album_api(library, "GET", f"/{aid}").status_code == 404


def test_throttle_address():
    from mediaproxy.library.auth import throttle_address

    assert throttle_address("203.0.113.7") == "203.0.113.7"
    assert throttle_address("2001:db8:1:2:3:4:5:6") == throttle_address("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert throttle_address("2001:db8:1:3::1") != throttle_address("2001:db8:1:2::1")
    assert throttle_address("::ffff:203.0.113.7") == "203.0.113.7"
    assert throttle_address(None) == "unknown"


def test_start_up_warns_when_no_proxy_is_trusted(library, behind_proxy):
    from pathlib import Path

    from mediaproxy.settings import Settings

    warning = "WARNING: MEDIAPROXY_TRUSTED_PROXY_CIDRS is empty"
    assert Path(library.server.log.name).read_text(errors="replace").count(warning) == 1  # the master's, once
    assert warning not in Path(behind_proxy.server.log.name).read_text(errors="replace")
    env = {"MEDIAPROXY_SECRET_KEY": "s" * 40, "MEDIAPROXY_INTERNAL_SECRET": "i" * 40}
    assert Settings.from_env(env).warnings() == []  # the origin alone has no admin logins
    assert len(Settings.from_env({**env, "MEDIAPROXY_MODE": "library"}).warnings()) == 1
    assert Settings.from_env({**env, "MEDIAPROXY_MODE": "all",
                              "MEDIAPROXY_TRUSTED_PROXY_CIDRS": "10.0.0.0/8"}).warnings() == []

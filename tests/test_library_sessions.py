"""Admin sessions over real HTTP: a logout ends its session at once (its access token is refused on
the next request), ``everywhere`` ends every session of the admin (refresh tokens and access
tokens), and failed logins slow down the guesser's (account, address) pair and address, never the
owner logging in from elsewhere — the client address as the trusted-proxy settings say."""

from __future__ import annotations

import time

import pytest

from .test_library_v2 import V2
from .test_library_v2_admin import PASSWORD, admin_api, locked_out, make_admin


def login(library, email: str, password: str = PASSWORD, address: str | None = None):
    headers = {"X-Forwarded-For": address} if address else {}
    return library.api("POST", f"{V2}/admin/auth/login", key=None, headers=headers,
                       json={"email": email, "password": password})


def refresh(library, token: str):
    return library.api("POST", f"{V2}/admin/auth/refresh", key=None, json={"refreshToken": token})


def me(library, session: dict) -> int:
    return admin_api(library, "GET", "/auth/me", session["accessToken"]).status_code


def test_logout_ends_its_session_at_once(library):
    email = make_admin(library)
    one, two = login(library, email).json(), login(library, email).json()
    assert me(library, one) == me(library, two) == 200
    r = admin_api(library, "POST", "/auth/logout", one["accessToken"], json={"refreshToken": one["refreshToken"]})
    assert r.status_code == 204
    assert me(library, one) == 401  # at once, not when the 15 minutes are over
    assert admin_api(library, "GET", "/stats", one["accessToken"]).status_code == 401
    assert refresh(library, one["refreshToken"]).status_code == 401
    assert me(library, two) == 200  # another session goes on
    # a rotated session: its newest access token ends with it, and so does every older one
    r = refresh(library, two["refreshToken"])
    assert r.status_code == 200
    rotated = r.json()
    assert me(library, rotated) == 200
    assert admin_api(library, "POST", "/auth/logout", rotated["accessToken"],
                     json={"refreshToken": rotated["refreshToken"]}).status_code == 204
    assert me(library, rotated) == me(library, two) == 401
    assert refresh(library, rotated["refreshToken"]).status_code == 401
    # logging out with another session's refresh token ends both
    three, four = login(library, email).json(), login(library, email).json()
    assert admin_api(library, "POST", "/auth/logout", three["accessToken"],
                     json={"refreshToken": four["refreshToken"]}).status_code == 204
    assert me(library, three) == me(library, four) == 401
    assert refresh(library, four["refreshToken"]).status_code == 401
    assert me(library, login(library, email).json()) == 200  # and a new login works


def test_logout_everywhere_ends_every_session(library):
    email = make_admin(library)
    sessions = [login(library, email).json() for _ in range(3)]
    other_admin = login(library, make_admin(library)).json()
    r = admin_api(library, "POST", "/auth/logout", sessions[0]["accessToken"],
                  json={"refreshToken": sessions[0]["refreshToken"], "everywhere": True})
    assert r.status_code == 204
    for s in sessions:
        assert me(library, s) == 401
        # no other session's refresh token mints a working token any more
        assert refresh(library, s["refreshToken"]).status_code == 401
    assert me(library, other_admin) == 200  # another admin's sessions are not this one's
    # without a refresh token: every session too
    a, b = login(library, email).json(), login(library, email).json()
    assert admin_api(library, "POST", "/auth/logout", a["accessToken"], json={}).status_code == 204
    assert me(library, a) == me(library, b) == 401 and refresh(library, b["refreshToken"]).status_code == 401


def test_an_access_token_without_its_session_is_refused(library):
    """A token signed with the right key but naming no session (as issued before sessions were
    recorded) or another admin's session is 401."""
    import hashlib
    import hmac

    import jwt

    from .server import SECRET

    t = login(library, make_admin(library)).json()
    other = login(library, make_admin(library)).json()
    claims = jwt.decode(t["accessToken"], options={"verify_signature": False})
    other_sid = jwt.decode(other["accessToken"], options={"verify_signature": False})["sid"]
    key = hmac.new(SECRET.encode(), b"mediaproxy admin access token", hashlib.sha256).digest()
    for forged in ({k: v for k, v in claims.items() if k != "sid"}, {**claims, "sid": other_sid},
                   {**claims, "sid": "0" * 32}, {**claims, "sid": ["x"]}):
        r = admin_api(library, "GET", "/auth/me", jwt.encode(forged, key, algorithm="HS256"))
        assert r.status_code == 401, forged
    assert admin_api(library, "GET", "/auth/me", jwt.encode(claims, key, algorithm="HS256")).status_code == 200


# -- failed logins ----------------------------------------------------------------------------------

ATTACKER, OWNER = "203.0.113.5", "198.51.100.7"


@pytest.fixture(scope="module", params=["local", "s3-pg-redis"])
def proxied(request, make_server, tmp_path_factory):
    """A library stack behind a trusted proxy (loopback): X-Forwarded-For names the client."""
    from .conftest import start_library

    stack = start_library(request, make_server, tmp_path_factory, request.param,
                          extra={"MEDIAPROXY_TRUSTED_PROXY_CIDRS": "127.0.0.1/32"}, worker=False)
    yield stack
    stack.stop()


def test_failed_logins_slow_the_attacker_not_the_owner(proxied):
    email = make_admin(proxied)
    assert [login(proxied, email, "wrong password!", ATTACKER).status_code for _ in range(5)] == [401] * 5
    # the owner, elsewhere, logs in at once (the guesser's pair waits 1 s now)
    r = login(proxied, email, address=OWNER)
    assert r.status_code == 200, r.text
    assert admin_api(proxied, "GET", "/auth/me", r.json()["accessToken"]).status_code == 200
    # the guesser waits before each further guess, twice as long after each wrong one (1, 2, 4 s...)
    for _ in range(3):
        r = login(proxied, email, "wrong password!", ATTACKER)
        if r.status_code == 429:
            time.sleep(int(r.headers["Retry-After"]) + 0.1)
            r = login(proxied, email, "wrong password!", ATTACKER)
        assert r.status_code == 401
    # now 8 s: even the right password waits from there...
    r = login(proxied, email, address=ATTACKER)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 2, r.text
    # ...while the owner logs in from elsewhere, again and again
    for _ in range(2):
        assert login(proxied, email, address=OWNER).status_code == 200
    assert login(proxied, email, "wrong password!", ATTACKER).status_code == 429


def test_one_address_guessing_many_accounts_is_slowed(proxied):
    from mediaproxy.library.auth import LOGIN_FREE_ADDR

    owner = make_admin(proxied)
    sprayer = "203.0.113.77"
    codes = [login(proxied, f"guess-{i}@example.com", "wrong password!", sprayer).status_code
             for i in range(LOGIN_FREE_ADDR)]
    assert codes == [401] * LOGIN_FREE_ADDR  # each pair is fresh; the address counts them all
    for i in range(3):  # a wait of 1 s, then 2 s...: on a slow machine the first may be over already
        r = login(proxied, f"guess-{LOGIN_FREE_ADDR + i}@example.com", "wrong password!", sprayer)
        if r.status_code != 401:
            break
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert login(proxied, owner, address=OWNER).status_code == 200  # another address is not slowed


def test_a_forwarded_address_is_not_believed_from_an_untrusted_peer(library):
    """Without trusted proxies, X-Forwarded-For is the client's own claim: changing it on each
    guess does not make a new pair."""
    email = make_admin(library)
    codes = [login(library, email, "wrong password!", f"192.0.2.{i}").status_code for i in range(5)]
    assert codes == [401] * 5
    others = iter(range(100, 200))
    locked_out(lambda: login(library, email, "wrong password!", f"192.0.2.{next(others)}"))
    r = login(library, email, address="192.0.2.200")  # the right password, "from" yet another address
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


# -- migration 0007 -----------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/sessions.db"
    return request.getfixturevalue("postgres").new_database()


def test_migration_makes_sessions_of_existing_refresh_tokens_and_goes_back(db_url):
    """Refresh tokens issued under 0006 become sessions (revoked when all their tokens are); an
    access token of a live one works after the upgrade; a downgrade drops the table and a second
    upgrade makes the same sessions again."""
    from datetime import datetime, timedelta

    from alembic import command
    from sqlalchemy import delete, insert, inspect, select

    from mediaproxy.library import auth
    from mediaproxy.library.db import Database, alembic_config, current, upgrade
    from mediaproxy.library.models import Admin, AdminSession, RefreshToken

    d = Database(db_url)
    try:
        upgrade(d.engine, "0006")
        t0, later = datetime(2026, 1, 1), datetime(2026, 1, 2)
        with d.engine.begin() as conn:
            conn.execute(insert(Admin), [{"id": 1, "email": "a@example.com", "name": "", "password_hash": "x",
                                          "token_version": 0, "created_at": t0, "updated_at": t0}])
            conn.execute(insert(RefreshToken), [
                {"admin_id": 1, "family": family, "digest": dig, "expires_at": t0 + timedelta(days=60),
                 "used_at": None, "revoked_at": revoked, "created_at": created}
                for family, dig, revoked, created in [
                    ("live", "d1", None, t0), ("live", "d2", None, later),
                    ("gone", "d3", later, t0), ("gone", "d4", t0, later),
                    ("half", "d5", t0, t0), ("half", "d6", None, later)]])

        def sessions() -> set:
            with d.engine.connect() as conn:
                return set(conn.execute(select(AdminSession.id, AdminSession.admin_id, AdminSession.created_at,
                                               AdminSession.revoked_at)))

        want = {("live", 1, t0, None), ("gone", 1, t0, later), ("half", 1, t0, None)}
        upgrade(d.engine, "0007")
        assert current(d.engine) == "0007"
        assert sessions() == want
        upgrade(d.engine, "head")
        secret = "k" * 32
        with d.transaction() as s:
            admin = s.get(Admin, 1)
            _, sid = auth.issue_refresh(s, admin)
            access = auth.access_token(admin, sid, secret)
        with d.transaction() as s:
            a, got = auth.admin_from_token(s, access, secret)
            assert (a.id, got) == (1, sid)
            auth.revoke_family(s, sid)
        with d.transaction() as s, pytest.raises(auth.Unauthorized):
            auth.admin_from_token(s, access, secret)
        with d.engine.begin() as conn:
            conn.execute(delete(RefreshToken).where(RefreshToken.family == sid))
        command.downgrade(alembic_config(d.engine), "0006")
        assert "admin_sessions" not in inspect(d.engine).get_table_names()
        upgrade(d.engine, "head")
        assert sessions() == want
    finally:
        d.dispose()


# -- API keys from the command line -------------------------------------------------------------------

def cli(library, *args: str):
    import subprocess

    from .library import MEDIAPROXY
    from .server import ROOT

    return subprocess.run([MEDIAPROXY, *args], cwd=ROOT, env=library.env, capture_output=True, text=True,
                          timeout=60)


def test_keys_list_and_revoke(library):
    org = f"keys-{time.monotonic_ns() % 10**9}"
    out = cli(library, "keys", "create", "--org", org, "--name", "ci key")
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip().splitlines()[-1]
    prefix, secret = key.split("_")[1], key.split("_", 2)[2]
    status = lambda k: library.api("GET", f"{V2}/status", key=k).status_code  # noqa: E731
    assert status(key) == 200
    out = cli(library, "keys", "list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "prefix\torg\tname\tcreated\trevoked"
    mine = [line.split("\t") for line in lines[1:] if line.startswith(prefix)]
    assert len(mine) == 1 and mine[0][1:3] == [org, "ci key"] and mine[0][3].endswith("Z") and mine[0][4] == "-"
    assert secret not in out.stdout and key not in out.stdout
    only = cli(library, "keys", "list", "--org", org).stdout.splitlines()
    assert len(only) == 2 and only[1].startswith(prefix)
    # revoked: refused on the very next request, on every API
    out = cli(library, "keys", "revoke", prefix)
    assert out.returncode == 0 and prefix in out.stdout and org in out.stdout, out.stderr
    assert status(key) == 401
    assert library.api("GET", "/api/v1/media/list", key=key).status_code == 401
    assert library.api("POST", "/media", key=key, headers={"X-User-Id": "u"},
                       json={"filename": "a.png", "contentType": "image/png"}).status_code == 401
    assert status(library.key) == 200  # the others still work
    revoked = [line.split("\t") for line in cli(library, "keys", "list", "--org", org).stdout.splitlines()[1:]]
    assert revoked[0][4].endswith("Z")
    again = cli(library, "keys", "revoke", key)  # the whole key names its prefix too; revoked once
    assert again.returncode == 0 and revoked[0][4] in again.stdout
    assert cli(library, "keys", "revoke", "0" * 12).returncode == 1
    bad = cli(library, "keys", "revoke", "not-a-prefix")
    assert bad.returncode == 2 and "prefix" in bad.stderr

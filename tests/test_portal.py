"""The admin portal in a real browser: Playwright (PyPI) driving Debian's chromium against a real
gunicorn, ``mediaproxy worker`` and SQLite database. One browser for the module; screenshots of
each page go to ``$MEDIAPROXY_TEST_OUTPUT/portal`` (default ``var/test-output/portal``)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from email import message_from_bytes
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from .browser import CHROMIUM, launch
from .library import MEDIAPROXY, Worker, create_key, library_env
from .server import ROOT, Server, free_port
from .test_library_v2 import img

PASSWORD = "portal password 1"
HOSTILE = '<img src=x onerror="window.__pwned=1">'
HOSTILE_SCRIPT = '<script>window.__pwned=2</script>'
OUT = Path(os.environ.get("MEDIAPROXY_TEST_OUTPUT", ROOT / "var" / "test-output")) / "portal"

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (scripts/deps)")


class Portal:
    def __init__(self, srv: Server, workdir: Path):
        self.srv, self.base, self.env = srv, srv.base, srv.env
        self.key = create_key(self.env, "acme")
        self.other_key = create_key(self.env, "beta")
        self.worker = Worker(self.env, workdir / "worker.log")
        self.email = f"ops-{time.monotonic_ns()}@example.com"
        out = subprocess.run([MEDIAPROXY, "admin", "create", "--email", self.email], cwd=ROOT, env=self.env,
                             input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr

    def api(self, method: str, path: str, token: str | None = None, key: str | None = None, **kw):
        headers = dict(kw.pop("headers", {}) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if key:
            headers["X-API-Key"] = key
        return requests.request(method, self.base + path, headers=headers, timeout=60, **kw)

    def token(self) -> str:
        r = self.api("POST", "/v2/admin/auth/login", json={"email": self.email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return r.json()["accessToken"]

    def upload(self, key: str | None = None, filename: str = "photo.png", user: str | None = "alice", tags=(),
               **fields) -> dict:
        form = [("file", (filename, img(), "application/octet-stream"))]
        form += [("tags[]", (None, t)) for t in tags]
        form += [(k, (None, str(v).lower() if isinstance(v, bool) else str(v))) for k, v in fields.items()]
        headers = {"X-User-Id": user} if user else {}
        r = self.api("POST", "/v2/images", key=key or self.key, files=form, headers=headers)
        assert r.status_code == 201, r.text
        return r.json()

    def wait_placeholders(self, ids: list[str], token: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(self.api("GET", f"/v2/admin/images/{i}", token).json().get("blurHash") for i in ids):
                return
            time.sleep(0.2)
        raise AssertionError("the worker did not make the placeholders")


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("portal")
    srv = Server("local", workdir, env=library_env(workdir), workers=1, threads=8)
    try:
        p = Portal(srv, workdir)
    except BaseException:
        srv.stop()
        raise
    yield p
    p.worker.stop()
    srv.stop()


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    with playwright_api.sync_playwright() as pw:
        ctx = launch(pw, profile)
        ctx.set_default_timeout(30_000)
        yield ctx
        ctx.close()


@pytest.fixture()
def page(context):
    pg = context.new_page()
    pg.dialogs = []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    yield pg
    pg.close()


def shot(page, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)


def sign_in(page, portal) -> None:
    page.goto(f"{portal.base}/admin/#/signin")
    page.get_by_label("Email").fill(portal.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Dashboard").wait_for()


def grid_ids(page) -> list[str]:
    page.wait_for_selector("ul.grid[data-ready=true]")
    return page.eval_on_selector_all("ul.grid li.cell", "els => els.map(e => e.dataset.id)")


def parts(r) -> dict[str, tuple[str, bytes]]:
    """A multipart/form-data answer's parts: name → (content type, bytes)."""
    msg = message_from_bytes(b"Content-Type: " + r.headers["Content-Type"].encode() + b"\r\n\r\n" + r.content,
                             policy=HTTP)
    return {p.get_param("name", header="content-disposition"): (p.get_content_type(), p.get_payload(decode=True))
            for p in msg.iter_parts()}


def fallback(portal) -> bytes:
    return portal.api("GET", "/v2/images/" + "0" * 32).content


def test_pages_carry_a_strict_policy(portal):
    r = portal.api("GET", "/admin/")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["Referrer-Policy"] == "no-referrer"
    assert '<meta name="mp-api" content="/v2">' in r.text and "<script>" not in r.text
    assert portal.api("GET", "/admin", allow_redirects=False).headers["Location"].endswith("/admin/")
    assert portal.api("GET", "/admin/static/app.js").headers["Content-Type"].startswith("text/javascript")
    assert portal.api("GET", "/admin/static/..%2Fweb.py").status_code == 404
    # the session routes: the portal's own origin only; without a session, nothing to refresh
    own = {"Origin": portal.base}
    assert portal.api("POST", "/admin/session/refresh", headers=own).status_code == 401
    assert portal.api("POST", "/admin/session/refresh").status_code == 403
    assert portal.api("POST", "/admin/session", headers={"Origin": "http://evil.example"},
                      json={"email": portal.email, "password": PASSWORD}).status_code == 403
    r = portal.api("POST", "/admin/session", headers=own, json={"email": portal.email, "password": PASSWORD})
    assert r.status_code == 200 and "refreshToken" not in r.json() and r.json()["accessToken"]
    cookie = r.cookies.get("mediaproxy_portal_refresh")
    assert cookie and "HttpOnly" in r.headers["Set-Cookie"] and "SameSite=Strict" in r.headers["Set-Cookie"]
    forged = portal.api("POST", "/admin/session/logout", headers=own, cookies={"mediaproxy_portal_refresh": cookie},
                        json={"everywhere": True})
    assert forged.status_code == 403  # no CSRF token: the session lives on
    csrf = r.json()["csrfToken"]
    again = portal.api("POST", "/admin/session/refresh", headers={**own, "X-CSRF-Token": csrf},
                       cookies={"mediaproxy_portal_refresh": cookie})
    assert again.status_code == 200, again.text
    # a signed image URL is refused once tampered with, and the signing needs the admin's token
    assert portal.api("GET", "/v2/admin/images/signed?ids=x&w=10&h=10").status_code == 401


def test_a_stale_refresh_cookie_cannot_end_other_sessions(portal):
    own = {"Origin": portal.base}
    r = portal.api("POST", "/admin/session", headers=own, json={"email": portal.email, "password": PASSWORD})
    old, old_csrf = r.cookies.get("mediaproxy_portal_refresh"), r.json()["csrfToken"]
    rotated = portal.api("POST", "/admin/session/refresh", headers={**own, "X-CSRF-Token": old_csrf},
                         cookies={"mediaproxy_portal_refresh": old})
    assert rotated.status_code == 200, rotated.text  # the old cookie is now a used copy
    other = portal.token()  # another session of the same admin, signed in elsewhere
    out = portal.api("POST", "/admin/session/logout", headers={**own, "X-CSRF-Token": old_csrf},
                     cookies={"mediaproxy_portal_refresh": old}, json={"everywhere": True})
    assert out.status_code == 204
    assert portal.api("GET", "/v2/admin/stats", other).status_code == 200  # the copy reached only its own family
    assert portal.api("POST", "/admin/session/refresh", headers={**own, "X-CSRF-Token": rotated.json()["csrfToken"]},
                      cookies={"mediaproxy_portal_refresh": rotated.cookies.get("mediaproxy_portal_refresh")}
                      ).status_code == 401  # ... which ends, as a refresh with a used copy ends it


def test_portal_cookies_are_secure_off_loopback(portal):
    host = "media.example.com"
    r = portal.api("POST", "/admin/session", headers={"Host": host, "Origin": f"http://{host}"},
                   json={"email": portal.email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    cookies = r.raw.headers.getlist("Set-Cookie")
    assert {c.split("=", 1)[0] for c in cookies} >= {"mediaproxy_portal_refresh", "mediaproxy_portal_csrf",
                                                     "mediaproxy_admin_device"}
    assert all("Secure" in c for c in cookies), cookies


def test_sign_in_dashboard_matches_the_api(page, portal):
    token = portal.token()
    portal.upload(filename="one.png", tags=["sea"])
    sign_in(page, portal)
    page.wait_for_selector("[data-stat=images] .value")
    stats = portal.api("GET", "/v2/admin/stats", token).json()
    shown = {k: page.inner_text(f"[data-stat={k}] .value") for k in ("clients", "images", "privateImages", "albums",
                                                                     "avatars")}
    assert shown == {k: f"{stats.get(k, 0):,}" for k in shown}
    uploads = portal.api("GET", "/v2/admin/stats/uploads?days=30", token).json()["items"]
    assert len(uploads) == 30 and sum(d["images"] for d in uploads) == stats["images"]
    keys = portal.api("GET", f"/v2/admin/clients/{stats['perClient'][0]['id']}/keys", token).json()["items"]
    assert [k["state"] for k in keys] == ["active"] and all("secret" not in k and "key" not in k for k in keys)
    assert page.locator("svg.chart").count() >= 2
    shot(page, "dashboard")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "dashboard-phone")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_grid_filters_detail_and_share_link(page, portal):
    token = portal.token()
    a = portal.upload(filename="harbour.png", tags=["harbour"], description="boats at dawn")
    b = portal.upload(filename="secret.png", tags=["harbour"], isPrivate=True)
    c = portal.upload(filename="other.png", tags=["forest"])
    portal.wait_placeholders([a["id"], b["id"], c["id"]], token)
    sign_in(page, portal)
    page.goto(f"{portal.base}/admin/#/images")
    page.get_by_label("Tag", exact=True).fill("harb")
    page.wait_for_selector("#tag-suggestions option[value=harbour]", state="attached")
    page.get_by_label("Tag", exact=True).fill("harbour")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_function("location.hash.includes('tag=harbour')")
    assert sorted(grid_ids(page)) == sorted([a["id"], b["id"]])
    # every thumbnail loaded, the private one too (in the admin's one request for the page's thumbnails)
    drawn = page.eval_on_selector_all("ul.grid .frame", "els => els.map(e => e.classList.contains('loaded') && "
                                      "e.querySelector('canvas').width)")
    assert all(w and w >= 96 for w in drawn), drawn  # the thumbnail drawn, not the 16 px placeholder
    assert page.get_by_role("img", name="boats at dawn").count() == 1  # the canvas reads as its image
    shot(page, "images")
    page.get_by_label("Text").fill("dawn")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_function("location.hash.includes('search=dawn')")
    assert grid_ids(page) == [a["id"]]
    page.get_by_label("Privacy").select_option("true")
    page.get_by_label("Text").fill("")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_function("location.hash.includes('isPrivate=true')")
    assert grid_ids(page) == [b["id"]]

    # the private image's detail: metadata, variants, a share link created then revoked
    page.click(f"li[data-id='{b['id']}'] a")
    page.get_by_role("heading", name="secret.png").wait_for()
    # the image itself through a signed URL, not a public one; a tampered one is refused
    page.wait_for_function("() => document.querySelector('img.full').naturalWidth > 0")
    src = page.get_attribute("img.full", "src")
    assert "/admin/media/" in src and portal.api("GET", src.replace(portal.base, "")).status_code == 200
    assert portal.api("GET", src.replace(portal.base, "").replace("&s=", "&s=0")).status_code == 403
    assert page.locator("table caption", has_text="Variants").count() == 1
    page.get_by_role("button", name="Create share link").click()
    url = page.locator("input.share-url").input_value()
    assert "/v2/images/share/" in url
    served = requests.get(url, timeout=30)
    assert served.status_code == 200 and served.content != fallback(portal)
    shot(page, "image")
    page.get_by_role("button", name="Revoke").first.click()
    page.wait_for_selector("table.shares td.state:text('revoked')")
    assert requests.get(url, timeout=30).content == fallback(portal)


def test_upload_with_progress_and_bulk_delete(page, portal):
    token = portal.token()
    sign_in(page, portal)
    page.goto(f"{portal.base}/admin/#/images")
    page.wait_for_selector("ul.grid[data-ready=true]")
    page.get_by_label("Client", exact=True).last.select_option(label="beta")
    page.get_by_label("Tags (comma-separated)").fill("bulk-one")
    page.set_input_files("input[type=file]", [
        {"name": "up-1.png", "mimeType": "image/png", "buffer": img(900, 700)},
        {"name": "up-2.png", "mimeType": "image/png", "buffer": img(640, 480, (10, 200, 10))},
    ])
    page.wait_for_selector(".progress li:nth-child(2) span:text('uploaded')")
    assert page.eval_on_selector_all(".progress progress", "els => els.map(e => e.value)") == [100, 100]
    beta = next(c["id"] for c in portal.api("GET", "/v2/admin/clients", token).json()["items"] if c["slug"] == "beta")
    listed = portal.api("GET", f"/v2/admin/images?clientId={beta}&tag=bulk-one", token).json()["items"]
    assert sorted(i["filename"] for i in listed) == ["up-1.png", "up-2.png"]
    page.goto(f"{portal.base}/admin/#/images?tag=bulk-one")
    page.wait_for_function("location.hash.includes('tag=bulk-one')")
    assert sorted(grid_ids(page)) == sorted(i["id"] for i in listed)
    page.get_by_role("button", name="Select page").click()
    page.get_by_role("button", name="Delete", exact=True).click()
    page.locator("dialog.confirm").get_by_role("button", name="Delete").click()
    page.wait_for_selector("#status:text('Delete: done.')")
    for i in listed:
        assert portal.api("GET", f"/v2/admin/images/{i['id']}", token).status_code == 404


def test_hostile_text_is_shown_not_run(page, portal):
    token = portal.token()
    beta = next(c["id"] for c in portal.api("GET", "/v2/admin/clients", token).json()["items"] if c["slug"] == "beta")
    assert portal.api("PATCH", f"/v2/admin/clients/{beta}", token, json={"name": HOSTILE}).status_code == 200
    m = portal.upload(key=portal.other_key, filename=HOSTILE + ".png", tags=[HOSTILE[:60]],
                      description=HOSTILE + HOSTILE_SCRIPT)
    sign_in(page, portal)
    for route in ("/dashboard", "/clients", f"/clients/{beta}", f"/images?clientId={beta}", f"/images/{m['id']}"):
        page.goto(f"{portal.base}/admin/#{route}")
        page.wait_for_selector("main h1")
        page.wait_for_load_state("networkidle")
    # the library keeps a safe spelling of the file name; the tag, description and client name are kept as sent
    page.get_by_role("heading", name=m["filename"]).wait_for()
    assert page.get_by_text(HOSTILE[:60]).count() >= 1  # the tag
    assert page.locator("dd", has_text=HOSTILE + HOSTILE_SCRIPT).count() == 1  # the text itself, shown
    assert page.locator("main script, main img[src=x]").count() == 0
    assert page.evaluate("window.__pwned") is None and page.dialogs == []


class _Foreign(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<!doctype html><title>elsewhere</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_forged_session_requests_are_refused(page, portal):
    sign_in(page, portal)
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "mediaproxy_portal_csrf")
    foreign = ThreadingHTTPServer(("127.0.0.1", free_port()), _Foreign)
    threading.Thread(target=foreign.serve_forever, daemon=True).start()
    try:
        evil = page.context.new_page()
        evil.goto(f"http://127.0.0.1:{foreign.server_address[1]}/")
        # another origin on the same site: SameSite lets the cookie go, the origin check does not
        status = evil.evaluate("""async ([url, csrf]) => (await fetch(url, {method: 'POST', mode: 'no-cors',
            credentials: 'include', headers: {'Content-Type': 'text/plain'}, body: '{"everywhere": true}'})).status""",
                               [f"{portal.base}/admin/session/logout", csrf])
        assert status == 0  # opaque: the answer is not for that page to read
        evil.close()
        # the same origin without the CSRF token
        status = page.evaluate("""async () => (await fetch('/admin/session/logout', {method: 'POST',
            body: '{"everywhere": true}'})).status""")
        assert status == 403
        # and over plain HTTP, with the cookies and a foreign Origin
        cookies = {c["name"]: c["value"] for c in page.context.cookies()}
        r = requests.post(f"{portal.base}/admin/session/refresh", cookies=cookies, timeout=30,
                          headers={"Origin": "http://evil.example", "X-CSRF-Token": csrf})
        assert r.status_code == 403
    finally:
        foreign.shutdown()
    # nothing of it changed the session: the portal still works
    page.goto(f"{portal.base}/admin/#/profile")
    page.get_by_role("heading", name="Profile").wait_for()
    page.reload()
    page.get_by_role("heading", name="Profile").wait_for()


def test_sign_out_and_a_revoked_session(page, portal):
    sign_in(page, portal)
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in").wait_for()
    shot(page, "signin")
    page.goto(f"{portal.base}/admin/#/images")
    page.get_by_role("heading", name="Sign in").wait_for()  # the cookie's session is over
    sign_in(page, portal)
    page.goto(f"{portal.base}/admin/#/profile")
    page.get_by_role("heading", name="Profile").wait_for()
    shot(page, "profile")
    # revoked elsewhere: every session of this admin ends
    token = portal.token()
    assert portal.api("POST", "/v2/admin/auth/logout", token, json={"everywhere": True}).status_code == 204
    page.goto(f"{portal.base}/admin/#/clients")
    page.get_by_role("heading", name="Sign in").wait_for()
    assert "session has ended" in page.inner_text("#status") or page.url.endswith("#/signin")


def test_every_page_renders(page, portal):
    token = portal.token()
    m = portal.upload(filename="album-pic.png", user="carol")
    r = portal.api("POST", "/v2/albums", key=portal.key, headers={"X-User-Id": "carol"},
                   json={"name": "Trips", "isPublic": False})
    album = r.json()
    portal.api("POST", f"/v2/albums/{album['id']}/images", key=portal.key, headers={"X-User-Id": "carol"},
               json={"imageIds": [m["id"]]})
    r = portal.api("POST", "/v2/avatars", key=portal.key, files={"file": ("a.png", img(), "image/png")},
                   data={"externalUserId": "carol"})
    assert r.status_code == 201, r.text
    acme = next(c["id"] for c in portal.api("GET", "/v2/admin/clients", token).json()["items"] if c["slug"] == "acme")
    sign_in(page, portal)
    for route, heading, name in (("/clients", "Clients", "clients"), (f"/clients/{acme}", "Client acme", "client"),
                                 ("/albums", "Albums", "albums"), (f"/albums/{album['id']}", "Album Trips", "album"),
                                 ("/avatars", "Avatars", "avatars")):
        page.goto(f"{portal.base}/admin/#{route}")
        page.get_by_role("heading", name=heading).wait_for()
        page.wait_for_load_state("networkidle")
        shot(page, name)
    page.goto(f"{portal.base}/admin/#/albums/{album['id']}")
    page.get_by_role("button", name="Create access token").click()
    link = page.locator("input.share-url").input_value()
    assert f"/v2/albums/{album['id']}?token=" in link
    page.get_by_role("button", name="Revoke").first.click()
    page.wait_for_selector("#status:text('Token revoked.')")
    tokens = portal.api("GET", f"/v2/admin/albums/{album['id']}/tokens", token).json()["items"]
    assert [t["state"] for t in tokens] == ["revoked"]
    page.goto(f"{portal.base}/admin/#/avatars")
    page.get_by_role("link", name="carol").click()
    page.get_by_role("button", name="Delete avatar").click()
    page.locator("dialog.confirm").get_by_role("button", name="Delete").click()
    page.get_by_role("heading", name="Avatars").wait_for()
    assert portal.api("GET", "/v2/admin/avatars", token).json()["total"] == 0



def test_thumbnails_of_a_page_in_one_answer(portal):
    token = portal.token()
    a = portal.upload(filename="t-one.png")
    b = portal.upload(filename="t-two.png", isPrivate=True)
    ids = f"{b['id']},{'9' * 18},{a['id']}"
    assert portal.api("GET", f"/v2/admin/images/thumbnails?ids={ids}&w=96&h=96").status_code == 401
    r = portal.api("GET", f"/v2/admin/images/thumbnails?ids={ids}&w=96&h=96", token)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert "private" in r.headers["Cache-Control"]
    got = parts(r)
    assert list(got) == [b["id"], a["id"]]  # in the order asked; an id that is no image left out
    for ctype, data in got.values():
        assert ctype == "image/webp" and data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    # the same bytes as the signed URL of that size serves (the same pipeline and result cache)
    url = portal.api("GET", f"/v2/admin/images/signed?ids={b['id']}&w=96&h=96", token).json()["urls"][b["id"]]
    assert portal.api("GET", url.replace(portal.base, "")).content == got[b["id"]][1]
    for bad in ("w=401&h=96", "w=96&h=96&fit=fill", "w=96"):
        r = portal.api("GET", f"/v2/admin/images/thumbnails?ids={a['id']}&{bad}", token)
        assert r.status_code == 400 and r.json()["error"], bad
    # a picture that cannot be rendered (its stored bytes broken) leaves its part out, not the page
    data = img(333, 222, (1, 2, 3))
    form = [("file", ("t-broken2.png", data, "image/png"))]
    broken = portal.api("POST", "/v2/images", key=portal.key, files=form, headers={"X-User-Id": "alice"}).json()
    stored = [p for p in Path(portal.env["MEDIAPROXY_STORAGE"]).rglob("*") if p.is_file() and p.read_bytes() == data]
    assert len(stored) == 1
    stored[0].write_bytes(b"\x89PNG\r\n\x1a\n" + b"not a picture" * 50)
    r = portal.api("GET", f"/v2/admin/images/thumbnails?ids={broken['id']},{a['id']}&w=77&h=77", token)
    assert r.status_code == 200 and list(parts(r)) == [a["id"]]
    many = ",".join([a["id"]] * 101)
    assert portal.api("GET", f"/v2/admin/images/thumbnails?ids={many}&w=96&h=96", token).status_code == 400


def test_client_search_is_the_apis(page, portal):
    token = portal.token()
    for slug, name in (("search-north", "Northwind Traders"), ("search-south", "Southern 100% Cotton")):
        create_key(portal.env, slug)
        cid = next(c["id"] for c in portal.api("GET", "/v2/admin/clients?limit=100", token).json()["items"]
                   if c["slug"] == slug)
        assert portal.api("PATCH", f"/v2/admin/clients/{cid}", token, json={"name": name}).status_code == 200

    def found(q: str) -> list[str]:
        r = portal.api("GET", "/v2/admin/clients", token, params={"search": q})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total"] == len(body["items"])
        return [c["slug"] for c in body["items"]]

    assert found("SEARCH-") == ["search-north", "search-south"]  # the slug, any case
    assert found("northwind") == ["search-north"]  # the name
    assert found("100%") == ["search-south"] and found("%") == ["search-south"]  # literally, not a pattern
    assert found("h_n") == []  # "_" as a pattern would match the "h-n" of search-north
    assert found("no such client") == []
    assert portal.api("GET", "/v2/admin/clients", token, params={"search": "x" * 256}).status_code == 400

    sign_in(page, portal)
    page.goto(f"{portal.base}/admin/#/clients")
    page.get_by_role("heading", name="Clients").wait_for()
    page.get_by_label("Search clients").fill("Northwind")
    with page.expect_response(lambda r: "/v2/admin/clients?search=Northwind" in r.url) as asked:
        page.get_by_role("button", name="Search").click()
    assert asked.value.status == 200  # the API searched, not the page
    page.wait_for_selector("table caption:text('1 client(s)')")
    assert page.eval_on_selector_all("table tbody tr td:nth-child(2)", "els => els.map(e => e.textContent)") == [
        "search-north"]


def test_avatars_show_their_pictures(page, portal):
    token = portal.token()
    r = portal.api("POST", "/v2/avatars", key=portal.key, files={"file": ("d.png", img(), "image/png")},
                   data={"externalUserId": "dave"})
    assert r.status_code == 201, r.text
    listed = portal.api("GET", "/v2/admin/avatars", token).json()["items"]
    dave = next(a for a in listed if a["externalUserId"] == "dave")
    got = parts(portal.api("GET", f"/v2/admin/images/thumbnails?ids={dave['mediaId']}&w=48&h=48", token))
    assert got[dave["mediaId"]][0] == "image/webp"
    sign_in(page, portal)
    page.goto(f"{portal.base}/admin/#/avatars")
    pic = page.get_by_role("img", name="Avatar of dave")
    pic.wait_for()
    page.wait_for_function("() => [...document.querySelectorAll('img.avatar')]"
                           ".every(e => e.complete && e.naturalWidth)")
    assert page.locator("text=No picture").count() == 0
    page.get_by_role("link", name="dave").click()
    page.get_by_role("heading", name="Avatar of dave").wait_for()
    page.wait_for_function("() => (document.querySelector('img.avatar') || {}).naturalWidth")

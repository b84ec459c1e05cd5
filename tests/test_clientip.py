"""The client IP allow-list: address parsing and X-Forwarded-For rules, the
settings that load the shipped CDN lists, and the guard over real HTTP from
several loopback source addresses (127.0.0.1, .2, .3 and ::1)."""

from __future__ import annotations

import http.client
import ipaddress
import socket
from pathlib import Path

import pytest

from mediaproxy.clientip import NetworkSet, client_address, parse_addr
from mediaproxy.data import refresh
from mediaproxy.errors import ConfigError
from mediaproxy.settings import Settings

from . import media
from .origin import Origin
from .server import Server


def nets(*cidrs: str) -> NetworkSet:
    return NetworkSet(ipaddress.ip_network(c) for c in cidrs)


# -- units --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ("203.0.113.7:4711", "203.0.113.7"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("fe80::1%eth0", "fe80::1"),
        ("", None),
        ("unknown", None),
        ("203.0.113.7:", None),
        ("203.0.113.7:http", None),
        ("[2001:db8::1", None),
        ("[2001:db8::1]x", None),
        ("999.1.1.1", None),
        ("example.com", None),
        ("203.0.113.7 198.51.100.1", None),
    ],
)
def test_parse_addr(text, expected):
    got = parse_addr(text)
    assert (str(got) if got is not None else None) == expected


PROXIES = nets("10.0.0.0/8", "127.0.0.3/32")


@pytest.mark.parametrize(
    ("peer", "xff", "client"),
    [
        ("198.51.100.1", None, "198.51.100.1"),  # no proxy: the peer
        ("198.51.100.1", "203.0.113.7", "198.51.100.1"),  # untrusted peer: the header is ignored
        ("10.1.1.1", None, "10.1.1.1"),  # a trusted proxy that forwarded nothing is the client
        ("10.1.1.1", "203.0.113.7", "203.0.113.7"),
        ("10.1.1.1", "203.0.113.7, 10.2.2.2", "203.0.113.7"),  # trusted hops skipped from the right
        ("10.1.1.1", "192.0.2.66, 203.0.113.7", "203.0.113.7"),  # left of the client: never read
        ("10.1.1.1", "203.0.113.7, 198.51.100.1", "198.51.100.1"),
        ("10.1.1.1", "10.3.3.3, 10.2.2.2", "10.3.3.3"),  # all trusted: the leftmost
        ("10.1.1.1", "garbage", None),
        ("10.1.1.1", "203.0.113.7, garbage", None),
        ("10.1.1.1", "203.0.113.7,", None),
        ("10.1.1.1", "", None),
        ("10.1.1.1", "[2001:db8::5]:1234", "2001:db8::5"),
        ("::ffff:10.1.1.1", "203.0.113.7", "203.0.113.7"),  # dual-stack socket: the mapped peer
        ("", "203.0.113.7", None),  # no peer address (a unix socket): unknown
    ],
)
def test_client_address(peer, xff, client):
    environ = {"REMOTE_ADDR": peer}
    if xff is not None:
        environ["HTTP_X_FORWARDED_FOR"] = xff
    got = client_address(environ, PROXIES)
    assert (str(got) if got is not None else None) == client


def test_shipped_cloudflare_list_and_file_lists(tmp_path):
    s = Settings.from_env({"MEDIAPROXY_DEMO": "1", "MEDIAPROXY_TRUSTED_CLIENT_CIDRS": "@cloudflare"})
    allowed = NetworkSet(s.trusted_client_cidrs)
    assert allowed.v4 and allowed.v6
    assert ipaddress.ip_address("173.245.48.1") in allowed and ipaddress.ip_address("2606:4700::1") in allowed
    assert ipaddress.ip_address("8.8.8.8") not in allowed
    own = tmp_path / "edges.txt"
    own.write_text("# my CDN\n192.0.2.0/24  # edge A\n\n2001:db8::/32\n")
    s = Settings.from_env({"MEDIAPROXY_DEMO": "1", "MEDIAPROXY_TRUSTED_CLIENT_CIDRS": f"@{own}, 198.51.100.7",
                           "MEDIAPROXY_TRUSTED_PROXY_CIDRS": "@cloudflare"})
    assert [str(n) for n in s.trusted_client_cidrs] == ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7/32"]
    assert len(s.trusted_proxy_cidrs) > 10
    for bad in ("@nosuchprovider", f"@{tmp_path}/missing.txt", "@../../etc/passwd", "@"):
        with pytest.raises(ConfigError):
            Settings.from_env({"MEDIAPROXY_DEMO": "1", "MEDIAPROXY_TRUSTED_CLIENT_CIDRS": bad})
    own.write_text("192.0.2.0/24\nnot-a-network\n")
    with pytest.raises(ConfigError, match="not-a-network"):
        Settings.from_env({"MEDIAPROXY_DEMO": "1", "MEDIAPROXY_TRUSTED_CLIENT_CIDRS": f"@{own}"})


def test_refresh_rewrites_a_list_only_from_valid_data(tmp_path):
    origin = Origin()
    try:
        v4 = origin.add("/ips-v4", b"173.245.48.0/20\n103.21.244.0/22\n", content_type="text/plain")
        v6 = origin.add("/ips-v6", b"2400:cb00::/32\n", content_type="text/plain")
        bad = origin.add("/bad", b"173.245.48.0/20\n<html>oops</html>\n", content_type="text/plain")
        out = tmp_path / "cf.txt"
        assert refresh.main(["cloudflare", "-o", str(out), "--url", v4, "--url", v6]) == 0
        s = Settings.from_env({"MEDIAPROXY_DEMO": "1", "MEDIAPROXY_TRUSTED_CLIENT_CIDRS": f"@{out}"})
        assert [str(n) for n in s.trusted_client_cidrs] == ["173.245.48.0/20", "103.21.244.0/22", "2400:cb00::/32"]
        before = out.read_text()
        assert refresh.main(["cloudflare", "-o", str(out), "--url", bad]) == 1
        assert refresh.main(["cloudflare", "-o", str(out), "--url", origin.url("/missing")]) == 1
        assert out.read_text() == before
    finally:
        origin.stop()
    shipped = Path(refresh.__file__).with_name("cloudflare.txt").read_text()
    assert refresh.parse_list(shipped)  # the shipped file is what the refresher would write: parseable


# -- over HTTP ----------------------------------------------------------------------------------


class Guarded(Server):
    """gunicorn listening on 127.0.0.1 and [::1], with the allow-list on."""

    def __init__(self, workdir: Path, env: dict[str, str]):
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            self.port6 = s.getsockname()[1]
        super().__init__("local", workdir, env=env, threads=2, extra_args=("-b", f"[::1]:{self.port6}"))
        self.port4 = self.port

    def put(self, key: str, data: bytes) -> None:  # type: ignore[override]
        super().put("cdn", key, data)

    def request(self, path: str, source: str = "127.0.0.1", headers: list[tuple[str, str]] = (),
                method: str = "GET", body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        v6 = ":" in source
        conn = http.client.HTTPConnection("::1" if v6 else "127.0.0.1", self.port6 if v6 else self.port4,
                                          source_address=(source, 0), timeout=30)
        try:
            conn.putrequest(method, path)
            for name, value in headers:
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    g = Guarded(tmp_path_factory.mktemp("guarded"), {
        "MEDIAPROXY_TRUSTED_CLIENT_CIDRS": "127.0.0.1/32, 203.0.113.0/24, 2001:db8:1::/48",
        "MEDIAPROXY_TRUSTED_PROXY_CIDRS": "127.0.0.3/32, 10.0.0.0/8, ::1/128",
    })
    g.put("attachments/1/2/hello.txt", b"hello")
    yield g
    g.stop()


def assert_refused(result) -> None:
    status, headers, body = result
    assert status == 403, (status, body)
    assert body == b"ip not allowed\n"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"


def assert_served(result) -> None:
    status, _, body = result
    assert status == 200 and body == b"hello", (status, body)


HELLO = "/attachments/1/2/hello.txt"


def test_allowed_and_refused_peers(guarded):
    assert_served(guarded.request(HELLO, "127.0.0.1"))
    assert_refused(guarded.request(HELLO, "127.0.0.2"))
    assert_refused(guarded.request("/nope", "127.0.0.2"))
    status, headers, body = guarded.request(HELLO, "127.0.0.2", method="HEAD")
    assert status == 403 and body == b"" and headers["cache-control"] == "no-store"


def test_spoofed_forwarded_for_from_an_untrusted_peer(guarded):
    for xff in ("127.0.0.1", "203.0.113.7", "203.0.113.7, 127.0.0.1"):
        assert_refused(guarded.request(HELLO, "127.0.0.2", [("X-Forwarded-For", xff)]))
    # an allowed peer stays allowed whatever it claims to forward
    assert_served(guarded.request(HELLO, "127.0.0.1", [("X-Forwarded-For", "198.51.100.1")]))


@pytest.mark.parametrize(
    ("xff", "ok"),
    [
        (["203.0.113.7"], True),
        (["203.0.113.7, 10.9.8.7"], True),  # through another trusted proxy
        (["192.0.2.1, 203.0.113.7"], True),  # whatever the client prepended is not read
        (["198.51.100.1"], False),
        (["203.0.113.7, 198.51.100.1"], False),  # a client cannot prepend an allowed address
        (["203.0.113.7", "198.51.100.1"], False),  # two headers: the last one is nearest
        (["garbage"], False),
        (["203.0.113.7, not-an-ip"], False),
        ([], False),  # the proxy itself is not an allowed client
    ],
)
def test_trusted_proxy_chains(guarded, xff, ok):
    result = guarded.request(HELLO, "127.0.0.3", [("X-Forwarded-For", v) for v in xff])
    (assert_served if ok else assert_refused)(result)


def test_ipv6_peers_and_chains(guarded):
    assert_refused(guarded.request(HELLO, "::1"))  # ::1 is a trusted proxy, not an allowed client
    assert_served(guarded.request(HELLO, "::1", [("X-Forwarded-For", "2001:db8:1::5")]))
    assert_served(guarded.request(HELLO, "::1", [("X-Forwarded-For", "[2001:db8:1::5]:443, 10.0.0.1")]))
    assert_served(guarded.request(HELLO, "::1", [("X-Forwarded-For", "203.0.113.9")]))
    assert_refused(guarded.request(HELLO, "::1", [("X-Forwarded-For", "2001:db8:2::5")]))


def test_exempt_paths(guarded):
    status, _, body = guarded.request("/_health", "127.0.0.2")
    assert status == 200 and body == b"OK"
    status, _, _ = guarded.request("/_metadata", "127.0.0.2", method="POST", body=b"{}")
    assert status != 403  # the internal endpoints answer for themselves (401 without the secret)
    assert_refused(guarded.request("/_health/", "127.0.0.2"))
    assert_refused(guarded.request("/internal/telemetry", "127.0.0.2"))


def test_cache_hits_cannot_bypass_the_guard(guarded):
    user, h = "123456789", "0123456789abcdef"
    guarded.put(f"avatars/{user}/{h}", media.png(64, 64))
    for _ in range(2):  # a miss, then a cache hit (the fast path answers those)
        status, _, body = guarded.request(f"/avatars/{user}/{h}.png?size=32", "127.0.0.1")
        assert status == 200 and body
    assert_refused(guarded.request(f"/avatars/{user}/{h}.png?size=32", "127.0.0.2"))
    assert_refused(guarded.request(f"/avatars/{user}/{h}.png?size=32", "127.0.0.2",
                                   [("X-Forwarded-For", "127.0.0.1")]))


def test_direct_ipv6_allow_list(tmp_path_factory):
    g = Guarded(tmp_path_factory.mktemp("guarded6"), {"MEDIAPROXY_TRUSTED_CLIENT_CIDRS": "::1/128"})
    try:
        g.put("attachments/1/2/hello.txt", b"hello")
        assert_served(g.request(HELLO, "::1"))
        assert_refused(g.request(HELLO, "127.0.0.1"))
        assert_refused(g.request(HELLO, "127.0.0.1", [("X-Forwarded-For", "::1")]))
    finally:
        g.stop()


def test_allow_list_off_by_default(local_server):
    r = local_server.get("/_health")
    assert r.status_code == 200
    conn = http.client.HTTPConnection("127.0.0.1", local_server.port, source_address=("127.0.0.2", 0), timeout=30)
    try:
        conn.request("GET", "/attachments/1/2/missing.txt")
        assert conn.getresponse().status == 404  # not 403: nobody is refused when the list is empty
    finally:
        conn.close()


@pytest.mark.parametrize("mode", ["media", "all"])
def test_the_library_api_is_not_behind_the_cdn_allow_list(mode):
    """The allow-list keeps an origin to its CDN; the library's API clients authenticate with keys and
    are not the CDN, so in library/all mode its API routes pass while the CDN-pulled URLs stay guarded."""
    from mediaproxy import clientip
    from mediaproxy.settings import Settings

    settings = Settings.from_env({"MEDIAPROXY_SECRET_KEY": "x", "MEDIAPROXY_MODE": mode,
                                  "MEDIAPROXY_TRUSTED_CLIENT_CIDRS": "203.0.113.0/24"})
    guard = clientip.install(lambda env, start: (start("200 OK", []), [b"app"])[1], settings)

    def status(path: str) -> int:
        got = []
        guard({"PATH_INFO": path, "REMOTE_ADDR": "198.51.100.7", "REQUEST_METHOD": "GET"},
              lambda s, h: got.append(int(s.split()[0])))
        return got[0]

    api = ["/api/v1/media/list", "/healthz", "/media", "/media/abc", "/v2/images", "/v2/status"]
    cdn = ["/library/acme/1/x.jpg", "/sha256/" + "0" * 64, "/avatars/1/abc.png", "/v2x", "/mediax", "/apix"]
    assert [status(p) for p in api] == ([200] * len(api) if mode == "all" else [403] * len(api))
    assert [status(p) for p in cdn] == [403] * len(cdn)

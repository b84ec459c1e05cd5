"""The SSRF-proof fetcher: the address policy (checked without sending a
packet anywhere but loopback) and real fetches from a loopback origin."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import urllib3

from mediaproxy.errors import BadRequest, Forbidden, NotFound, TooLarge, UpstreamError, UpstreamTimeout
from mediaproxy.netguard import (
    AddressPolicy,
    Fetcher,
    GuardedHTTPConnectionPool,
    Watchdog,
    numeric_ipv4,
    parse_ip,
)

from . import avmedia, media

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class CountingResolver:
    """A resolver the test controls: maps names to addresses and counts lookups."""

    def __init__(self, table: dict[str, list[str]]):
        self.table = table
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.table:
            raise UpstreamError("cannot resolve host")
        return self.table[host]


def strict(**kw) -> Fetcher:
    """The fetcher as shipped: nothing allowed beyond public addresses."""
    return Fetcher(AddressPolicy(), **kw)


def loopback_fetcher(**kw) -> Fetcher:
    kw.setdefault("timeout", 5.0)
    kw.setdefault("connect_timeout", 2.0)
    return Fetcher(AddressPolicy(kw.pop("allow", LOOPBACK)), **kw)


# -- the policy, setting off: every one of these is refused before any connection ------------

REFUSED = [
    "http://127.0.0.1/a.png",
    "http://127.0.0.1:8080/a.png",
    "http://localhost/a.png",
    "http://LOCALHOST./a.png",
    "http://media.localhost/a.png",
    "http://[::1]/a.png",
    "http://0.0.0.0/a.png",
    "http://0/a.png",
    "http://[::]/a.png",
    "http://10.0.0.1/a.png",
    "http://10.255.255.255/a.png",
    "http://172.16.0.1/a.png",
    "http://172.31.255.254/a.png",
    "http://192.168.1.1/a.png",
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.170.2/v2/credentials",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://100.100.100.200/latest/meta-data/",
    "http://168.63.129.16/metadata",
    "http://100.64.0.1/a.png",
    "http://100.127.255.254/a.png",
    "http://224.0.0.1/a.png",
    "http://239.255.255.250/a.png",
    "http://240.0.0.1/a.png",
    "http://255.255.255.255/a.png",
    "http://198.18.0.1/a.png",
    "http://192.0.0.192/a.png",
    "http://[fe80::1]/a.png",
    "http://[fc00::1]/a.png",
    "http://[ff02::1]/a.png",
    "http://[::ffff:127.0.0.1]/a.png",
    "http://[::ffff:7f00:1]/a.png",
    "http://[::ffff:169.254.169.254]/a.png",
    "http://[::ffff:10.0.0.1]/a.png",
    "http://[::127.0.0.1]/a.png",
    "http://[64:ff9b::a9fe:a9fe]/a.png",  # NAT64 form of the metadata address
    "http://[64:ff9b::7f00:1]/a.png",
    "http://[2002:7f00:1::]/a.png",  # 6to4 form of loopback
    "http://[2002:a9fe:a9fe::1]/a.png",
    "http://[2001:db8::1]/a.png",
    "http://2130706433/a.png",  # decimal 127.0.0.1
    "http://0177.0.0.1/a.png",  # octal
    "http://0x7f000001/a.png",  # hex
    "http://0x7f.0.0.1/a.png",
    "http://0x7f.1/a.png",
    "http://127.1/a.png",
    "http://017700000001/a.png",  # octal, one label
    "http://3232235777/a.png",  # 192.168.1.1
    "http://0xa9fea9fe/a.png",  # 169.254.169.254
    "https://127.0.0.1/a.png",
]


@pytest.mark.parametrize("url", REFUSED)
def test_policy_refuses_non_public_targets(url):
    with pytest.raises(Forbidden):
        strict().target(url)


def test_public_looking_name_resolving_to_loopback_is_refused():
    resolver = CountingResolver({"images.example.com": ["127.0.0.1"], "mixed.example.com": ["10.0.0.7", "::1"]})
    f = strict(resolver=resolver)
    for url in ("https://images.example.com/cat.png", "http://mixed.example.com/x.png"):
        with pytest.raises(Forbidden):
            f.target(url)
    assert resolver.calls == ["images.example.com", "mixed.example.com"]


def test_public_addresses_pass_the_policy():
    resolver = CountingResolver({"cdn.example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]})
    t = strict(resolver=resolver).target("https://cdn.example.com/a%20b.png?x=1")
    assert t.host == "cdn.example.com" and t.port == 443 and t.path == "/a%20b.png?x=1"
    assert [str(a) for a in t.addresses] == ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]
    assert t.host_header == "cdn.example.com"
    policy = AddressPolicy()
    for ip in ("8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"):
        assert policy.permits(ipaddress.ip_address(ip)), ip


def test_only_the_permitted_addresses_of_a_name_are_kept():
    resolver = CountingResolver({"half.example.com": ["127.0.0.1", "93.184.216.34"]})
    t = strict(resolver=resolver).target("http://half.example.com/x.png")
    assert [str(a) for a in t.addresses] == ["93.184.216.34"]


def test_allow_setting_opens_only_the_listed_networks():
    policy = AddressPolicy([ipaddress.ip_network("127.0.0.0/8")])
    assert policy.permits(ipaddress.ip_address("127.0.0.1"))
    assert policy.permits(ipaddress.ip_address("::ffff:127.0.0.1"))  # the mapped form reaches the same host
    for ip in ("10.0.0.1", "169.254.169.254", "::1", "192.168.0.1"):
        assert not policy.permits(ipaddress.ip_address(ip)), ip


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/a.png", "file:///etc/passwd", "gopher://127.0.0.1:70/", "javascript:alert(1)",
     "http://user:pass@example.com/a.png", "data:image/png;base64,AAAA"],
)
def test_other_schemes_and_credentials_are_refused(url):
    with pytest.raises(Forbidden):
        strict(resolver=CountingResolver({"example.com": ["93.184.216.34"]})).target(url)


@pytest.mark.parametrize(
    "url", ["http://", "http:///a.png", "http://[::1/a.png", "http://a b.com/", "http://1.2.3.4.5/", "http://256.1/",
            "http://0x100000000/", "http://example.com:99999/", "http://09.1.1.1/", "http://host/\x00"]
)
def test_malformed_urls_are_bad_requests(url):
    with pytest.raises(BadRequest):
        strict(resolver=CountingResolver({})).target(url)


def test_numeric_host_spellings():
    assert numeric_ipv4("2130706433") == ipaddress.ip_address("127.0.0.1")
    assert numeric_ipv4("0x7F.0x0.0.1") == ipaddress.ip_address("127.0.0.1")
    assert numeric_ipv4("10.1") == ipaddress.ip_address("10.0.0.1")
    assert numeric_ipv4("192.168.257") == ipaddress.ip_address("192.168.1.1")
    assert numeric_ipv4("example.com") is None and numeric_ipv4("1.example") is None
    assert parse_ip("[fe80::1%eth0]") == ipaddress.ip_address("fe80::1")


# -- real fetches, from the loopback origin ----------------------------------------------------


def test_fetch_image(origin):
    png = media.png(64, 48)
    url = origin.add("/ng/img.png", png, headers={"Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"})
    got = loopback_fetcher().fetch(url)
    assert got.body == png and got.content_type == "image/png" and got.url == url
    assert got.last_modified == 1445412480.0


def test_connects_to_the_checked_address_with_the_hostname_as_host(origin):
    origin.add("/ng/named.png", media.png(8, 8))
    resolver = CountingResolver({"media.example.test": ["127.0.0.1"]})
    got = loopback_fetcher(resolver=resolver).fetch(f"http://media.example.test:{origin.port}/ng/named.png")
    assert got.content_type == "image/png"
    assert resolver.calls == ["media.example.test"]  # resolved once, no second lookup to connect
    assert origin.hosts("/ng/named.png") == [f"media.example.test:{origin.port}"]


def test_refused_name_sends_nothing(origin):
    origin.add("/ng/never.png", media.png(8, 8))
    with pytest.raises(Forbidden):
        strict(resolver=CountingResolver({"evil.example": ["127.0.0.1"]})).fetch(
            f"http://evil.example:{origin.port}/ng/never.png"
        )
    with pytest.raises(Forbidden):
        strict().fetch(origin.url("/ng/never.png"))
    assert origin.hits("/ng/never.png") == 0


def test_unreachable_addresses_fall_back_to_the_next_checked_one(origin):
    origin.add("/ng/fallback.png", media.png(8, 8))
    closed = socket.socket()
    closed.bind(("127.0.0.2", origin.port))  # bound, never listening: connection refused
    try:
        resolver = CountingResolver({"two.example": ["127.0.0.2", "127.0.0.1"]})
        got = loopback_fetcher(resolver=resolver).fetch(f"http://two.example:{origin.port}/ng/fallback.png")
        assert got.content_type == "image/png"
    finally:
        closed.close()


def test_redirects_are_followed_and_each_hop_checked(origin):
    png = media.png(20, 10)
    origin.add("/chain/0", png)
    assert loopback_fetcher().fetch(origin.url("/chain/5")).body == png
    with pytest.raises(UpstreamError, match="too many redirects"):
        loopback_fetcher().fetch(origin.url("/chain/6"))
    assert loopback_fetcher(max_redirects=2).fetch(origin.url("/chain/2")).body == png


@pytest.mark.parametrize(
    "target",
    ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x.png", "http://[::1]/x.png",
     "http://[::ffff:10.0.0.1]/x.png", "http://0xa9fea9fe/x.png", "file:///etc/passwd"],
)
def test_redirect_from_allowed_origin_to_refused_target(origin, target):
    from urllib.parse import quote

    only_this_origin = (ipaddress.ip_network("127.0.0.1/32"),)
    f = loopback_fetcher(allow=only_this_origin)
    with pytest.raises(Forbidden):
        f.fetch(origin.url("/redirect?to=" + quote(target, safe="")))


def test_redirect_to_a_name_that_resolves_to_loopback(origin):
    origin.add("/ng/r.png", media.png(8, 8))
    resolver = CountingResolver({"innocent.example": ["127.0.0.1"]})
    f = Fetcher(AddressPolicy([ipaddress.ip_network("127.0.0.1/32")]), resolver=resolver)
    # allowed explicitly here, to prove the redirect hop is resolved and checked on its own:
    got = f.fetch(origin.url(f"/redirect?to=http://innocent.example:{origin.port}/ng/r.png"))
    assert got.url == f"http://innocent.example:{origin.port}/ng/r.png"
    resolver.table["innocent.example"] = ["127.0.0.9"]
    with pytest.raises(Forbidden):
        f.fetch(origin.url(f"/redirect?to=http://innocent.example:{origin.port}/ng/r.png"))


def test_guarded_connection_checks_the_address_it_reached(origin):
    # The pool is opened on an address the fetcher checked; the connection checks its peer again,
    # so a pool built on an address the policy refuses never sends a byte.
    origin.add("/ng/guarded.png", media.png(8, 8))
    watchdog = Watchdog(5.0)
    try:
        allowed = GuardedHTTPConnectionPool("127.0.0.1", origin.port, watchdog=watchdog, policy=AddressPolicy(LOOPBACK))
        assert allowed.urlopen("GET", "/ng/guarded.png", retries=False).status == 200
        refused = GuardedHTTPConnectionPool("127.0.0.1", origin.port, watchdog=watchdog, policy=AddressPolicy([]))
        with pytest.raises(urllib3.exceptions.NewConnectionError, match="not allowed"):
            refused.urlopen("GET", "/ng/guarded.png", retries=False)
    finally:
        watchdog.cancel()


def test_slow_headers_time_out(origin):
    origin.add("/ng/slow-headers.png", media.png(8, 8), delay=3)
    with pytest.raises(UpstreamTimeout):
        loopback_fetcher(timeout=0.5).fetch(origin.url("/ng/slow-headers.png"))


def test_trickled_headers_hit_the_total_timeout(origin):
    # One header line every 0.1 s for 6 s: each read is well inside any per-read
    # timeout, so only the watchdog on the whole fetch's deadline can stop it.
    origin.add("/ng/trickled-headers.png", media.png(8, 8), header_lines=60, trickle=0.1)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        loopback_fetcher(timeout=0.5).fetch(origin.url("/ng/trickled-headers.png"))
    assert time.monotonic() - started < 4.0  # not after the 6 s the origin takes


def test_slow_body_hits_the_total_timeout(origin):
    # Every byte arrives well within any per-read timeout; only the total deadline stops it.
    origin.add("/ng/trickle.png", media.png(8, 8) + b"\0" * 200, trickle=0.02)
    with pytest.raises(UpstreamTimeout):
        loopback_fetcher(timeout=0.5).fetch(origin.url("/ng/trickle.png"))


def test_byte_cap(origin):
    big = media.png(8, 8) + b"\0" * 10_000
    origin.add("/ng/big-cl.png", big)
    origin.add("/ng/big-stream.png", big, length=False)
    origin.add("/ng/huge-stream.png", b"\0" * 65536, length=False, repeat=2000)  # 128 MiB, never all read
    for path in ("/ng/big-cl.png", "/ng/big-stream.png", "/ng/huge-stream.png"):
        with pytest.raises(TooLarge):
            loopback_fetcher(max_bytes=4096).fetch(origin.url(path))
    assert loopback_fetcher(max_bytes=len(big)).fetch(origin.url("/ng/big-stream.png")).body == big
    # a Content-Length of digits that int() refuses ("²") is not a length: the bytes are counted instead
    origin.add("/ng/odd-length.png", big, length=False, headers={"Content-Length": "\u00b2"})
    with pytest.raises(TooLarge):
        loopback_fetcher(max_bytes=4096).fetch(origin.url("/ng/odd-length.png"))


@pytest.mark.parametrize(
    ("path", "ctype", "body"),
    [
        ("/ng/page.html", "text/html", b"<html><script>alert(1)</script></html>"),
        ("/ng/data.json", "application/json", b"{}"),
        ("/ng/img.svg", "image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>'),
        ("/ng/liar.png", "image/png", b"<!DOCTYPE html><html><script>alert(1)</script>"),
        ("/ng/bin-html", "application/octet-stream", b"<html><body>hi</body></html>"),
        ("/ng/none", None, b"plain words"),
        ("/ng/pdf.png", "image/png", b"%PDF-1.4 fake"),
    ],
)
def test_only_media_is_accepted(origin, path, ctype, body):
    origin.add(path, body, content_type=ctype)
    with pytest.raises(BadRequest):
        loopback_fetcher().fetch(origin.url(path))


def test_untyped_media_is_sniffed(origin):
    png = media.png(8, 8)
    origin.add("/ng/untyped", png, content_type=None)
    origin.add("/ng/octet", avmedia.video(64, 48, frames=2), content_type="application/octet-stream")
    assert loopback_fetcher().fetch(origin.url("/ng/untyped")).content_type == "image/png"
    assert loopback_fetcher().fetch(origin.url("/ng/octet")).content_type == "video/mp4"


def test_origin_errors(origin):
    origin.add("/ng/500.png", b"oops", status=500)
    with pytest.raises(NotFound):
        loopback_fetcher().fetch(origin.url("/ng/missing.png"))
    with pytest.raises(UpstreamError, match="500"):
        loopback_fetcher().fetch(origin.url("/ng/500.png"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UpstreamError):
        loopback_fetcher().fetch(f"http://127.0.0.1:{port}/nothing-listens.png")


# -- TLS: SNI and verification against the hostname, while connecting to the IP ---------------


def _certs(tmp_path, hostname: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mediaproxy test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(ca_path), str(cert_path), str(key_path)


def test_https_sends_sni_and_verifies_the_hostname(tmp_path):
    ca, cert, key = _certs(tmp_path, "secure.example.test")
    png = media.png(16, 16)
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.sni_callback = lambda sock, name, _ctx: seen.append(name)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    try:
        resolver = CountingResolver({"secure.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]})
        f = loopback_fetcher(resolver=resolver, ca_certs=ca)
        assert f.fetch(f"https://secure.example.test:{port}/a.png").body == png
        assert "secure.example.test" in seen
        with pytest.raises(UpstreamError):  # the certificate is not for this name
            f.fetch(f"https://other.example.test:{port}/a.png")
        with pytest.raises(UpstreamError):  # nor for the bare IP
            f.fetch(f"https://127.0.0.1:{port}/a.png")
        with pytest.raises(UpstreamError):  # and the system store does not know this CA
            loopback_fetcher(resolver=resolver).fetch(f"https://secure.example.test:{port}/a.png")
    finally:
        httpd.shutdown()
        httpd.server_close()

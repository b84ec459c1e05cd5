"""Outbound HTTP with SSRF protection: the only way mediaproxy reaches a URL
it was handed (``/external``, and the internal endpoints' ``http(s)`` URLs).

Per hop (the first request and every redirect, at most ``max_redirects``):

  parse the URL (``http``/``https`` only, no credentials)
  → resolve the host **once** (numeric IPv4 spellings such as ``2130706433``,
    ``0x7f.1`` or ``0177.0.0.1`` are read the way a browser reads them)
  → refuse any address that is not public (loopback, RFC 1918, link-local,
    CGNAT, multicast, reserved, unspecified, documentation, the cloud metadata
    addresses, and the IPv6 forms that embed one of those: IPv4-mapped,
    IPv4-compatible, 6to4, NAT64) unless ``MEDIAPROXY_FETCH_ALLOW_CIDRS``
    allows it
  → connect to **that** address (urllib3 pool on the IP itself, so there is
    no second lookup and no DNS-rebinding window), sending ``Host`` and TLS SNI
    for the hostname and verifying the certificate against the hostname.

One deadline covers the whole fetch (connect, redirects, headers, body); the
body is read in chunks and abandoned past ``max_bytes`` (413). Only image,
video and audio responses are accepted; an ``application/octet-stream`` (or
missing) type is accepted when the bytes sniff as media.
"""

from __future__ import annotations

import io
import ipaddress
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import urllib3
import urllib3.connection
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError

from . import metrics
from .errors import BadRequest, Forbidden, MediaError, NotFound, TooLarge, UpstreamError, UpstreamTimeout
from .hotpath import decimal
from .media.sniff import MEDIA_PREFIXES, is_media_type, normalize_type, reconcile, sniff

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

CHUNK = 64 * 1024
USER_AGENT = "mediaproxy (+https://github.com/mediaproxy/mediaproxy)"
REDIRECTS = frozenset((301, 302, 303, 307, 308))

# Never reachable, whatever ipaddress' is_global says, unless explicitly allowed.
DENIED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "100.64.0.0/10",  # CGNAT (RFC 6598); 100.100.100.200 is Alibaba Cloud's metadata service
        "169.254.0.0/16",  # link-local; 169.254.169.254 is the AWS/GCP/Azure/OpenStack metadata service
        "168.63.129.16/32",  # Azure's wire server (a public address used as a metadata endpoint)
        "192.0.0.0/24",  # IETF protocol assignments (192.0.0.192 is Oracle Cloud's metadata)
        "192.88.99.0/24",  # 6to4 relay anycast
        "198.18.0.0/15",  # benchmarking
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255
        "fd00:ec2::254/128",  # AWS metadata over IPv6 (inside fc00::/7 too)
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215)
        "3fff::/20",  # documentation (RFC 9637)
        "ff00::/8",  # multicast
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "fc00::/7",  # unique local
        "2001::/32",  # Teredo
        "2001:db8::/32",  # documentation
        "100::/64",  # discard-only
    )
)
LOCALHOST = (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPAT = ipaddress.ip_network("::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, 6to4, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _COMPAT and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def parse_ip(text: str) -> IPAddress | None:
    """An IP literal (brackets and IPv6 zone ids allowed), else None."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)


def numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Read a host the way browsers and ``inet_aton`` do when its last label is a number:
    ``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``127.1`` all mean 127.0.0.1.

    None when the host is a name; ``BadRequest`` for a numeric host that is no address.
    """
    labels = host.rstrip(".").split(".") if host not in ("", ".") else []
    if not labels or not _NUMERIC_LABEL.fullmatch(labels[-1]):
        return None
    values = []
    for label in labels:
        if not _NUMERIC_LABEL.fullmatch(label):
            raise BadRequest("invalid host")
        if label.lower().startswith("0x"):
            values.append(int(label[2:] or "0", 16))
        elif len(label) > 1 and label.startswith("0"):
            if not set(label) <= set("01234567"):
                raise BadRequest("invalid host")
            values.append(int(label, 8))
        else:
            values.append(int(label))
    if len(values) > 4 or any(v > 255 for v in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        raise BadRequest("invalid host")
    number = 0
    for v in values[:-1]:
        number = number * 256 + v
    number = number * 256 ** (5 - len(values)) + values[-1]
    return ipaddress.IPv4Address(number)


class AddressPolicy:
    """Which addresses the fetcher may connect to: public ones, plus the allowed networks."""

    def __init__(self, allow: Iterable[IPNetwork] = ()):
        self.allow = tuple(allow)

    def _allowed_explicitly(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allow)

    def is_public(self, ip: IPAddress) -> bool:
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.scope_id:
                return False
            v4 = _embedded_ipv4(ip)
            if v4 is not None and not self.is_public(v4):
                return False
            if ip.ipv4_mapped is not None:
                return True  # the mapped IPv4 address is what is reached, and it is public
        if any(ip.version == net.version and ip in net for net in DENIED):
            return False
        return ip.is_global and not (
            ip.is_private
            or ip.is_loopback
            or ip.is_link_local
            or ip.is_multicast
            or ip.is_reserved
            or ip.is_unspecified
        )

    def permits(self, ip: IPAddress) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:a.b.c.d reaches a.b.c.d
        return self._allowed_explicitly(ip) or self.is_public(ip)


@dataclass(frozen=True, slots=True)
class Target:
    """One hop: where to connect and what to say."""

    scheme: str
    host: str  # the hostname (IDNA-encoded) or the IP literal, without brackets
    port: int
    path: str  # path and query, as sent
    addresses: tuple[IPAddress, ...]  # checked addresses, in resolver order

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Fetched:
    url: str  # the final URL, after redirects
    content_type: str  # media type without parameters, lower case (sniffed when the origin said nothing useful)
    body: bytes
    last_modified: float | None  # the origin's Last-Modified, when it sent a valid one


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise UpstreamError("cannot resolve host") from None
    out: list[str] = []
    for *_, sockaddr in infos:
        if sockaddr[0] not in out:
            out.append(sockaddr[0])
    return out


class Watchdog:
    """Enforces a fetch's total deadline on every socket it opens.

    Socket timeouts bound each read, not the sum of them: an origin that
    trickles one header byte just inside the read timeout would hold the
    request forever. When the deadline passes, the watchdog shuts the open
    sockets down, so whatever is blocked on them returns at once, and the
    fetch reports a timeout.
    """

    def __init__(self, seconds: float):
        self.expired = False
        self._conns: list[object] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def register(self, conn: object) -> None:
        """Shut ``conn`` down when the deadline passes (at once if it has passed)."""
        with self._lock:
            self._conns.append(conn)
            expired = self.expired
        if expired:
            _shutdown(conn)

    def _fire(self) -> None:
        with self._lock:
            self.expired = True
            conns = list(self._conns)
        for conn in conns:
            _shutdown(conn)

    def cancel(self) -> None:
        self._timer.cancel()


def _shutdown(conn: object) -> None:
    sock = getattr(conn, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Guarded:
    """What every connection a fetch opens does on top of urllib3's: it is watched by the
    fetch's deadline from the moment it exists, and once connected it checks that the peer
    is an address the policy permits (the pool is opened on a checked IP; this makes that a
    property of the connection, not of the caller)."""

    def __init__(self, *args, watchdog: Watchdog, policy: AddressPolicy, **kwargs):
        super().__init__(*args, **kwargs)
        self.mediaproxy_policy = policy
        watchdog.register(self)

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        sock = self.sock  # type: ignore[attr-defined]
        try:
            peer = parse_ip(sock.getpeername()[0])
        except OSError:
            peer = None
        if peer is None or not self.mediaproxy_policy.permits(peer):
            self.close()  # type: ignore[attr-defined]
            metrics.refused("address")
            raise NewConnectionError(self, "refused target: connected to an address not allowed")


class GuardedHTTPConnection(_Guarded, urllib3.connection.HTTPConnection):
    pass


class GuardedHTTPSConnection(_Guarded, urllib3.connection.HTTPSConnection):
    pass


class GuardedHTTPConnectionPool(urllib3.HTTPConnectionPool):
    """A pool whose connections are guarded: needs ``watchdog=`` and ``policy=`` (urllib3 hands
    a pool's extra keyword arguments to every connection it makes)."""

    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class Fetcher:
    def __init__(
        self,
        policy: AddressPolicy,
        connect_timeout: float = 3.0,
        timeout: float = 15.0,
        max_bytes: int = 50 * 1024**2,
        max_redirects: int = 5,
        resolver: Resolver | None = None,
        accept: tuple[str, ...] = MEDIA_PREFIXES,
        ca_certs: str | None = None,
    ):
        self.policy = policy
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.resolver = resolver or system_resolver
        self.accept = accept
        self.ca_certs = ca_certs  # a CA bundle instead of the system's (private CAs, tests)

    @classmethod
    def from_settings(cls, settings, resolver: Resolver | None = None) -> Fetcher:
        return cls(
            AddressPolicy(settings.fetch_allow_cidrs),
            connect_timeout=settings.fetch_connect_timeout,
            timeout=settings.fetch_timeout,
            max_bytes=settings.fetch_max_bytes,
            max_redirects=settings.fetch_max_redirects,
            resolver=resolver,
        )

    # -- one hop ---------------------------------------------------------------------------------

    def target(self, url: str) -> Target:
        """Parse, resolve and check one URL; raises BadRequest (malformed) or Forbidden (refused)."""
        if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
            raise BadRequest("invalid URL")
        try:
            parts = urlsplit(url)
            port = parts.port
            host = parts.hostname
        except ValueError:
            raise BadRequest("invalid URL") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            metrics.refused("scheme")
            raise Forbidden("refused target: only http and https URLs are fetched")
        if not host:
            raise BadRequest("invalid URL: no host")
        if parts.username is not None or parts.password is not None:
            metrics.refused("credentials")
            raise Forbidden("refused target: URLs with credentials are not fetched")
        port = port or (443 if scheme == "https" else 80)
        if port == 0:
            raise BadRequest("invalid URL: port 0")
        ip = parse_ip(host) if ":" in host else None
        if ip is None:
            try:
                host = host.rstrip(".").encode("idna").decode("ascii").lower()
            except UnicodeError:
                raise BadRequest("invalid host") from None
            if not host:
                raise BadRequest("invalid URL: no host")
            ip = numeric_ipv4(host)
        if ip is not None:
            addresses: list[IPAddress] = [ip]
            host = str(ip)
        elif host == "localhost" or host.endswith(".localhost"):
            addresses = list(LOCALHOST)  # RFC 6761: loopback, whatever a resolver says
        else:
            addresses = [a for a in (parse_ip(r) for r in self.resolver(host, port)) if a is not None]
            if not addresses:
                raise UpstreamError("cannot resolve host")
        permitted = tuple(a for a in addresses if self.policy.permits(a))
        if not permitted:
            metrics.refused("address")
            raise Forbidden("refused target: address not allowed")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return Target(scheme, host, port, path, permitted)

    def _pool(
        self, target: Target, ip: IPAddress, read_timeout: float, watchdog: Watchdog
    ) -> urllib3.HTTPConnectionPool:
        timeout = urllib3.Timeout(connect=min(self.connect_timeout, read_timeout), read=read_timeout)
        common = {
            "port": target.port, "timeout": timeout, "retries": False, "maxsize": 1,
            "watchdog": watchdog, "policy": self.policy,
        }
        if target.scheme == "https":
            is_literal = parse_ip(target.host) is not None
            return GuardedHTTPSConnectionPool(
                str(ip),
                cert_reqs="CERT_REQUIRED",
                ca_certs=self.ca_certs,
                assert_hostname=target.host,
                server_hostname=None if is_literal else target.host,
                **common,
            )
        return GuardedHTTPConnectionPool(str(ip), **common)

    def _request(
        self, target: Target, deadline: float, watchdog: Watchdog
    ) -> tuple[urllib3.HTTPConnectionPool, urllib3.BaseHTTPResponse]:
        headers = {
            "Host": target.host_header,
            "User-Agent": USER_AGENT,
            "Accept": "image/*, video/*, audio/*;q=0.9, */*;q=0.1",
            "Accept-Encoding": "identity",
        }
        last_error: MediaError = UpstreamError("origin unreachable")
        for ip in target.addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamTimeout("origin timeout")
            pool = self._pool(target, ip, remaining, watchdog)
            try:
                return pool, pool.urlopen(
                    "GET", target.path, headers=headers, redirect=False, retries=False,
                    preload_content=False, decode_content=True, assert_same_host=False,
                )
            except NewConnectionError:  # (a subclass of ConnectTimeoutError in urllib3 2)
                last_error = UpstreamError("origin unreachable")
            except ConnectTimeoutError:
                last_error = UpstreamTimeout("origin connect timeout")
            except ReadTimeoutError:
                pool.close()
                raise UpstreamTimeout("origin timeout") from None
            except (HTTPError, OSError) as exc:
                pool.close()
                raise UpstreamError(f"origin failure: {type(exc).__name__}") from None
            pool.close()
        raise last_error

    # -- the whole fetch -------------------------------------------------------------------------

    def fetch(self, url: str) -> Fetched:
        t0 = time.monotonic()
        try:
            return self._fetch_within_deadline(url)
        except MediaError as exc:
            metrics.origin_failed(exc)
            raise
        finally:
            metrics.ORIGIN_SECONDS.observe(time.monotonic() - t0)

    def _fetch_within_deadline(self, url: str) -> Fetched:
        deadline = time.monotonic() + self.timeout
        watchdog = Watchdog(self.timeout)
        try:
            fetched = self._fetch(url, deadline, watchdog)
        except MediaError:
            if watchdog.expired:  # whatever broke, it broke because the deadline shut the socket
                raise UpstreamTimeout("origin timeout") from None
            raise
        finally:
            watchdog.cancel()
        if watchdog.expired:  # a shut-down socket reads as a clean end: the body may be cut short
            raise UpstreamTimeout("origin timeout")
        return fetched

    def _fetch(self, url: str, deadline: float, watchdog: Watchdog) -> Fetched:
        for _hop in range(self.max_redirects + 1):
            target = self.target(url)
            pool, resp = self._request(target, deadline, watchdog)
            try:
                if resp.status in REDIRECTS:
                    location = resp.headers.get("Location")
                    if not location:
                        raise UpstreamError(f"origin answered {resp.status} without Location")
                    url = urljoin(url, location.strip())
                    continue
                return self._finish(url, resp, deadline)
            finally:
                resp.close()  # never back into a pool: the connection was for this hop only
                pool.close()
        raise UpstreamError(f"too many redirects (more than {self.max_redirects})")

    def _finish(self, url: str, resp: urllib3.BaseHTTPResponse, deadline: float) -> Fetched:
        if resp.status in (404, 410):
            raise NotFound(f"origin answered {resp.status}")
        if not 200 <= resp.status < 300:
            raise UpstreamError(f"origin answered {resp.status}")
        declared = normalize_type(resp.headers.get("Content-Type"))
        needs_sniff = declared in ("", "application/octet-stream", "binary/octet-stream")
        if not needs_sniff and not (declared.startswith(self.accept) and is_media_type(declared)):
            raise BadRequest(f"origin content type {declared} is not image, video or audio")
        length = resp.headers.get("Content-Length", "")
        if decimal(length.strip()) and int(length) > self.max_bytes:
            raise TooLarge(f"origin body is over the {self.max_bytes} byte cap")
        body = self._read(resp, deadline)
        return Fetched(url, media_type_of(declared, body), body, _http_time(resp.headers.get("Last-Modified")))

    def _read(self, resp: urllib3.BaseHTTPResponse, deadline: float) -> bytes:
        # BytesIO hands its buffer over on getvalue(): the body is never held twice.
        out = io.BytesIO()
        total = 0
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise UpstreamTimeout("origin timeout")
                sock = getattr(resp.connection, "sock", None)
                if sock is not None:
                    sock.settimeout(remaining)
                data = resp.read1(CHUNK)
                if not data:
                    break
                total += len(data)
                if total > self.max_bytes:
                    raise TooLarge(f"origin body is over the {self.max_bytes} byte cap")
                out.write(data)
        except (ReadTimeoutError, TimeoutError):
            raise UpstreamTimeout("origin timeout") from None
        except (HTTPError, OSError) as exc:
            raise UpstreamError(f"origin failure: {type(exc).__name__}") from None
        return out.getvalue()


def media_type_of(declared: str, body: bytes) -> str:
    """The media type of a fetched body: what its magic bytes say, else what the origin said.

    Bytes that sniff as something else than media (HTML or SVG labelled ``image/png``, a PDF,
    a zip) are refused, and so is a body nothing recognises unless the origin called it
    video or audio (containers the sniffer does not know).
    """
    sniffed = sniff(body[:4096])
    if sniffed is not None:
        if not is_media_type(sniffed):
            raise BadRequest("origin body is not image, video or audio")
        return reconcile(declared, sniffed)
    if declared.startswith(("video/", "audio/")):
        return declared
    if is_media_type(declared):
        return declared  # an image format the sniffer does not know: the pipeline decides
    raise BadRequest("origin body is not image, video or audio")


def _http_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None

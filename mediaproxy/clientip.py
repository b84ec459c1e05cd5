"""The client IP allow-list: a WSGI layer for an origin only its CDN may reach.

Off unless ``MEDIAPROXY_TRUSTED_CLIENT_CIDRS`` is set. The client address is
the socket peer; only when the peer is in ``MEDIAPROXY_TRUSTED_PROXY_CIDRS``
is ``X-Forwarded-For`` read, from the right: trusted proxies are skipped and
the first address that is not one is the client. Anything that cannot be
parsed on that walk (an empty hop, a name, garbage) makes the client
unknown, which is refused: a forged or malformed header can only narrow
access, never widen it. Hops left of the client are never looked at, so a
client cannot prepend an allowed address.

``/_health`` and ``/_ready`` are exempt (load balancers), and so are the internal
endpoints and ``/metrics``, which authenticate with their secret. The refusal is ``403`` plain text,
``Cache-Control: no-store``, ``X-Content-Type-Options: nosniff``.

This layer is the outermost one of ``app.wsgi_layers``: nothing inside it
(the image routes' fast path included) answers a request it refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from .settings import LIBRARY_MODES

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

EXEMPT = frozenset(("/_health", "/_ready", "/metrics", "/_metadata", "/_thumbnail", "/_frames"))
BODY = b"ip not allowed\n"
HEADERS = [
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Content-Length", str(len(BODY))),
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
]


def parse_addr(text: str) -> IPAddress | None:
    """One address as proxies write it: ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1``,
    ``[2001:db8::1]``, ``[2001:db8::1]:5678``; IPv4-mapped IPv6 becomes IPv4. Else None."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1 :] and not _port(text[end + 1 :])):
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not _port(":" + port):
            return None
    text = text.split("%", 1)[0]  # zone id of a link-local peer
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _port(text: str) -> bool:
    return text.startswith(":") and text[1:].isascii() and text[1:].isdigit() and 0 < len(text) <= 6


class NetworkSet:
    """Membership in a list of networks, IPv4 and IPv6 kept apart."""

    def __init__(self, networks: Iterable[IPNetwork]):
        nets = tuple(networks)
        self.v4 = tuple(n for n in nets if n.version == 4)
        self.v6 = tuple(n for n in nets if n.version == 6)

    def __contains__(self, ip: IPAddress) -> bool:
        return any(ip in n for n in (self.v4 if ip.version == 4 else self.v6))

    def __bool__(self) -> bool:
        return bool(self.v4 or self.v6)


def client_address(environ: dict, proxies: NetworkSet) -> IPAddress | None:
    """The client's address, or None when it cannot be known (then it is refused)."""
    peer = parse_addr(environ.get("REMOTE_ADDR") or "")
    if peer is None or peer not in proxies:
        return peer
    forwarded = environ.get("HTTP_X_FORWARDED_FOR")
    if forwarded is None:
        return peer
    ip: IPAddress | None = None
    for hop in reversed(forwarded.split(",")):
        ip = parse_addr(hop)
        if ip is None:
            return None
        if ip not in proxies:
            return ip
    return ip  # every hop is a trusted proxy: the leftmost is the client


WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


class ClientIPGuard:
    """WSGI layer: ``403`` for clients outside ``allow`` (see the module docstring)."""

    def __init__(self, app: WSGIApp, allow: Iterable[IPNetwork], proxies: Iterable[IPNetwork] = (),
                 exempt_prefixes: tuple[str, ...] = ()):
        self.app = app
        self.allow = NetworkSet(allow)
        self.proxies = NetworkSet(proxies)
        self.exempt_prefixes = exempt_prefixes

    def _exempt_prefix(self, path: str) -> bool:
        """``path`` is one of the exempt paths or lies below one (``/media`` and ``/media/x``, not ``/mediax``)."""
        return any(path == p or path.startswith(p + "/") for p in self.exempt_prefixes)

    def allowed(self, environ: dict) -> bool:
        ip = client_address(environ, self.proxies)
        return ip is not None and ip in self.allow

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or ""
        if path in EXEMPT or self._exempt_prefix(path) or self.allowed(environ):
            return self.app(environ, start_response)
        start_response("403 Forbidden", list(HEADERS))
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [BODY]


def install(app: WSGIApp, settings) -> WSGIApp:
    """The guard around ``app`` when the allow-list is on, else ``app`` itself."""
    if not settings.trusted_client_cidrs:
        return app
    return ClientIPGuard(
        app, settings.trusted_client_cidrs, settings.trusted_proxy_cidrs, library_api_prefixes(settings)
    )


def library_api_prefixes(settings) -> tuple[str, ...]:
    """The library's API routes (``library``/``all`` modes): clients authenticate with keys and are not
    the CDN, so the allow-list (an origin only its CDN may reach) does not apply to them. Its public
    URLs (``/library/``, ``/sha256/``) are CDN-pulled and stay guarded."""
    if settings.mode not in LIBRARY_MODES:
        return ()
    return ("/healthz", "/api", "/media", settings.library.api_prefix)

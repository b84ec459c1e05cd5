"""``python -m mediaproxy.healthcheck``: exit 0 when ``GET /_health`` on this
container's own listener answers ``200``, else 1 (Docker's exec-form HEALTHCHECK).

The address is the one gunicorn binds (``MEDIAPROXY_BIND``, read by the
settings module): a wildcard host is asked on loopback, a ``unix:`` socket
through the socket.
"""

from __future__ import annotations

import http.client
import os
import socket
import sys

from .errors import ConfigError
from .settings import ServerSettings


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def connection(bind: str, timeout: float = 2.0) -> http.client.HTTPConnection:
    if bind.startswith("unix:"):
        return _UnixConnection(bind[5:], timeout)
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return http.client.HTTPConnection(host, int(port), timeout=timeout)


def main() -> int:
    try:
        bind = ServerSettings.from_env(os.environ).bind
    except ConfigError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    try:
        conn = connection(bind)
        conn.request("GET", "/_health")
        status = conn.getresponse().status
    except OSError as exc:
        print(f"healthcheck: {bind}: {exc}", file=sys.stderr)
        return 1
    return 0 if status == 200 else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""A small origin server on 127.0.0.1 for the fetcher tests: a threaded
http.server in the test process that serves registered responses, redirects,
slow and oversized bodies, and logs every request (path, Host header)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Canned:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # before the status line
    trickle: float = 0.0  # seconds between 1-byte writes of the body
    length: bool = True  # send Content-Length (else the body ends when the connection closes)
    repeat: int = 1  # the body is sent this many times (large bodies without holding them)
    header_lines: int = 0  # extra header lines sent one by one, ``trickle`` seconds apart


class Origin:
    def __init__(self) -> None:
        self.routes: dict[str, Canned] = {}
        self.log: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                origin._serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def add(self, path: str, body: bytes = b"", content_type: str | None = "image/png", **kw) -> str:
        headers = kw.pop("headers", {})
        if content_type is not None:
            headers.setdefault("Content-Type", content_type)
        self.routes[path] = Canned(body=body, headers=headers, **kw)
        return self.url(path)

    def hits(self, path: str) -> int:
        with self._lock:
            return sum(1 for p, _ in self.log if p == path)

    def hosts(self, path: str) -> list[str]:
        with self._lock:
            return [h for p, h in self.log if p == path]

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        with self._lock:
            self.log.append((parts.path, h.headers.get("Host", "")))
        query = parse_qs(parts.query)
        if parts.path == "/redirect":  # /redirect?to=URL[&status=301]
            status = int(query.get("status", ["302"])[0])
            h.send_response(status)
            h.send_header("Location", query["to"][0])
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if parts.path.startswith("/chain/"):  # /chain/N redirects N times (relative), then /chain/0
            n = int(parts.path.rsplit("/", 1)[1])
            if n > 0:
                h.send_response(302)
                h.send_header("Location", f"/chain/{n - 1}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
        canned = self.routes.get(parts.path)
        if canned is None:
            h.send_response(404)
            h.send_header("Content-Type", "text/plain")
            h.send_header("Content-Length", "9")
            h.end_headers()
            h.wfile.write(b"not found")
            return
        if canned.delay:
            time.sleep(canned.delay)
        try:
            h.send_response(canned.status)
            if canned.header_lines:
                h.flush_headers()
                for i in range(canned.header_lines):
                    h.wfile.write(f"X-Pad-{i}: x\r\n".encode())
                    h.wfile.flush()
                    time.sleep(canned.trickle)
            for name, value in canned.headers.items():
                h.send_header(name, value)
            if canned.length:
                h.send_header("Content-Length", str(len(canned.body) * canned.repeat))
            h.end_headers()
            if canned.trickle and not canned.header_lines:
                for i in range(len(canned.body)):
                    h.wfile.write(canned.body[i : i + 1])
                    h.wfile.flush()
                    time.sleep(canned.trickle)
            else:
                for _ in range(canned.repeat):
                    h.wfile.write(canned.body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

"""deploy/nginx.conf in front of gunicorn, both on loopback: a miss, a hit, a 304, a Range
and an error pass through intact, with nosniff and CORS exactly once; in front of the library,
an upload of several MiB is streamed through and stored exactly, and one over the limit is
refused 413 with nothing stored."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from . import media
from .cdnutil import assert_error, hash_, snowflake
from .server import ROOT, free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx not installed (.ci/run installs nginx-light)")


def start_nginx(upstream_port: int, prefix: Path):
    """deploy/nginx.conf as shipped, its two addresses changed; returns (base URL, process)."""
    (prefix / "tmp").mkdir()
    port = free_port()
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "server 127.0.0.1:8000;" in conf and "listen 127.0.0.1:8080;" in conf
    conf = conf.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};")
    conf = conf.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{port};")
    (prefix / "nginx.conf").write_text(conf)
    # as root, nginx's workers would run as nobody, who cannot open the temp files (a response past
    # its memory buffers) under pytest's private temp directory: the response was cut there
    main = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
    proc = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", main],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            requests.get(base + "/_health", timeout=5)
            return base, proc
        except requests.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.05)


def stop_nginx(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGQUIT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def proxied(server, tmp_path_factory):
    base, proc = start_nginx(server.port, tmp_path_factory.mktemp("nginx"))
    yield base, server
    stop_nginx(proc)


UPLOAD_LIMIT = 8 * 1024**2


@pytest.fixture(scope="module")
def proxied_library(request, make_server, tmp_path_factory):
    from .conftest import start_library

    stack = start_library(request, make_server, tmp_path_factory, "local",
                          extra={"MEDIAPROXY_UPLOAD_MAX_BYTES": str(UPLOAD_LIMIT)}, worker=False)
    base, proc = start_nginx(stack.server.port, tmp_path_factory.mktemp("nginx-library"))
    yield base, stack
    stop_nginx(proc)
    stack.stop()


def _once(r: requests.Response) -> None:
    # requests joins repeated headers with ", ": exactly one copy of each
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Access-Control-Allow-Origin"] == "*"


def test_miss_hit_and_304_pass_through(proxied):
    base, srv = proxied
    u, h = snowflake(), hash_()
    srv.put("cdn", f"avatars/{u}/{h}", media.jpeg(256, 256))
    path = f"/avatars/{u}/{h}.webp?size=64"
    miss = requests.get(base + path, timeout=60)
    assert miss.status_code == 200 and miss.headers["X-Cache"] == "MISS"
    hit = requests.get(base + path, timeout=60)
    assert hit.status_code == 200 and hit.headers["X-Cache"] == "HIT"
    direct = srv.get(path)
    assert hit.content == miss.content == direct.content
    for name in ("ETag", "Last-Modified", "Cache-Control", "Content-Type", "Content-Length", "Accept-Ranges"):
        assert hit.headers[name] == direct.headers[name], name
    _once(hit)
    r = requests.get(base + path, headers={"If-None-Match": hit.headers["ETag"]}, timeout=60)
    assert r.status_code == 304 and r.content == b""
    _once(r)


def test_range_passes_through(proxied):
    base, srv = proxied
    data = bytes(range(256)) * 4096  # 1 MiB
    key = f"attachments/{snowflake()}/{snowflake()}/blob.bin"
    srv.put("cdn", key, data)
    r = requests.get(f"{base}/{key}", headers={"Range": "bytes=1000-1999"}, timeout=60)
    assert r.status_code == 206 and r.content == data[1000:2000]
    assert r.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    _once(r)
    whole = requests.get(f"{base}/{key}", timeout=60)
    assert whole.status_code == 200 and whole.content == data


def test_errors_pass_through(proxied):
    base, _ = proxied
    r = requests.get(f"{base}/avatars/not-a-snowflake/abc.png", timeout=60)
    assert_error(r, 400)
    _once(r)
    r = requests.get(f"{base}/avatars/{snowflake()}/{hash_()}.png", timeout=60)
    assert_error(r, 404)
    _once(r)


def _upload(base: str, stack, data: bytes) -> requests.Response:
    return requests.post(f"{base}/api/v1/media/upload", headers={"X-API-Key": stack.key},
                         files={"file": ("big.png", data, "application/octet-stream")}, timeout=120)


def _stored(stack) -> tuple:
    return stack.api("GET", "/api/v1/media/list").json()["total"], set(stack.stored_keys("acme/"))


def test_library_upload_streams_through(proxied_library):
    base, stack = proxied_library
    data = media.png(8, 8)
    data += os.urandom(6 * 1024**2 + 12345 - len(data))  # several MiB: over nginx's old 1 MiB cap
    r = _upload(base, stack, data)
    assert r.status_code == 201, r.text
    _once(r)
    m = r.json()
    assert m["size"] == len(data) and m["canonicalUri"].endswith("/sha256/" + hashlib.sha256(data).hexdigest())
    assert (stack.server.storage_dir / "library" / m["objectKey"]).read_bytes() == data
    back = requests.get(base + urlsplit(m["canonicalUri"]).path, timeout=60)
    assert back.status_code == 200 and back.content == data


@pytest.mark.parametrize(("size", "who"), [(UPLOAD_LIMIT + 1, "the server"), (52 * 1024**2, "nginx")])
def test_library_upload_over_the_limit_is_refused_and_stores_nothing(proxied_library, size, who):
    base, stack = proxied_library
    before = _stored(stack)
    data = media.png(8, 8)
    data += os.urandom(size - len(data))
    r = _upload(base, stack, data)
    assert r.status_code == 413, (who, r.status_code, r.text[:200])
    _once(r)
    if who == "the server":  # the library's own answer, passed through
        assert r.headers["Content-Type"].startswith("application/json")
    assert _stored(stack) == before

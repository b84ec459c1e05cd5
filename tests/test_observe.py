"""Request ids, the JSON access log and the log lines of a request, over real HTTP."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import orjson
import pytest
import requests

from . import media
from .server import free_port


def log_lines(srv) -> list[dict]:
    srv.log.flush()
    out = []
    for line in Path(srv.log.name).read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    return out


def wait_line(srv, pred, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        for line in log_lines(srv):
            if pred(line):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no such log line in {log_lines(srv)[-5:]}")
        time.sleep(0.05)


def _ids() -> tuple[str, str]:
    return str(secrets.randbelow(10**17) + 10**17), secrets.token_hex(16)


LOGGED = {"MEDIAPROXY_ACCESS_LOG": "1", "MEDIAPROXY_LOG_LEVEL": "warning"}


@pytest.fixture(scope="module")
def edge(make_server):
    """A server behind a trusted edge on loopback: its X-Request-Id and X-Forwarded-For are believed."""
    return make_server("local", env={**LOGGED, "MEDIAPROXY_TRUSTED_PROXY_CIDRS": "127.0.0.0/8"})


@pytest.fixture(scope="module")
def direct(make_server):
    """No trusted proxy: client headers are never believed."""
    return make_server("local", env=LOGGED)


def test_every_response_has_an_id_and_one_access_line(direct):
    user, h = _ids()
    direct.put("cdn", f"avatars/{user}/{h}", media.jpeg(300, 200))
    paths = {
        f"/avatars/{user}/{h}.webp?size=64": (200, "miss", "/avatars/{user_id}/{filename}"),
        f"/avatars/{user}/{h}.webp?size=64&": (200, "hit", "/avatars/{user_id}/{filename}"),  # fast path
        f"/avatars/{user}/{h}.webp?size=7": (400, "-", "/avatars/{user_id}/{filename}"),
        "/no/such/route?x=1": (404, "-", None),
        "/_health": (200, "-", "/_health"),
    }
    seen = set()
    for path, (status, cache, route) in paths.items():
        r = direct.get(path, headers={"X-Request-Id": "client-chosen-id"})
        rid = r.headers["X-Request-Id"]
        assert r.status_code == status and len(rid) == 16 and rid != "client-chosen-id" and rid not in seen
        seen.add(rid)
        line = wait_line(direct, lambda d, rid=rid: d.get("request_id") == rid)
        bare, _, query = path.partition("?")
        assert line == {
            "ts": line["ts"], "request_id": rid, "client": "127.0.0.1", "method": "GET", "path": bare,
            "query": query, "route": route, "status": status, "bytes": len(r.content), "cache": cache,
            "ms": line["ms"], "fast": cache in ("hit", "miss"),  # the image routes' fast path answers both
        }
        assert isinstance(line["bytes"], int) and isinstance(line["ms"], float)
        assert time.strptime(line["ts"][:19], "%Y-%m-%dT%H:%M:%S") and line["ts"].endswith("Z")
    head = direct.head(f"/avatars/{user}/{h}.webp?size=64")
    line = wait_line(direct, lambda d: d.get("request_id") == head.headers["X-Request-Id"])
    assert line["method"] == "HEAD" and line["bytes"] == 0 and line["status"] == 200


def test_trusted_edge_id_and_client_are_taken(edge):
    r = edge.get("/_health", headers={"X-Request-Id": "edge-1234:abc/DEF=", "X-Forwarded-For": "203.0.113.9"})
    assert r.headers["X-Request-Id"] == "edge-1234:abc/DEF="
    line = wait_line(edge, lambda d: d.get("request_id") == "edge-1234:abc/DEF=")
    assert line["client"] == "203.0.113.9"


@pytest.mark.parametrize("hostile", ["a" * 129, "two words", "<script>", "id;drop", "ünicode", ""])
def test_hostile_ids_from_the_edge_are_replaced(edge, hostile):
    r = requests.get(edge.url("/_health"), headers={"X-Request-Id": hostile.encode("utf-8")}, timeout=30)
    assert r.status_code == 200
    rid = r.headers["X-Request-Id"]
    assert rid != hostile and len(rid) == 16 and set(rid) <= set("0123456789abcdef")


def test_refusals_of_the_ip_guard_carry_an_id(make_server):
    srv = make_server("local", env={**LOGGED, "MEDIAPROXY_TRUSTED_CLIENT_CIDRS": "192.0.2.0/24"})
    r = srv.get("/avatars/1/abc.png")
    assert r.status_code == 403 and len(r.headers["X-Request-Id"]) == 16
    line = wait_line(srv, lambda d: d.get("request_id") == r.headers["X-Request-Id"])
    assert line["status"] == 403 and line["route"] is None and line["bytes"] == len(r.content)


def test_log_lines_written_during_a_request_carry_its_id(make_server):
    """A storage failure is logged with the id of the request it failed: which call on which key
    (INFO, once per attempt), and one WARNING line for the request's fault."""
    srv = make_server("s3", env={**LOGGED, "MEDIAPROXY_LOG_LEVEL": "info",
                                 "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
                                 "MEDIAPROXY_S3_CONNECT_TIMEOUT": "0.5"})
    r = srv.get("/avatars/1/abc.png")
    assert r.status_code in (502, 504)
    rid = r.headers["X-Request-Id"]
    info = wait_line(srv, lambda d: d.get("logger") == "mediaproxy.storage" and d.get("request_id") == rid)
    assert info["level"] == "info" and "storage s3 get cdn/avatars/1/abc failed" in info["message"]
    assert wait_line(srv, lambda d: d.get("request_id") == rid and d.get("status") == r.status_code)
    warnings = [d for d in log_lines(srv) if d.get("level") == "warning" and d.get("request_id") == rid]
    assert len(warnings) == 1 and "/avatars/1/abc.png" in warnings[0]["message"], warnings
